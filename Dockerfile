# syntax=docker/dockerfile:1.7
#
# Targets:
#   cpu       Node 20 + TF.js (wasm/cpu) + ONNX Runtime CPU. Producer, dashboard and CPU workers.
#   gpu       Worker on CUDA 11.2 / cuDNN 8.1 with @tensorflow/tfjs-node-gpu (libtensorflow 2.9.1).
#   gpu-onnx  Worker on CUDA 12 / cuDNN 9 with onnxruntime-node's CUDA execution provider.
#
# libtensorflow: tfjs-node-gpu's install script downloads libtensorflow 2.9.1 from
# storage.googleapis.com, which has answered 403 since Aug 2026 (tensorflow/tfjs#8742). Mirror the
# tarball (libtensorflow-gpu-linux-x86_64-2.9.1.tar.gz) and pass its base URL:
#   docker build --target gpu --build-arg TFJS_NODE_CDN_STORAGE=https://mirror.example.com/libtensorflow/ .
# or bake a scripts/custom-binary.json ({"tf-lib": "<full tarball URL>"}) into the package with
#   --build-arg TFJS_CUSTOM_BINARY_URL=https://mirror.example.com/libtensorflow-gpu-linux-x86_64-2.9.1.tar.gz

ARG NODE_IMAGE=node:20.20-bookworm-slim
# node:20 images ship npm 10, which runs dependency install scripts (npm 11 obeys package.json's
# allowScripts instead): keep onnxruntime-node from downloading its CUDA provider in CPU builds.
ARG ONNXRUNTIME_NODE_INSTALL=skip

# ---- build: full dependencies, compile TypeScript ----
FROM ${NODE_IMAGE} AS build
ARG ONNXRUNTIME_NODE_INSTALL
ENV ONNXRUNTIME_NODE_INSTALL=${ONNXRUNTIME_NODE_INSTALL}
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- prod-deps: runtime dependencies only ----
FROM ${NODE_IMAGE} AS prod-deps
ARG ONNXRUNTIME_NODE_INSTALL
ENV ONNXRUNTIME_NODE_INSTALL=${ONNXRUNTIME_NODE_INSTALL}
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund

# ---- cpu ----
FROM ${NODE_IMAGE} AS cpu
ENV NODE_ENV=production
WORKDIR /app
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY data ./data
COPY models ./models
USER node
# Dashboard port and worker metrics port (see src/dashboard and `worker --metrics-port`).
EXPOSE 3000 9464
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["worker"]

# ---- gpu: TF.js native GPU backend ----
FROM nvidia/cuda:11.2.2-cudnn8-runtime-ubuntu20.04 AS gpu
ARG TFJS_NODE_CDN_STORAGE=""
ARG TFJS_CUSTOM_BINARY_URL=""
ENV NODE_ENV=production
COPY --from=cpu /usr/local/bin/node /usr/local/bin/node
COPY --from=cpu /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s /usr/local/lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && apt-get update && apt-get install -y --no-install-recommends ca-certificates python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json package-lock.json ./
COPY data ./data
COPY models ./models
# The optional native package is installed without scripts, then its libtensorflow download runs
# explicitly against the mirror (custom-binary.json or TFJS_NODE_CDN_STORAGE).
RUN npm install --no-save --ignore-scripts @tensorflow/tfjs-node-gpu@4.22.0 \
 && if [ -n "$TFJS_CUSTOM_BINARY_URL" ]; then echo "{\"tf-lib\": \"$TFJS_CUSTOM_BINARY_URL\"}" > node_modules/@tensorflow/tfjs-node-gpu/scripts/custom-binary.json; fi \
 && cd node_modules/@tensorflow/tfjs-node-gpu && TFJS_NODE_CDN_STORAGE="$TFJS_NODE_CDN_STORAGE" npm run install \
 || (echo "tfjs-node-gpu install failed: supply libtensorflow 2.9.1 via TFJS_NODE_CDN_STORAGE or TFJS_CUSTOM_BINARY_URL" && exit 1)

EXPOSE 9464
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["worker", "--engine", "tfjs", "--backend", "node-gpu"]

# ---- gpu-onnx: ONNX Runtime CUDA execution provider ----
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 AS gpu-onnx
ENV NODE_ENV=production
COPY --from=cpu /usr/local/bin/node /usr/local/bin/node
COPY --from=cpu /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s /usr/local/lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
WORKDIR /app
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY data ./data
COPY models ./models
# package.json denies onnxruntime-node's postinstall (it downloads the CUDA provider); run it here.
RUN cd node_modules/onnxruntime-node && ONNXRUNTIME_NODE_INSTALL=cuda12 node script/install
EXPOSE 9464
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["worker", "--engine", "onnx"]
