/**
 * Shared pieces of the pipeline integration tests: a tiny VGG-shaped engine, small real images in
 * a real S3 bucket, enqueueing through the producer library, and a pipeline worker wired to the
 * test's Redis namespace.
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { enqueueRun } from '../../../src/producer/enqueue.js';
import { parseEnqueueRequest, resolveRunModel, type EnqueueFlags } from '../../../src/producer/enqueue-options.js';
import type { ServedModel } from '../../../src/worker/model/model-card.js';
import { silentLogger, type Logger } from '../../../src/shared/logger.js';
import { bullPrefix, type AuditJobPayload } from '../../../src/shared/queue/contract.js';
import { RunStore, type RunRecord } from '../../../src/shared/queue/run-store.js';
import { finalizeRun, s3StreamUploader, sweepUnfinalized, type FinalizerDeps } from '../../../src/shared/run-finalizer.js';
import type { ObjectStore } from '../../../src/shared/storage/object-store.js';
import type { Engine } from '../../../src/worker/engine/engine.js';
import { createEngine } from '../../../src/worker/engine/factory.js';
import { vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import type { PipelineOptions } from '../../../src/worker/pipeline/options.js';
import { PipelineWorker } from '../../../src/worker/pipeline/pipeline-worker.js';
import type { TestBucket, TestRedis } from '../../helpers/services.js';

/** 32x32 input, two conv blocks, 10 classes: the real code paths at test speed. */
export function tinySpec() {
  return vggShapedSpec({ inputShape: [32, 32, 3], classes: 10, seed: 7 });
}

export async function tinyEngine(): Promise<Engine> {
  return createEngine({ spec: tinySpec(), engine: 'tfjs', backend: 'auto' });
}

/** A small PNG with a coloured square on a gradient, different per seed. */
export async function sampleImage(seed: number, width = 48, height = 40): Promise<Buffer> {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      const inSquare = x > width / 4 && x < width / 2 + (seed % 8) && y > height / 4 && y < (3 * height) / 4;
      data[i] = inSquare ? (seed * 53) % 256 : (x * 5) % 256;
      data[i + 1] = inSquare ? (seed * 97) % 256 : (y * 6) % 256;
      data[i + 2] = inSquare ? 40 : ((x + y) * 3) % 256;
    }
  }
  return sharp(data, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

export interface PipelineHarness {
  runs: RunStore;
  queue: Queue<AuditJobPayload>;
  bull: Redis;
  finalizerDeps: FinalizerDeps;
  /** `store` overrides the worker's S3 store (e.g. one pointing at an unreachable endpoint). */
  /** `model`: the model the worker serves (default: caffe, no identity). */
  startWorker(engine: Engine, options?: Partial<PipelineOptions>, logger?: Logger, store?: ObjectStore, model?: ServedModel): Promise<PipelineWorker>;
  enqueue(sourceUri: string, flags?: EnqueueFlags): Promise<string>;
  waitForRun(runId: string, timeoutMs?: number): Promise<RunRecord>;
  close(): Promise<void>;
}

export function pipelineHarness(t: TestRedis, b: TestBucket): PipelineHarness {
  const ks = { prefix: t.prefix };
  const runs = new RunStore(t.redis, ks, { store: b.store });
  const bull = new Redis(t.url, { maxRetriesPerRequest: null });
  const queue = new Queue<AuditJobPayload>(t.queueName, { connection: bull, prefix: bullPrefix(ks) });
  const finalizerDeps: FinalizerDeps = { runs, redis: t.redis, upload: s3StreamUploader(b.store.client) };
  const workers: PipelineWorker[] = [];
  return {
    runs,
    queue,
    bull,
    finalizerDeps,
    async startWorker(engine, options = {}, logger = silentLogger(), store = b.store, model = undefined) {
      const w = new PipelineWorker(
        {
          engine,
          labels: null,
          weightsSource: 'seeded:vgg-small',
          ...(model ? { model } : {}),
          store,
          runs,
          redis: t.redis,
          bullConnection: bull,
          keySpace: ks,
          queueName: t.queueName,
          logger,
          finalizeRun: (runId, lockTtlMs) => finalizeRun(runId, { ...finalizerDeps, lockTtlMs }),
          sweepUnfinalized: (lockTtlMs) => sweepUnfinalized({ ...finalizerDeps, lockTtlMs }),
        },
        { drainTimeoutMs: 10_000, ...options },
      );
      workers.push(w);
      await w.start();
      return w;
    },
    async enqueue(sourceUri, flags = {}) {
      const request = parseEnqueueRequest(sourceUri, flags, {});
      await resolveRunModel(request, b.store);
      const result = await enqueueRun(request, { store: b.store, queue, runs, redis: t.redis, finalize: (id) => finalizeRun(id, finalizerDeps) });
      return result.runId;
    },
    async waitForRun(runId, timeoutMs = 40_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const run = await runs.requireRun(runId);
        if (run.state === 'completed') return run;
        if (Date.now() > deadline) throw new Error(`run ${runId} not completed after ${timeoutMs} ms: ${JSON.stringify(run)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async close() {
      for (const w of workers) await w.stop(2_000);
      await queue.close();
      bull.disconnect();
    },
  };
}
