import { describe, expect, it } from 'vitest';
import { jobIdFor, jobOptionsFor, newRunId, validateRunId } from '../../../src/shared/queue/contract.js';
import { ConfigError } from '../../../src/shared/errors.js';

describe('job ids', () => {
  it('are deterministic for (run, key) and distinct across runs and keys', () => {
    expect(jobIdFor('run1', 'a/b.jpg')).toBe(jobIdFor('run1', 'a/b.jpg'));
    expect(jobIdFor('run1', 'a/b.jpg')).not.toBe(jobIdFor('run2', 'a/b.jpg'));
    expect(jobIdFor('run1', 'a/b.jpg')).not.toBe(jobIdFor('run1', 'a/b.jpeg'));
    // The separator keeps ('ab','c') and ('a','bc') apart.
    expect(jobIdFor('ab', 'c')).not.toBe(jobIdFor('a', 'bc'));
  });

  it('are valid BullMQ ids for any key: no ":" and never all digits', () => {
    const keys = ['1', '123', 'a:b:c', 'ünï/猫.png', 'with space', '../x', ''.padEnd(900, 'k')];
    const ids = new Set<string>();
    for (const key of keys) {
      for (const run of ['123', 'r', validateRunId('2026-run_1')]) {
        const id = jobIdFor(run, key);
        expect(id).not.toContain(':');
        expect(/^\d+$/.test(id)).toBe(false);
        expect(id.length).toBeLessThan(100);
        ids.add(id);
      }
    }
    expect(ids.size).toBe(keys.length * 3);
  });

  it('carries retry policy with jittered exponential backoff', () => {
    const o = jobOptionsFor('r', 'k');
    expect(o.jobId).toBe(jobIdFor('r', 'k'));
    expect(o.attempts).toBeGreaterThan(1);
    expect(o.backoff).toMatchObject({ type: 'exponential' });
  });

  it('validates run ids and generates valid ones', () => {
    expect(validateRunId(newRunId())).toMatch(/^\d{8}-\d{6}-[0-9a-f]{6}$/);
    expect(() => validateRunId('a:b')).toThrow(ConfigError);
    expect(() => validateRunId('../x')).toThrow(/--run-id/);
    expect(() => validateRunId('')).toThrow(ConfigError);
  });
});
