/**
 * The per-image core shared by `explain` and the pipeline worker: image bytes, the run's options
 * and the image's ground truth in; the rendered artifacts, the prediction document and the manifest
 * line out. No S3, no file system, no queue inside: the host reads the bytes, supplies the engine
 * call (the worker's dynamic batcher, or explain's), and writes what comes out with
 * `writeArtifacts`, in the order of the artifact table (shared/artifacts.ts).
 *
 *   decode (under the shared pixel budget) → preprocess → infer (host) → metrics → render → document
 */
import { performance } from 'node:perf_hooks';
import { ARTIFACTS, type ArtifactName, type ArtifactPaths, type ArtifactSpec } from '../../shared/artifacts.js';
import type { LabelMatcher } from '../../shared/audit/label-matcher.js';
import type { ImageMetrics, JobTruth } from '../../shared/audit/types.js';
import type { ExplainOptions } from '../../shared/explain-options.js';
import type { ImageManifest, ModelProvenance, SourceInfo } from '../../shared/manifest.js';
import type { ModelPreprocessing } from '../../shared/preprocessing.js';
import { PACKAGE_VERSION } from '../../shared/version.js';
import { imageMetricsOf, lineTruthOf, resolveTruth } from '../audit/image-audit.js';
import type { EngineImageResult, EngineInfo, EngineRequest, PreprocessedImage } from '../engine/engine.js';
import { seedOf } from '../engine/faithfulness.js';
import { decodeImage, type DecodeOptions } from '../image/decode.js';
import { preprocess } from '../image/preprocess.js';
import { heatmapSize, overlaySize, renderHeatmap, renderOverlay, type EncodedImage } from '../image/render.js';
import type { RgbImage } from '../image/resize.js';
import sharp from 'sharp';
import type { ClassLabel } from '../model/labels.js';
import { DEFAULT_SERVED_MODEL } from '../model/model-card.js';
import type { InputBufferPool } from './input-pool.js';
import type { Lease, PixelBudget } from './pixel-budget.js';
import { encodePredictionDocument, predictionDocumentOf } from './prediction-document.js';

/** What one engine call needs besides the images; images sharing it may share a batch. */
export type EngineRequestOptions = Omit<EngineRequest, 'images'>;

export function engineRequestOf(options: ExplainOptions): EngineRequestOptions {
  return { targets: options.targets, topK: options.topK, method: options.method, score: options.score, ...(options.faithfulness ? { faithfulness: true } : {}) };
}

/**
 * The host's engine call for one image (`engineRequestOf(options)` says what the engine needs), and
 * the timings it measured (queue wait, infer, …). `seed` (from the image key) seeds the image's
 * random faithfulness region, so a rerun measures the same region.
 */
export type InferOne = (image: PreprocessedImage, options: ExplainOptions, seed: number) => Promise<{ result: EngineImageResult; timings: Record<string, number> }>;

export interface ImageCoreDeps {
  engine: EngineInfo;
  /** Labels per class index, or null for index-only output. */
  labels: readonly ClassLabel[] | null;
  /** Matches truth labels to the model's classes (built once from the labels). */
  matcher: LabelMatcher;
  /** `--weights` as given, for provenance. */
  weightsSource: string;
  /** The model's input preprocessing and what the document records of it (src/worker/model/model-card.ts). Default: caffe, labels unrecorded. */
  model?: { preprocessing: ModelPreprocessing; provenance: ModelProvenance };
  infer: InferOne;
  decodeOptions?: Partial<DecodeOptions>;
  /** Decoded pixels shared by every image in flight (config `pixelBudget`); none: unbounded. */
  budget?: PixelBudget;
  /** Model-input buffers reused from image to image (the worker's); none: one new buffer per image. */
  inputs?: InputBufferPool;
  /** Injected for reproducible documents. Default now. */
  now?: () => Date;
}

export interface ImageCoreInput {
  bytes: Uint8Array;
  /** Where the bytes came from (a path or an s3:// URI, plus bucket/key/etag on S3). */
  source: Omit<SourceInfo, 'format' | 'width' | 'height' | 'size'>;
  options: ExplainOptions;
  truth?: JobTruth;
  /** Where each artifact will be written, as the document records it. */
  outputs: ArtifactPaths;
  run?: ImageManifest['run'];
  /** Stages the host ran before the core (download, read), in ms. */
  timings?: Record<string, number>;
}

export interface ImageCoreOutput {
  /** The prediction document; hosts may add their own later stages to `timings` before writing. */
  document: ImageManifest;
  /** Rendered artifacts other than the document, by name. */
  rendered: Record<Exclude<ArtifactName, 'prediction'>, EncodedImage>;
}

export async function explainImage(input: ImageCoreInput, deps: ImageCoreDeps): Promise<ImageCoreOutput> {
  const timings: Record<string, number> = { ...input.timings };
  let t = performance.now();
  const lap = (stage: string): void => {
    const now = performance.now();
    timings[stage] = now - t;
    t = now;
  };
  const { options, engine } = { options: input.options, engine: deps.engine };
  let truth: ReturnType<typeof resolveTruth>;
  let metrics: ImageMetrics;
  let rendered: ImageCoreOutput['rendered'];
  let engineResult: EngineImageResult;
  let sourceInfo: { format: SourceInfo['format']; width: number; height: number };

  // The decode waits for its pixels in the budget shared by every image in flight; after
  // preprocessing, only the overlay's share is kept (the full decode is dropped before the engine).
  let lease: Lease | undefined;
  try {
    const decoded = await decodeImage(input.bytes, deps.decodeOptions ?? {}, input.source.uri, async (header) => {
      if (deps.budget) lease = await deps.budget.acquire(header.decodedPixels);
      t = performance.now(); // time in the budget's queue is not decode time
    });
    lap('decode');
    const into = deps.inputs?.take(engine.inputWidth * engine.inputHeight * 3);
    const image = preprocess(decoded, { width: engine.inputWidth, height: engine.inputHeight, resize: options.resize, ...(deps.model ?? DEFAULT_SERVED_MODEL).preprocessing }, into);
    lap('preprocess');
    const display = await displayImage(decoded, overlaySize(decoded.width, decoded.height, options.maxSide, options.overlayFormat));
    lease?.shrink(display.width * display.height);
    const source = { format: decoded.format, width: decoded.sourceWidth, height: decoded.sourceHeight };

    const { result, timings: inferTimings } = await deps.infer(image, options, seedOf(input.source.key ?? input.source.uri));
    deps.inputs?.give(image.data); // the engine call has answered: nothing reads the input any more
    Object.assign(timings, inferTimings);
    t = performance.now();
    const cam = result.cams[0];
    if (!cam) throw new RangeError(`engine returned no CAM for ${input.source.uri}`);

    // Metrics are in the source's coordinates (truth boxes are), whatever size it was decoded at.
    truth = resolveTruth(input.truth, deps.matcher);
    metrics = imageMetricsOf({ result, image: { width: source.width, height: source.height }, truth });
    lap('metrics');

    // The overlay and heatmap show the first target (top-1 by default); the document has every target.
    const [overlay, heatmap] = await Promise.all([
      // The display pixels are the core's own (the decode or its resized copy) and unused after this.
      renderOverlay(display, cam, { colormap: options.colormap, alpha: options.alpha, format: options.overlayFormat, maxSide: options.maxSide, reuseImage: true }),
      renderHeatmap(cam, { size: heatmapSize(source.width, source.height, Math.max(engine.inputWidth, engine.inputHeight)) }),
    ]);
    lap('render');
    rendered = { overlay, heatmap };
    engineResult = result;
    sourceInfo = source;
  } finally {
    lease?.release();
  }

  const document = predictionDocumentOf({
    source: { ...input.source, size: input.bytes.length, ...sourceInfo },
    result: engineResult,
    engine,
    options,
    labels: deps.labels,
    weightsSource: deps.weightsSource,
    model: (deps.model ?? DEFAULT_SERVED_MODEL).provenance,
    packageVersion: PACKAGE_VERSION,
    outputs: input.outputs,
    metrics,
    ...(truth ? { truth: lineTruthOf(truth) } : {}),
    timings,
    ...(input.run ? { run: input.run } : {}),
    now: deps.now?.() ?? new Date(),
  });
  return { document, rendered };
}

/** Writes one artifact; `spec` gives its name and content type. */
export type ArtifactWriter = (spec: ArtifactSpec, data: Buffer, contentType: string) => Promise<void>;

/**
 * Write an image's artifacts: the images at once (two S3 PUTs in flight instead of one after the
 * other), then the document, last, so its presence means complete. `beforeDocument` runs just
 * before the document is encoded, so a host can record the time its other writes took.
 */
export async function writeArtifacts(out: ImageCoreOutput, write: ArtifactWriter, beforeDocument?: (doc: ImageManifest) => void): Promise<void> {
  const format = out.rendered.overlay.format;
  // Settled, not raced: when one write fails, none is left in flight behind the error.
  const images = await Promise.allSettled(ARTIFACTS.map((spec) => (spec.name === 'prediction' ? undefined : write(spec, out.rendered[spec.name].data, spec.contentType(format)))));
  const failed = images.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  for (const spec of ARTIFACTS) {
    if (spec.name !== 'prediction') continue;
    beforeDocument?.(out.document);
    await write(spec, encodePredictionDocument(out.document), spec.contentType(format));
  }
}

/** The decoded image at the overlay's size (libvips lanczos3), or itself when it already fits. */
async function displayImage(decoded: RgbImage, size: { width: number; height: number }): Promise<RgbImage> {
  if (size.width === decoded.width && size.height === decoded.height) return decoded;
  const data = await sharp(decoded.data, { raw: { width: decoded.width, height: decoded.height, channels: 3 } }).resize(size.width, size.height, { fit: 'fill' }).raw().toBuffer();
  return { data, width: size.width, height: size.height };
}
