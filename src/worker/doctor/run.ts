/**
 * `gradcam-audit doctor`: what this machine will do with the configured model, Redis and S3, in one
 * screen (or JSON), exiting 1 when the setup cannot work. Workers log the same machine and engine
 * checks at start (`workerStartupReport`).
 */
import type { AppConfig } from '../../shared/config.js';
import { ConfigError, describeError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { keySpaceOf } from '../../shared/queue/keys.js';
import { parseModelOptionFlags, type ModelOptions, type RawModelOptionFlags } from '../../shared/model-options.js';
import type { ModelSetup } from '../../shared/model-setup.js';
import { silentLogger } from '../../shared/logger.js';
import type { Engine } from '../engine/engine.js';
import { createEngine, parseEngineChoice, type EngineChoice } from '../engine/factory.js';
import { parseOnnxFlags, type OnnxRuntimeOptions, type RawOnnxFlags } from '../engine/onnx/options.js';
import { defaultProviderEnvironment, type ProviderEnvironment } from '../engine/onnx/providers.js';
import { isOnnxSupported } from '../engine/onnx/support.js';
import { parseBackendChoice, type BackendChoice } from '../engine/tfjs/backend-choice.js';
import type { ModelLoader } from '../model/configured-loader.js';
import { loadLabels } from '../model/labels.js';
import { loadHintsOf, resolveConfiguredModel } from '../model/model-card.js';
import type { ModelInput } from '../model/graph/from-sequential.js';
import { toModelGraph } from '../model/graph/from-sequential.js';
import { numClassesOf } from '../model/graph/walker.js';
import { engineCheck, modelCheck, parityCheck, parityInputs, speedCheck } from './engine-checks.js';
import { buildReport, type CheckResult, type DoctorReport } from './report.js';
import { gpuCheck, nodeCheck, onnxCheck, reasonCollector, redactUrl, redisCheck, s3Check, tfjsCheck } from './system-checks.js';

/**
 * The model flags (`--preprocess`, `--center-crop`, `--labels`, `--layer`, `--architecture`) are
 * resolved with the model card and the format's defaults as `explain` and `worker` resolve them
 * (`resolveModelSetup`), so the parity images get the model's own preprocessing.
 */
export interface DoctorOptions extends ModelOptions {
  weights: string;
  engine: EngineChoice;
  backend: BackendChoice;
  onnx: Partial<OnnxRuntimeOptions>;
  requireGpu: boolean;
  /** An s3:// prefix to check access to; without it, the credentials and ListBuckets. */
  source?: string;
  /** Skip Redis and S3 (a machine that only runs `explain`). */
  offline: boolean;
  /** Batch size of the speed check. */
  batch: number;
}

export interface DoctorDeps {
  config: AppConfig;
  loadSpec: ModelLoader;
  /** Flags + model card + format defaults; default: the model card beside the weights, read as the worker reads it. */
  resolveSetup?: (weights: string, flags: ModelOptions) => Promise<ModelSetup>;
  providers?: ProviderEnvironment;
  logger?: Logger;
}

export interface RawDoctorFlags extends RawOnnxFlags, RawModelOptionFlags {
  weights?: string;
  engine?: string;
  backend?: string;
  requireGpu?: boolean;
  source?: string;
  offline?: boolean;
  batch?: string;
  json?: boolean;
}

export function parseDoctorFlags(flags: RawDoctorFlags, defaultWeights: string, env: Record<string, string | undefined> = process.env): DoctorOptions {
  const batch = flags.batch === undefined ? 8 : Number(flags.batch);
  if (!Number.isInteger(batch) || batch < 1 || batch > 256) throw new ConfigError('--batch', `expected an integer from 1 to 256, got "${flags.batch}"`);
  if (flags.source !== undefined && !flags.source.startsWith('s3://')) throw new ConfigError('--source', `expected s3://BUCKET/PREFIX, got "${flags.source}"`);
  return {
    ...parseModelOptionFlags(flags),
    weights: flags.weights ?? env.GRADCAM_AUDIT_WEIGHTS ?? defaultWeights,
    engine: parseEngineChoice(flags.engine ?? 'auto'),
    backend: parseBackendChoice(flags.backend ?? 'auto'),
    onnx: parseOnnxFlags(flags),
    requireGpu: flags.requireGpu ?? /^(1|true|yes)$/i.test(env.GRADCAM_AUDIT_REQUIRE_GPU ?? ''),
    source: flags.source,
    offline: flags.offline === true,
    batch,
  };
}

export async function runDoctor(options: DoctorOptions, deps: DoctorDeps): Promise<DoctorReport> {
  const logger = deps.logger ?? silentLogger();
  const checks: CheckResult[] = [nodeCheck()];
  const onnx = await onnxCheck(deps.providers ?? defaultProviderEnvironment(), options.onnx.deviceId ?? 0);
  checks.push(onnx.check);
  checks.push(await tfjsCheck(probeTfjs));

  let engine: Engine | null = null;
  let reference: { engine: Engine; label: string } | null = null;
  try {
    let spec: ModelInput;
    let setup: ModelSetup;
    try {
      setup = await (deps.resolveSetup ?? cardReader(deps.config))(options.weights, modelOptionsOf(options));
      spec = await deps.loadSpec(options.weights, loadHintsOf(setup));
    } catch (err) {
      checks.push({ name: 'model', status: 'fail', summary: `${options.weights}: ${describeError(err)}` });
      return finish();
    }
    const labels = await loadLabels({ numClasses: lastUnits(spec), given: setup.labels ?? undefined }).catch(() => null);
    checks.push(modelCheck(spec, options.weights, labels?.labels ? labels.labels.length : null, setup));
    try {
      engine = await createEngine({ spec, engine: options.engine, backend: options.backend, layer: setup.layer, onnx: options.onnx, logger });
    } catch (err) {
      checks.push({ name: 'engine', status: 'fail', summary: `no engine can run ${spec.name}: ${describeError(err)}` });
      return finish();
    }
    checks.push(engineCheck(engine));
    checks.push(gpuCheck(onnx.selection?.gpus ?? [], engine.info.accelerator, options.requireGpu));
    reference = await cpuReference(engine, spec, options, logger);
    const images = await parityInputs(engine, setup.preprocessing);
    checks.push(await parityCheck(engine, reference, images));
    checks.push(await speedCheck(engine, images, options.batch));
  } finally {
    await reference?.engine.dispose().catch(() => undefined);
    await engine?.dispose().catch(() => undefined);
  }
  return finish();

  async function finish(): Promise<DoctorReport> {
    if (options.offline) {
      checks.push({ name: 'redis', status: 'skip', summary: '--offline' }, { name: 's3', status: 'skip', summary: '--offline' });
    } else {
      const [redis, s3] = await Promise.all([redisCheck(deps.config.redisUrl, { keySpace: keySpaceOf(deps.config) }), s3Check(deps.config.s3, options.source)]);
      checks.push(redis, s3);
    }
    return buildReport(checks);
  }
}

/**
 * The doctor's checks a worker logs at start, from what it has already built: no second engine
 * (parity) and no extra batch (its warm-up batch, logged next, is the speed check).
 */
export function workerStartupReport(w: { spec: ModelInput; weights: string; labels: number | null; engine: Engine; requireGpu: boolean; redisUrl: string; gpus: string[] }): DoctorReport {
  return buildReport([
    nodeCheck(),
    modelCheck(w.spec, w.weights, w.labels),
    engineCheck(w.engine),
    gpuCheck(w.gpus, w.engine.info.accelerator, w.requireGpu),
    { name: 'parity', status: 'skip', summary: 'not at worker start (it needs a second engine): run gradcam-audit doctor' },
    { name: 'redis', status: 'ok', summary: `${redactUrl(w.redisUrl)}: connected` },
  ]);
}

/**
 * An independent path on the CPU for the parity check: ONNX Runtime's CPU provider for a GPU
 * session; TF.js for an ONNX Runtime CPU session; ONNX Runtime's CPU provider for TF.js.
 */
async function cpuReference(engine: Engine, spec: ModelInput, options: DoctorOptions, logger: Logger): Promise<{ engine: Engine; label: string } | null> {
  // The reference is the plain float32 CPU path whatever precision the chosen engine runs.
  const onnxCpu = { ...options.onnx, executionProviders: ['cpu' as const], checkPlacement: false, precision: 'fp32' as const };
  const common = { spec, layer: engine.info.layer, logger };
  try {
    if (engine.info.engine === 'onnx' && engine.info.accelerator === 'gpu') return { engine: await createEngine({ ...common, engine: 'onnx', onnx: onnxCpu }), label: 'onnx/onnx-cpu' };
    if (engine.info.engine === 'onnx') {
      const tfjs = await createEngine({ ...common, engine: 'tfjs' });
      return { engine: tfjs, label: `tfjs/${tfjs.info.backend}` };
    }
    if (!isOnnxSupported(spec, 'gradcam', engine.info.layer).ok) return null;
    return { engine: await createEngine({ ...common, engine: 'onnx', onnx: onnxCpu }), label: 'onnx/onnx-cpu' };
  } catch (err) {
    logger.warn({ err: describeError(err) }, 'no CPU reference engine for the parity check');
    return null;
  }
}

async function probeTfjs(): Promise<{ chosen: string; device: string; unavailable: Array<{ backend: string; reason: string }> }> {
  const { initBackend, defaultBackendDeps } = await import('../engine/tfjs/backend.js');
  const { logger, unavailable } = reasonCollector();
  const active = await initBackend('auto', defaultBackendDeps(logger));
  return { chosen: active.choice, device: active.device, unavailable };
}

function lastUnits(spec: ModelInput): number {
  return numClassesOf(toModelGraph(spec));
}

/** The model flags of the doctor's options, as `resolveModelSetup` takes them. */
function modelOptionsOf(o: DoctorOptions): ModelOptions {
  const { preprocess, centerCrop, labels, layer, architecture } = o;
  return Object.fromEntries(Object.entries({ preprocess, centerCrop, labels, layer, architecture }).filter(([, v]) => v !== undefined)) as ModelOptions;
}

/** The model card beside the weights (S3 only when the weights are there), as explain and the worker read it. */
function cardReader(config: AppConfig): (weights: string, flags: ModelOptions) => Promise<ModelSetup> {
  return async (weights, flags) => (await resolveConfiguredModel(weights, flags, config.s3)).setup;
}
