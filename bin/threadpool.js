// libuv threadpool sizing for the `gradcam-audit` command (imported by bin/gradcam-audit.js before
// anything else runs). sharp decodes, resizes and encodes on libuv's threadpool, 4 threads unless
// UV_THREADPOOL_SIZE says otherwise, so a 16-core GPU node would decode 4 images at a time and starve
// the GPU. One thread per usable core (bin/cores.js: affinity and the cgroup CPU limit), at least
// libuv's 4 and at most 64.
import { usableCores } from './cores.js';

/** @param {number} cores @returns {number} */
export function threadpoolSizeFor(cores) {
  return Math.min(64, Math.max(4, Math.floor(cores)));
}

/**
 * Sets UV_THREADPOOL_SIZE when the environment does not choose; must run before the pool is first
 * used. A process of a `worker --processes N` group (GRADCAM_AUDIT_PROCESS_COUNT, set by its
 * supervisor) takes its share of the cores, as its engine threads do (`processCores` in
 * src/worker/pipeline/worker-processes.ts).
 */
export function sizeThreadpool(env = process.env, cores = usableCores()) {
  const group = Number(env.GRADCAM_AUDIT_PROCESS_COUNT);
  const share = Number.isInteger(group) && group > 1 ? Math.max(1, Math.floor(cores / group)) : cores;
  env.UV_THREADPOOL_SIZE ??= String(threadpoolSizeFor(share));
}
