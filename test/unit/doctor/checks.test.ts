/**
 * The doctor's verdicts from stated facts: Node versions, GPU requirements, secrets kept out of
 * the report, parity arithmetic, and the one-screen rendering with its exit status.
 */
import { describe, expect, it } from 'vitest';
import type { EngineImageResult } from '../../../src/worker/engine/engine.js';
import { parityDiff } from '../../../src/worker/doctor/engine-checks.js';
import { buildReport, renderReport } from '../../../src/worker/doctor/report.js';
import { gpuCheck, maskKeyId, nodeCheck, redactUrl } from '../../../src/worker/doctor/system-checks.js';

describe('doctor checks', () => {
  it('supports Node 24 and 22, warns on Node 20 and refuses older ones', () => {
    expect(nodeCheck('24.22.3').status).toBe('ok');
    expect(nodeCheck('22.12.0').status).toBe('ok');
    expect(nodeCheck('26.0.0').status).toBe('ok');
    const n20 = nodeCheck('20.20.2');
    expect(n20.status).toBe('warn');
    expect(n20.summary).toMatch(/end of life.*Node 24 or 22 LTS/);
    expect(nodeCheck('20.11.0').status).toBe('fail');
    expect(nodeCheck('18.20.0').status).toBe('fail');
  });

  it('fails a required GPU the engine does not use, and says so when a GPU sits idle', () => {
    expect(gpuCheck(['NVIDIA H200'], 'gpu', true).status).toBe('ok');
    expect(gpuCheck([], 'cpu', true)).toMatchObject({ status: 'fail', summary: expect.stringMatching(/GPU required/) });
    expect(gpuCheck(['NVIDIA H200'], 'cpu', false)).toMatchObject({ status: 'warn', summary: expect.stringMatching(/0: NVIDIA H200 seen, but the engine computes on the CPU/) });
    expect(gpuCheck([], 'cpu', false).status).toBe('skip');
  });

  it('never shows a secret: the access key id is masked and a Redis password redacted', () => {
    expect(maskKeyId('AKIAIOSFODNN7EXAMPLE')).toBe('AKIA…MPLE');
    expect(maskKeyId('S3RVER')).toBe('S3…');
    expect(redactUrl('redis://default:hunter2@redis.internal:6379/0')).toBe('redis://default:***@redis.internal:6379/0');
    expect(redactUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
    expect(redactUrl('redis+cluster://app:hunter2@10.0.0.1:6379,10.0.0.2:6379')).toBe('redis+cluster://app:***@10.0.0.1:6379,10.0.0.2:6379');
  });

  it('measures parity as the largest probability and CAM differences, and counts top-1 disagreements', () => {
    const result = (p: number[], cls: number, grid: number[]): EngineImageResult => ({
      probabilities: Float32Array.from(p),
      logits: null,
      cams: [{ classIndex: cls, score: 1, grid: Float32Array.from(grid), height: 1, width: grid.length, rawMax: 1, rawMean: 0.5, degenerate: null }],
    });
    const a = [result([0.7, 0.3], 0, [0, 0.5, 1]), result([0.2, 0.8], 1, [1, 0])];
    const b = [result([0.69, 0.31], 0, [0, 0.52, 1]), result([0.6, 0.4], 0, [1, 0])];
    const d = parityDiff(a, b);
    expect(d.probability).toBeCloseTo(0.4, 6);
    expect(d.cam).toBeCloseTo(0.02, 6);
    expect(d.top1Mismatches).toBe(1);
  });

  it('renders one line per check and a verdict; any failure makes the report not ok', () => {
    const fine = buildReport([
      { name: 'node', status: 'ok', summary: 'Node 24.22.3' },
      { name: 'redis', status: 'warn', summary: 'maxmemory-policy allkeys-lru' },
      { name: 'gpu', status: 'skip', summary: 'none' },
    ]);
    expect(fine.ok).toBe(true);
    expect(renderReport(fine)).toBe('gradcam-audit doctor\n  node   ok    Node 24.22.3\n  redis  WARN  maxmemory-policy allkeys-lru\n  gpu    --    none\nworks, with warnings: redis\n');
    const broken = buildReport([...fine.checks, { name: 's3', status: 'fail', summary: 'no credentials' }]);
    expect(broken.ok).toBe(false);
    expect(renderReport(broken)).toMatch(/cannot work as configured: s3 \(exit 1\)\n$/);
  });
});
