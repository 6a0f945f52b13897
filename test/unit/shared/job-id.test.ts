import { describe, expect, it } from 'vitest';
import { jobIdFor, jobOptionsFor, newRunId, validateRunId } from '../../../src/shared/queue/contract.js';
import { ConfigError } from '../../../src/shared/errors.js';

describe('job ids', () => {
  it('are deterministic for (run, epoch, key) and distinct across runs, epochs and keys', () => {
    expect(jobIdFor('run1', 'e1', 'a/b.jpg')).toBe(jobIdFor('run1', 'e1', 'a/b.jpg'));
    expect(jobIdFor('run1', 'e1', 'a/b.jpg')).not.toBe(jobIdFor('run2', 'e1', 'a/b.jpg'));
    expect(jobIdFor('run1', 'e1', 'a/b.jpg')).not.toBe(jobIdFor('run1', 'e1', 'a/b.jpeg'));
    // A run created afresh (deleted or lost, then enqueued again) never reuses an old run's ids.
    expect(jobIdFor('run1', 'e1', 'a/b.jpg')).not.toBe(jobIdFor('run1', 'e2', 'a/b.jpg'));
    // The separator keeps ('ab','c') and ('a','bc') apart.
    expect(jobIdFor('ab', 'e', 'c')).not.toBe(jobIdFor('a', 'e', 'bc'));
  });

  it('are valid BullMQ ids for any key: no ":" and never all digits', () => {
    const keys = ['1', '123', 'a:b:c', 'ünï/猫.png', 'with space', '../x', ''.padEnd(900, 'k')];
    const ids = new Set<string>();
    for (const key of keys) {
      for (const run of ['123', 'r', validateRunId('2026-run_1')]) {
        // An epoch as createRun makes them: base-36 milliseconds and 6 hex digits.
        const id = jobIdFor(run, 'mil3x0ab12cd34', key);
        expect(id).not.toContain(':');
        expect(/^\d+$/.test(id)).toBe(false);
        expect(id.length).toBeLessThan(100);
        ids.add(id);
      }
    }
    expect(ids.size).toBe(keys.length * 3);
  });

  it('carries retry policy with jittered exponential backoff', () => {
    const o = jobOptionsFor('r', 'e', 'k');
    expect(o.jobId).toBe(jobIdFor('r', 'e', 'k'));
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
