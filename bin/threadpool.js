// libuv threadpool sizing for the `gradcam-audit` command (imported by bin/gradcam-audit.js before
// anything else runs). sharp decodes, resizes and encodes on libuv's threadpool, 4 threads unless
// UV_THREADPOOL_SIZE says otherwise, so a 16-core GPU node would decode 4 images at a time and starve
// the GPU. One thread per core, at least libuv's 4 and at most 64.
import { availableParallelism } from 'node:os';

/** @param {number} cores @returns {number} */
export function threadpoolSizeFor(cores) {
  return Math.min(64, Math.max(4, Math.floor(cores)));
}

/** Sets UV_THREADPOOL_SIZE when the environment does not choose; must run before the pool is first used. */
export function sizeThreadpool(env = process.env, cores = availableParallelism()) {
  env.UV_THREADPOOL_SIZE ??= String(threadpoolSizeFor(cores));
}
