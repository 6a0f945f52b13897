/**
 * What the tests know about operating-system processes: the tree below a process (from ps),
 * whether a pid is alive, and a process's resident memory now and at its peak (Linux /proc).
 * Used to prove that commands leave nothing behind and that workers stay within their memory bound.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface ProcessEntry {
  pid: number;
  command: string;
}

/** Every process below `root` (children, grandchildren, ...), from ps. */
export function descendants(root: number): ProcessEntry[] {
  const rows = execFileSync('ps', ['-e', '-o', 'pid=,ppid=,args='], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .map((line) => /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ pid: Number(m[1]), ppid: Number(m[2]), command: m[3] as string }));
  const found: ProcessEntry[] = [];
  const walk = (pid: number): void => {
    for (const r of rows.filter((x) => x.ppid === pid)) {
      found.push({ pid: r.pid, command: r.command });
      walk(r.pid);
    }
  };
  walk(root);
  return found;
}

/** Whether a process with this pid exists (a zombie not yet reaped counts as alive). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export interface ProcessMemory {
  /** Resident set size now (VmRSS), bytes. */
  rssBytes: number;
  /** Peak resident set size so far (VmHWM), bytes: catches spikes between two samples. */
  peakRssBytes: number;
}

/** Resident memory of `pid` from /proc/<pid>/status; null when the process is gone (or not Linux). */
export function processMemory(pid: number): ProcessMemory | null {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const kib = (field: string): number | null => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
    return m ? Number(m[1]) * 1024 : null;
  };
  const rss = kib('VmRSS');
  const peak = kib('VmHWM');
  // A zombie has no memory fields left.
  return rss === null || peak === null ? null : { rssBytes: rss, peakRssBytes: peak };
}
