/**
 * The cores this process may use: CPU affinity and the container's cgroup CPU limit (bin/cores.js,
 * plain JavaScript because the command's launcher sizes libuv's threadpool from it before any
 * TypeScript runs; the build writes dist/bin/cores.js re-exporting it, so the compiled path resolves to
 * this same file). Every default that follows the machine's
 * cores (engine threads, libuv threads, `--processes auto`) reads it here, never `os.availableParallelism()`.
 */
export { cgroupCpuLimit, coresWithin, usableCores } from '../../bin/cores.js';
