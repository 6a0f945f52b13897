/** `status` as a process: one snapshot or a watch loop, then every connection closed. */
import { loadConfig, parseIntInRange } from '../shared/config.js';
import { validateRunId } from '../shared/queue/contract.js';
import { connectProducer } from './connections.js';
import { readStatus, renderRunDetail, renderStatusTable, STATUS_DEFAULTS, watchStatus } from './status.js';

export interface StatusCliFlags {
  watch?: boolean;
  json?: boolean;
  limit?: string;
}

export async function runStatusCli(runId: string | undefined, flags: StatusCliFlags): Promise<void> {
  if (runId !== undefined) validateRunId(runId, 'RUN_ID');
  const limit = flags.limit === undefined ? STATUS_DEFAULTS.limit : parseIntInRange('--limit', flags.limit, 1, 10_000);
  const config = loadConfig();
  const conn = await connectProducer(config, `gca-status-${process.pid}`);
  const deps = { runs: conn.runs };
  try {
    if (flags.watch) {
      const abort = new AbortController();
      const stop = (): void => abort.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        await watchStatus(deps, { runId, json: flags.json === true, signal: abort.signal, write: (t) => process.stdout.write(t), clear: Boolean(process.stdout.isTTY) && !flags.json });
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
      return;
    }
    const statuses = await readStatus(deps, runId, limit);
    if (flags.json) process.stdout.write(`${JSON.stringify(runId !== undefined ? statuses[0] : statuses, null, 2)}\n`);
    else process.stdout.write(runId !== undefined && statuses[0] ? renderRunDetail(statuses[0]) : renderStatusTable(statuses));
  } finally {
    await conn.close();
  }
}
