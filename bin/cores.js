// The cores this process may use: the CPUs it may run on (`os.availableParallelism()`, which sees
// CPU affinity) and, on Linux, the cgroup CPU limit of its container (Kubernetes `resources.limits.cpu`,
// `docker run --cpus`), which Node 20's libuv does not read. A pod limited to 4 CPUs on a 64-core GPU
// node would otherwise start 63 ONNX Runtime threads, 64 libuv threads and, with `--processes auto`,
// 31 worker processes, all throttled into 4 CPUs' worth of time.
//
// Plain JavaScript, because bin/threadpool.js sizes libuv's threadpool from it before the TypeScript
// loader exists; src/shared/cores.ts re-exports it, and the build writes dist/bin/cores.js, a
// re-export of this file, so the compiled code and the launcher load this one module.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** @typedef {(path: string) => string} ReadText */

/** @type {ReadText} */
const readText = (path) => readFileSync(path, 'utf8');

/**
 * The CPU limit of this process's cgroup and of every cgroup above it (the smallest), in CPUs, or
 * null when there is none or it cannot be read (not Linux, no cgroup file system mounted).
 * cgroup v2: `cpu.max` ("max 100000" or "<quota> <period>"); v1: `cpu.cfs_quota_us` (-1: none)
 * over `cpu.cfs_period_us`. Mount points come from /proc/self/mountinfo, as they differ between
 * hosts, containers and hybrid layouts.
 * @param {ReadText} [read]
 * @returns {number | null}
 */
export function cgroupCpuLimit(read = readText) {
  const cgroups = tryRead(read, '/proc/self/cgroup');
  const mountinfo = tryRead(read, '/proc/self/mountinfo');
  if (cgroups === null || mountinfo === null) return null;
  /** @type {number | null} */
  let limit = null;
  for (const mount of cgroupMounts(mountinfo)) {
    const path = processPath(cgroups, mount.v2 ? null : 'cpu');
    if (path === null) continue;
    for (const dir of dirsUp(mount, path)) {
      const cpus = mount.v2 ? v2Limit(read, dir) : v1Limit(read, dir);
      if (cpus !== null) limit = limit === null ? cpus : Math.min(limit, cpus);
    }
  }
  return limit;
}

/**
 * Whole cores from the CPUs available and a cgroup limit: the smaller, rounded down (a 2.5-CPU limit
 * runs 2 busy threads without throttling, 3 would be throttled), and at least 1.
 * @param {number} parallelism
 * @param {number | null} limit
 * @returns {number}
 */
export function coresWithin(parallelism, limit) {
  return Math.max(1, Math.floor(limit === null ? parallelism : Math.min(parallelism, limit)));
}

/** @type {number | undefined} */
let cached;

/**
 * The cores this process may use (see the top of this file); read once per process, since neither
 * the affinity nor the limit of a running container changes in practice.
 * @returns {number}
 */
export function usableCores() {
  cached ??= coresWithin(availableParallelism(), cgroupCpuLimit());
  return cached;
}

/**
 * @param {ReadText} read
 * @param {string} path
 * @returns {string | null}
 */
function tryRead(read, path) {
  try {
    return read(path);
  } catch {
    return null;
  }
}

/**
 * cgroup file systems that can limit CPU: every cgroup2 mount, and v1 mounts with the `cpu`
 * controller. `root` is the cgroup path the mount shows at its mount point.
 * @param {string} mountinfo
 * @returns {Array<{ root: string, point: string, v2: boolean }>}
 */
function cgroupMounts(mountinfo) {
  const mounts = [];
  for (const line of mountinfo.split('\n')) {
    // "<id> <parent> <maj:min> <root> <mount point> <options> [optional fields] - <fstype> <source> <super options>"
    const [left, right] = line.split(' - ');
    if (left === undefined || right === undefined) continue;
    const fields = left.split(' ');
    const [fstype, , superOptions = ''] = right.split(' ');
    const root = unescapeMount(fields[3] ?? '');
    const point = unescapeMount(fields[4] ?? '');
    if (fstype === 'cgroup2') mounts.push({ root, point, v2: true });
    else if (fstype === 'cgroup' && superOptions.split(',').includes('cpu')) mounts.push({ root, point, v2: false });
  }
  return mounts;
}

/**
 * This process's cgroup path: the v2 line ("0::/path") when `controller` is null, else the v1 line
 * whose controller list holds it ("3:cpu,cpuacct:/path").
 * @param {string} cgroups
 * @param {string | null} controller
 * @returns {string | null}
 */
function processPath(cgroups, controller) {
  for (const line of cgroups.split('\n')) {
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const controllers = line.slice(first + 1, second);
    const path = line.slice(second + 1);
    if (controller === null ? line.slice(0, first) === '0' && controllers === '' : controllers.split(',').includes(controller)) return path;
  }
  return null;
}

/**
 * The process's cgroup directory under a mount and each directory above it, up to the mount point.
 * A path outside the mount's root (another namespace's view) gives the mount point alone, which is
 * what a container sees of its own cgroup.
 * @param {{ root: string, point: string }} mount
 * @param {string} path
 * @returns {string[]}
 */
function dirsUp(mount, path) {
  const root = mount.root === '/' ? '' : mount.root;
  if (!(path === root || path.startsWith(`${root}/`) || root === '')) return [mount.point];
  const relative = path.slice(root.length).split('/').filter((p) => p.length > 0 && p !== '..');
  const dirs = [];
  for (let n = relative.length; n >= 0; n--) dirs.push([mount.point, ...relative.slice(0, n)].join('/'));
  return dirs;
}

/**
 * @param {ReadText} read
 * @param {string} dir
 * @returns {number | null}
 */
function v2Limit(read, dir) {
  const text = tryRead(read, `${dir}/cpu.max`);
  if (text === null) return null;
  const [quota, period] = text.trim().split(/\s+/);
  return ratio(quota, period);
}

/**
 * @param {ReadText} read
 * @param {string} dir
 * @returns {number | null}
 */
function v1Limit(read, dir) {
  const quota = tryRead(read, `${dir}/cpu.cfs_quota_us`);
  const period = tryRead(read, `${dir}/cpu.cfs_period_us`);
  return quota === null || period === null ? null : ratio(quota.trim(), period.trim());
}

/**
 * quota/period in CPUs; null for "max", -1 (v1's "none") or anything unreadable.
 * @param {string | undefined} quota
 * @param {string | undefined} period
 * @returns {number | null}
 */
function ratio(quota, period) {
  if (quota === undefined || period === undefined || !/^\d+$/.test(quota) || !/^\d+$/.test(period)) return null;
  const q = Number(quota);
  const p = Number(period);
  return q > 0 && p > 0 ? q / p : null;
}

/**
 * mountinfo escapes space, tab, newline and backslash as octal.
 * @param {string} field
 * @returns {string}
 */
function unescapeMount(field) {
  return field.replace(/\\([0-7]{3})/g, (_, octal) => String.fromCharCode(parseInt(octal, 8)));
}
