/**
 * `gradcam-audit status [RUN_ID]`: declares the flags only; the implementation is imported when
 * the command runs.
 */
import { Command } from 'commander';
import type { StatusCliFlags } from './status-cli.js';

export async function statusCommand(): Promise<Command> {
  return new Command('status')
    .description('Show runs with total, done, failed, img/s (the last minute while running, the whole run once completed) and ETA')
    .argument('[runId]', 'one run in detail (default: the 20 newest runs)')
    .option('--watch', 'refresh every 2 s until Ctrl-C, or until the run completes when RUN_ID is given')
    .option('--json', 'JSON on stdout (with --watch: one JSON document per line per refresh)')
    .option('--limit <n>', 'runs listed without RUN_ID (default: 20)')
    .action(async (runId: string | undefined, flags: StatusCliFlags) => {
      const { runStatusCli } = await import('./status-cli.js');
      await runStatusCli(runId, flags);
    });
}
