#!/usr/bin/env node
/**
 * The one `gradcam-audit` binary. Each subcommand module only declares its flags and imports its
 * implementation lazily, so `enqueue` or `status` never load TensorFlow.js or ONNX Runtime.
 */
import { Command, CommanderError } from 'commander';
import { PACKAGE_VERSION } from './shared/version.js';
import { describeError, AuditError } from './shared/errors.js';

const program = new Command('gradcam-audit')
  .description('Audit image classifiers across S3 buckets: VGG16 predictions and Grad-CAM heatmaps')
  .version(PACKAGE_VERSION)
  .showHelpAfterError()
  .exitOverride();

// Subcommands register here (each module exports a function returning a configured Command).
const registrations: Array<() => Promise<Command>> = [
  async () => (await import('./worker/explain/command.js')).explainCommand(),
  async () => (await import('./worker/worker-command.js')).workerCommand(),
  async () => (await import('./dashboard/command.js')).dashboardCommand(),
  async () => (await import('./producer/enqueue-command.js')).enqueueCommand(),
  async () => (await import('./producer/status-command.js')).statusCommand(),
  async () => (await import('./demo/command.js')).demoCommand(),
];

async function main(argv: string[]): Promise<void> {
  for (const register of registrations) program.addCommand(await register());
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    // Our own errors are already actionable; print them without a stack trace.
    process.stderr.write(`gradcam-audit: ${err instanceof AuditError ? describeError(err) : (err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = err instanceof AuditError && err.code === 'CONFIG' ? 2 : 1;
  }
}

await main(process.argv);
