/**
 * The doctor's report: named checks with a status and a one-line summary, printed as one screen or
 * as JSON. `fail` means the configured setup cannot work (the command exits 1); `warn` works but
 * deserves attention; `skip` was not checked, with the reason.
 */
export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface CheckResult {
  name: string;
  status: CheckStatus;
  summary: string;
  /** Machine-readable facts behind the summary (JSON output and logs). */
  details?: Record<string, unknown>;
}

export interface DoctorReport {
  /** False when any check failed. */
  ok: boolean;
  checks: CheckResult[];
}

export function buildReport(checks: CheckResult[]): DoctorReport {
  return { ok: checks.every((c) => c.status !== 'fail'), checks };
}

const MARK: Record<CheckStatus, string> = { ok: 'ok', warn: 'WARN', fail: 'FAIL', skip: '--' };

/** One line per check, aligned, then the verdict. */
export function renderReport(report: DoctorReport, width = 100): string {
  const name = Math.max(...report.checks.map((c) => c.name.length), 4);
  const lines = report.checks.map((c) => {
    const head = `  ${c.name.padEnd(name)}  ${MARK[c.status].padEnd(4)}  `;
    return wrap(c.summary, width - head.length).map((l, i) => (i === 0 ? head : ' '.repeat(head.length)) + l).join('\n');
  });
  const failed = report.checks.filter((c) => c.status === 'fail');
  const warned = report.checks.filter((c) => c.status === 'warn');
  const verdict = failed.length
    ? `cannot work as configured: ${failed.map((c) => c.name).join(', ')} (exit 1)`
    : warned.length
      ? `works, with warnings: ${warned.map((c) => c.name).join(', ')}`
      : 'everything checked works';
  return `gradcam-audit doctor\n${lines.join('\n')}\n${verdict}\n`;
}

function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  out.push(line);
  return out;
}
