import { describe, expect, it } from 'vitest';
import { sizeThreadpool, threadpoolSizeFor } from '../../../bin/threadpool.js';

describe('libuv threadpool sizing', () => {
  it('gives sharp one thread per core, at least libuv default 4 and at most 64', () => {
    expect([1, 2, 4, 6, 16, 48, 64, 65, 192].map(threadpoolSizeFor)).toEqual([4, 4, 4, 6, 16, 48, 64, 64, 64]);
  });

  it("sets UV_THREADPOOL_SIZE only where the environment does not choose", () => {
    const unset: NodeJS.ProcessEnv = {};
    sizeThreadpool(unset, 16);
    expect(unset.UV_THREADPOOL_SIZE).toBe('16');
    const chosen: NodeJS.ProcessEnv = { UV_THREADPOOL_SIZE: '3' };
    sizeThreadpool(chosen, 16);
    expect(chosen.UV_THREADPOOL_SIZE).toBe('3');
  });

  it('gives a process of a --processes group its share of the cores', () => {
    const child: NodeJS.ProcessEnv = { GRADCAM_AUDIT_PROCESS_COUNT: '2' };
    sizeThreadpool(child, 16);
    expect(child.UV_THREADPOOL_SIZE).toBe('8');
    const small: NodeJS.ProcessEnv = { GRADCAM_AUDIT_PROCESS_COUNT: '7' };
    sizeThreadpool(small, 16);
    expect(small.UV_THREADPOOL_SIZE).toBe('4');
  });
});
