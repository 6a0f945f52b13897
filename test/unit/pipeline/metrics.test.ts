import { afterEach, describe, expect, it } from 'vitest';
import { startMetricsServer, WorkerMetrics, type MetricsServer } from '../../../src/worker/pipeline/metrics.js';

describe('worker metrics', () => {
  let server: MetricsServer | null = null;
  afterEach(async () => {
    await server?.close();
    server = null;
  });

  it('serves the registry on /metrics, ok on /healthz, 404 elsewhere, bound to loopback', async () => {
    const m = new WorkerMetrics({ processMetrics: false });
    m.processed.inc({ outcome: 'ok' }, 3);
    m.failed.inc({ reason: 'CORRUPT_IMAGE' });
    m.batchSize.observe(16);
    m.observeStage('infer', 250);
    server = await startMetricsServer(m.registry, '127.0.0.1', 0);
    expect(server.port).toBeGreaterThan(0);
    const base = `http://127.0.0.1:${server.port}`;
    const res = await fetch(`${base}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/text\/plain/);
    const text = await res.text();
    expect(text).toMatch(/gradcam_audit_images_processed_total\{outcome="ok"\} 3/);
    expect(text).toMatch(/gradcam_audit_images_failed_total\{reason="CORRUPT_IMAGE"\} 1/);
    expect(text).toMatch(/gradcam_audit_batch_size_bucket\{le="16"\} 1/);
    expect(text).toMatch(/gradcam_audit_batch_size_bucket\{le="8"\} 0/);
    expect(text).toMatch(/gradcam_audit_stage_seconds_sum\{stage="infer"\} 0\.25/);
    expect(await (await fetch(`${base}/healthz`)).text()).toBe('ok\n');
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });

  it('reads the queue depth at scrape time and caches it', async () => {
    let calls = 0;
    const m = new WorkerMetrics({ processMetrics: false, queueDepthCacheMs: 60_000, queueDepth: async () => ++calls * 10 });
    expect(await m.registry.getSingleMetricAsString('gradcam_audit_queue_depth')).toMatch(/gradcam_audit_queue_depth 10/);
    expect(await m.registry.getSingleMetricAsString('gradcam_audit_queue_depth')).toMatch(/gradcam_audit_queue_depth 10/);
    expect(calls).toBe(1);
    const fresh = new WorkerMetrics({ processMetrics: false, queueDepthCacheMs: 0, queueDepth: async () => ++calls * 10 });
    await fresh.registry.getSingleMetricAsString('gradcam_audit_queue_depth');
    await new Promise((r) => setTimeout(r, 2));
    expect(await fresh.registry.getSingleMetricAsString('gradcam_audit_queue_depth')).toMatch(/gradcam_audit_queue_depth 30/);
  });

  it('keeps the last queue depth when reading it fails (Redis down) instead of failing the scrape', async () => {
    let fail = false;
    const m = new WorkerMetrics({ processMetrics: false, queueDepthCacheMs: 0, queueDepth: async () => {
      if (fail) throw new Error('connection refused');
      return 7;
    } });
    await m.registry.metrics();
    fail = true;
    await new Promise((r) => setTimeout(r, 2));
    expect(await m.registry.getSingleMetricAsString('gradcam_audit_queue_depth')).toMatch(/gradcam_audit_queue_depth 7/);
  });
});
