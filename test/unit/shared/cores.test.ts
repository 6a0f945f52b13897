import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { cgroupCpuLimit, coresWithin, usableCores } from '../../../src/shared/cores.js';
import { sizeThreadpool, threadpoolSizeFor } from '../../../bin/threadpool.js';

/** A read-only file system of the given files; anything else is missing, as on a real host. */
function files(entries: Record<string, string>): (path: string) => string {
  return (path) => {
    const text = entries[path];
    if (text === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    return text;
  };
}

// Shapes of /proc/self/mountinfo lines as the kernel writes them.
const V2_MOUNT = '30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n';
const V1_CPU_MOUNT = '34 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n';
const V1_CPUSET_MOUNT = '35 25 0:30 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpuset\n';

describe('cgroup CPU limit', () => {
  it('reads cgroup v2 cpu.max along the path and takes the smallest limit above the process', () => {
    const read = files({
      '/proc/self/cgroup': '0::/kubepods.slice/pod1.slice/ctr.scope\n',
      '/proc/self/mountinfo': V2_MOUNT,
      '/sys/fs/cgroup/kubepods.slice/pod1.slice/ctr.scope/cpu.max': 'max 100000\n',
      '/sys/fs/cgroup/kubepods.slice/pod1.slice/cpu.max': '250000 100000\n',
      '/sys/fs/cgroup/kubepods.slice/cpu.max': '1600000 100000\n',
    });
    expect(cgroupCpuLimit(read)).toBe(2.5);
  });

  it("sees a container's own cgroup at its namespace root (cgroupns)", () => {
    const read = files({ '/proc/self/cgroup': '0::/\n', '/proc/self/mountinfo': V2_MOUNT, '/sys/fs/cgroup/cpu.max': '400000 100000\n' });
    expect(cgroupCpuLimit(read)).toBe(4);
  });

  it('is null where nothing is limited: cpu.max "max", v1 quota -1, no cgroup files, not Linux', () => {
    expect(cgroupCpuLimit(files({ '/proc/self/cgroup': '0::/\n', '/proc/self/mountinfo': V2_MOUNT, '/sys/fs/cgroup/cpu.max': 'max 100000\n' }))).toBeNull();
    expect(
      cgroupCpuLimit(files({
        '/proc/self/cgroup': '4:cpu,cpuacct:/\n',
        '/proc/self/mountinfo': V1_CPU_MOUNT,
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '-1\n',
        '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
      })),
    ).toBeNull();
    expect(cgroupCpuLimit(files({ '/proc/self/cgroup': '0::/\n', '/proc/self/mountinfo': V2_MOUNT }))).toBeNull();
    expect(cgroupCpuLimit(files({}))).toBeNull();
  });

  it('reads cgroup v1 cfs quota over period, from the cpu controller mount only', () => {
    const read = files({
      '/proc/self/cgroup': '5:cpuset:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n',
      '/proc/self/mountinfo': V1_CPUSET_MOUNT + V1_CPU_MOUNT,
      '/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '150000\n',
      '/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000\n',
      // a cpuset directory with the same file names must not be read as a CPU limit
      '/sys/fs/cgroup/cpuset/docker/abc/cpu.cfs_quota_us': '100000\n',
      '/sys/fs/cgroup/cpuset/docker/abc/cpu.cfs_period_us': '100000\n',
    });
    expect(cgroupCpuLimit(read)).toBe(1.5);
  });

  it("reads a v1 container's cgroup mounted at its own path (mount root = the process's cgroup)", () => {
    const read = files({
      '/proc/self/cgroup': '4:cpu,cpuacct:/kubepods/burstable/pod9/ctr\n',
      '/proc/self/mountinfo': '34 25 0:29 /kubepods/burstable/pod9/ctr /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpuacct,cpu\n',
      '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '800000\n',
      '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
    });
    expect(cgroupCpuLimit(read)).toBe(8);
  });

  it('takes the smaller of a hybrid layout (v1 cpu controller and a v2 mount)', () => {
    const read = files({
      '/proc/self/cgroup': '1:cpu:/job\n0::/job\n',
      '/proc/self/mountinfo': '33 25 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n36 25 0:31 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n',
      '/sys/fs/cgroup/cpu/job/cpu.cfs_quota_us': '300000\n',
      '/sys/fs/cgroup/cpu/job/cpu.cfs_period_us': '100000\n',
      '/sys/fs/cgroup/unified/job/cpu.max': '200000 100000\n',
    });
    expect(cgroupCpuLimit(read)).toBe(2);
  });

  it('ignores unreadable values rather than guessing', () => {
    const read = files({ '/proc/self/cgroup': '0::/\n', '/proc/self/mountinfo': V2_MOUNT, '/sys/fs/cgroup/cpu.max': 'lots 100000\n' });
    expect(cgroupCpuLimit(read)).toBeNull();
  });

  it('unescapes mount points with spaces', () => {
    const read = files({
      '/proc/self/cgroup': '0::/\n',
      '/proc/self/mountinfo': '30 23 0:26 / /mnt/cg\\040root rw - cgroup2 cgroup2 rw\n',
      '/mnt/cg root/cpu.max': '100000 100000\n',
    });
    expect(cgroupCpuLimit(read)).toBe(1);
  });
});

describe('usable cores', () => {
  it('is the smaller of the CPUs available and the limit, rounded down, at least 1', () => {
    expect(coresWithin(64, null)).toBe(64);
    expect(coresWithin(64, 4)).toBe(4);
    expect(coresWithin(64, 2.5)).toBe(2);
    expect(coresWithin(2, 8)).toBe(2);
    expect(coresWithin(64, 0.5)).toBe(1);
  });

  it("is this machine's available parallelism within its own cgroup limit", () => {
    expect(usableCores()).toBe(coresWithin(availableParallelism(), cgroupCpuLimit()));
  });

  it("sizes libuv's threadpool from the usable cores by default", () => {
    const env: NodeJS.ProcessEnv = {};
    sizeThreadpool(env);
    expect(env.UV_THREADPOOL_SIZE).toBe(String(threadpoolSizeFor(usableCores())));
  });
});
