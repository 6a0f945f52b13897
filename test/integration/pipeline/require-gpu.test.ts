/**
 * `--require-gpu` (GRADCAM_AUDIT_REQUIRE_GPU, set by the GPU images): a worker whose engine would
 * compute on the CPU refuses to start, says why, and leaves nothing behind (no heartbeat, no open
 * connections). This machine has no GPU, so the refusal is the real path here.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/shared/config.js';
import { listWorkers } from '../../../src/shared/queue/heartbeat.js';
import { DEMO_MODEL } from '../../../src/demo/options.js';
import { AUTO_BATCH } from '../../../src/worker/engine/batch-size.js';
import { PREFETCH_BATCHES } from '../../../src/worker/pipeline/options.js';
import { loadModelSpec } from '../../../src/worker/model/source.js';
import { parseWorkerFlags, startWorker } from '../../../src/worker/pipeline/run-worker.js';
import { serviceEnv, testRedis, type TestRedis } from '../../helpers/services.js';

describe('worker --require-gpu', () => {
  let r: TestRedis;
  beforeAll(async () => {
    r = await testRedis();
  });
  afterAll(async () => {
    await r?.cleanup();
  });

  it('refuses to compute on the CPU, naming the flag and the device, and removes its heartbeat', async () => {
    const config = loadConfig({ ...serviceEnv(), GRADCAM_AUDIT_PREFIX: r.prefix, GRADCAM_AUDIT_QUEUE: r.queueName });
    const options = parseWorkerFlags({ weights: DEMO_MODEL, engineThread: 'off', workerId: 'needs-gpu', onnxCacheDir: 'off' }, { GRADCAM_AUDIT_REQUIRE_GPU: 'true' });
    const lines: Array<{ msg: string; level: number; verdicts?: string[] }> = [];
    const logger = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, cb) => (lines.push(JSON.parse(c.toString())), cb()) }));
    await expect(startWorker(options, config, logger, (src) => loadModelSpec(src))).rejects.toThrow(/--require-gpu: the engine would compute on CPU .*not on a GPU/);
    // The reason for each provider was logged before the refusal.
    const providers = lines.find((l) => /ONNX Runtime execution providers: cpu$/.test(l.msg));
    expect(providers?.verdicts?.find((v) => v.startsWith('cuda: no'))).toBeDefined();
    expect(await listWorkers(r.redis, { prefix: r.prefix })).toEqual([]);
  });

  it('--batch-size auto on a CPU-only machine takes the CPU default and says why', async () => {
    const config = loadConfig({ ...serviceEnv(), GRADCAM_AUDIT_PREFIX: r.prefix, GRADCAM_AUDIT_QUEUE: r.queueName });
    const options = parseWorkerFlags({ weights: DEMO_MODEL, engineThread: 'off', workerId: 'auto-batch', onnxCacheDir: 'off', batchSize: 'auto' }, {});
    expect(options).toMatchObject({ autoBatchSize: true, pipeline: { batchSize: undefined } });
    const lines: Array<{ msg: string; batchSize?: number }> = [];
    const logger = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, cb) => (lines.push(JSON.parse(c.toString())), cb()) }));
    const running = await startWorker(options, config, logger, (src) => loadModelSpec(src));
    try {
      expect(running.worker.options.batchSize).toBe(AUTO_BATCH.cpu);
      expect(running.worker.options.prefetch).toBe(PREFETCH_BATCHES * AUTO_BATCH.cpu);
      expect(lines.find((l) => l.msg.startsWith('--batch-size auto: no GPU memory to size for'))?.batchSize).toBe(AUTO_BATCH.cpu);
    } finally {
      await running.shutdown();
    }
  });
});
