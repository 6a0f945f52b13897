# syntax=docker/dockerfile:1.7
#
# Targets:
#   cpu       Node 24 + TF.js (wasm/cpu) + ONNX Runtime CPU. Producer, dashboard and CPU workers.
#   gpu       The GPU worker: CUDA 12 / cuDNN 9 with onnxruntime-node's CUDA execution provider.
#             Builds from public sources only (the provider comes from NuGet at build time).
#   gpu-tfjs  Alternative GPU worker: CUDA 11.2 / cuDNN 8.1 with @tensorflow/tfjs-node-gpu, for those
#             who mirror libtensorflow 2.9.1 (see below).
#
# Every runtime image runs as uid/gid 1000 (user `node`) and keeps its caches (downloaded weights,
# compiled ONNX graphs, TensorRT engines, CUDA's PTX cache) under /cache ($XDG_CACHE_HOME): mount a
# volume there (compose and deploy/k8s do) and it is writable by that user.
#
# libtensorflow (gpu-tfjs only): tfjs-node-gpu's install script downloads libtensorflow 2.9.1 from
# storage.googleapis.com, which has answered 403 since Aug 2026 (tensorflow/tfjs#8742). Mirror the
# tarball (libtensorflow-gpu-linux-x86_64-2.9.1.tar.gz) and pass its base URL:
#   docker build --target gpu-tfjs --build-arg TFJS_NODE_CDN_STORAGE=https://mirror.example.com/libtensorflow/ .
# or bake a scripts/custom-binary.json ({"tf-lib": "<full tarball URL>"}) into the package with
#   --build-arg TFJS_CUSTOM_BINARY_URL=https://mirror.example.com/libtensorflow-gpu-linux-x86_64-2.9.1.tar.gz

# Node 24 LTS (Node 22 LTS works too: --build-arg NODE_IMAGE=node:22-bookworm-slim).
ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: full dependencies, compile TypeScript ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the package's own `prepare` (npm run build) needs the sources copied below, and
# no dependency needs an install script at runtime (onnxruntime-node's CUDA download runs in `gpu`).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# The build compiles against bin/cores.d.ts; dist/bin/cores.js re-exports bin/cores.js.
COPY bin ./bin
RUN npm run build

# ---- prod-deps: runtime dependencies only ----
FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund

# ---- cpu ----
FROM ${NODE_IMAGE} AS cpu
ENV NODE_ENV=production \
    XDG_CACHE_HOME=/cache \
    GRADCAM_AUDIT_METRICS_HOST=0.0.0.0
WORKDIR /app
RUN mkdir -p /cache && chown 1000:1000 /cache
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY data ./data
COPY models ./models
COPY samples ./samples
# The node image's `node` user is uid/gid 1000; numeric so Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
# Dashboard port and worker metrics port (see src/dashboard and `worker --metrics-port`).
EXPOSE 3000 9464
ENTRYPOINT ["node", "bin/gradcam-audit.js"]
CMD ["worker"]

# ---- gpu: ONNX Runtime CUDA execution provider (the default GPU worker) ----
# onnxruntime-node 1.30's CUDA provider is built for CUDA 12.x and cuDNN 9 (the `cudnn` runtime tag).
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 AS gpu
ENV NODE_ENV=production \
    XDG_CACHE_HOME=/cache \
    CUDA_CACHE_PATH=/cache/nv \
    ORT_TENSORRT_ENGINE_CACHE_ENABLE=1 \
    ORT_TENSORRT_CACHE_PATH=/cache/gradcam-audit/tensorrt \
    GRADCAM_AUDIT_METRICS_HOST=0.0.0.0 \
    GRADCAM_AUDIT_REQUIRE_GPU=true
COPY --from=cpu /usr/local/bin/node /usr/local/bin/node
RUN groupadd --gid 1000 node && useradd --uid 1000 --gid 1000 --create-home --shell /bin/sh node \
 && mkdir -p /cache && chown 1000:1000 /cache
WORKDIR /app
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY data ./data
COPY models ./models
# The doctor's parity check runs two bundled sample images.
COPY samples ./samples
# package.json denies onnxruntime-node's postinstall (it downloads the CUDA and TensorRT provider
# libraries from NuGet); run it here. Without network, copy the three .so files instead (see
# src/worker/engine/onnx/README.md).
RUN cd node_modules/onnxruntime-node && ONNXRUNTIME_NODE_INSTALL=cuda12 node script/install.js \
 && test -f bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so
USER 1000:1000
EXPOSE 9464
ENTRYPOINT ["node", "bin/gradcam-audit.js"]
CMD ["worker", "--engine", "onnx", "--onnx-providers", "auto"]

# ---- gpu-tfjs: TF.js native GPU backend (alternative; needs a libtensorflow mirror) ----
FROM nvidia/cuda:11.2.2-cudnn8-runtime-ubuntu20.04 AS gpu-tfjs
ARG TFJS_NODE_CDN_STORAGE=""
ARG TFJS_CUSTOM_BINARY_URL=""
ENV NODE_ENV=production \
    XDG_CACHE_HOME=/cache \
    CUDA_CACHE_PATH=/cache/nv \
    GRADCAM_AUDIT_METRICS_HOST=0.0.0.0 \
    GRADCAM_AUDIT_REQUIRE_GPU=true
COPY --from=cpu /usr/local/bin/node /usr/local/bin/node
COPY --from=cpu /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s /usr/local/lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && apt-get update && apt-get install -y --no-install-recommends ca-certificates python3 make g++ && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1000 node && useradd --uid 1000 --gid 1000 --create-home --shell /bin/sh node \
 && mkdir -p /cache && chown 1000:1000 /cache
WORKDIR /app
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json package-lock.json ./
COPY bin ./bin
COPY data ./data
COPY models ./models
COPY samples ./samples
# The optional native package is installed without scripts, then its libtensorflow download runs
# explicitly against the mirror (custom-binary.json or TFJS_NODE_CDN_STORAGE).
RUN npm install --no-save --ignore-scripts @tensorflow/tfjs-node-gpu@4.22.0 \
 && if [ -n "$TFJS_CUSTOM_BINARY_URL" ]; then echo "{\"tf-lib\": \"$TFJS_CUSTOM_BINARY_URL\"}" > node_modules/@tensorflow/tfjs-node-gpu/scripts/custom-binary.json; fi \
 && cd node_modules/@tensorflow/tfjs-node-gpu && TFJS_NODE_CDN_STORAGE="$TFJS_NODE_CDN_STORAGE" npm run install \
 || (echo "tfjs-node-gpu install failed: supply libtensorflow 2.9.1 via TFJS_NODE_CDN_STORAGE or TFJS_CUSTOM_BINARY_URL" && exit 1)
USER 1000:1000
EXPOSE 9464
ENTRYPOINT ["node", "bin/gradcam-audit.js"]
CMD ["worker", "--engine", "tfjs", "--backend", "node-gpu"]
