/** Small helpers the process-CPU benchmarks share (bench:audit, bench:methods, stage-cpu). */

/** The word after `name` on the command line, or undefined when the flag is absent. */
export function textFlag(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** The number after `name` on the command line, or `fallback` when the flag is absent. */
export function flag(name: string, fallback: number): number {
  const value = textFlag(name);
  return value === undefined ? fallback : Number(value);
}

/** CPU time of this process so far, user + system, in ms: a loaded machine inflates wall time, not this. */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}
