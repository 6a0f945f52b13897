/**
 * `gradcam-audit report` and `gradcam-audit compare`: declare the flags only; the implementation
 * is imported when a command runs.
 */
import { Command } from 'commander';
import type { CompareCliFlags, ReportCliFlags } from './analysis-cli.js';

export async function reportCommand(): Promise<Command> {
  return new Command('report')
    .description("Write or refresh a finished run's audit.json, metrics.parquet and report.html from its manifest.jsonl")
    .argument('<run>', 'run id, or the run\'s output prefix s3://bucket/prefix/ (then no Redis is needed)')
    .option('--out <dir>', 'write the files to this local folder instead of the run\'s output prefix')
    .option('--json', 'print the counts and flag counts as JSON')
    .action(async (run: string, flags: ReportCliFlags) => {
      const { runReportCli } = await import('./analysis-cli.js');
      await runReportCli(run, flags);
    });
}

export async function compareCommand(): Promise<Command> {
  return new Command('compare')
    .description('Compare two runs over the same keys: prediction agreement, per-image map similarity, the classes whose attention moved most and the images that changed most; writes compare.json and compare.html')
    .argument('<runA>', 'run id or output prefix (s3://bucket/prefix/) of the first run')
    .argument('<runB>', 'run id or output prefix of the second run')
    .option('--out <dir>', "write compare.json and compare.html to this local folder (default: compare/<runA>/ under run B's output prefix)")
    .option('--json', 'print compare.json on stdout')
    .action(async (runA: string, runB: string, flags: CompareCliFlags) => {
      const { runCompareCli } = await import('./analysis-cli.js');
      await runCompareCli(runA, runB, flags);
    });
}
