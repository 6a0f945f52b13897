/**
 * The `gradcam-audit` program: every subcommand (commands.ts), with one error policy.
 *
 * Exit codes: 0 on success (and for --help / --version), 2 for usage errors (unknown or missing
 * flags and arguments, invalid flag values: every `ConfigError`), 1 for everything else.
 */
import { Command, CommanderError } from 'commander';
import { loadCommands } from './commands.js';
import { AuditError, describeError } from './shared/errors.js';
import { PACKAGE_VERSION } from './shared/version.js';

export const EXIT_USAGE = 2;

export interface CliOutput {
  writeOut(text: string): void;
  writeErr(text: string): void;
}

const STDIO: CliOutput = { writeOut: (s) => void process.stdout.write(s), writeErr: (s) => void process.stderr.write(s) };

export async function buildProgram(output: CliOutput = STDIO): Promise<Command> {
  const program = new Command('gradcam-audit')
    .description('Audit image classifiers across S3 buckets: VGG16 predictions and Grad-CAM heatmaps')
    .version(PACKAGE_VERSION)
    .configureOutput({ writeOut: output.writeOut, writeErr: output.writeErr })
    .showHelpAfterError()
    .exitOverride();
  for (const command of await loadCommands()) {
    // addCommand (unlike .command()) does not pass settings down: without this, a subcommand's
    // flag errors would call process.exit(1) itself instead of reaching our exit-code policy.
    command.copyInheritedSettings(program);
    program.addCommand(command);
  }
  return program;
}

/** Parse `argv` and run the chosen command; resolves to the exit code. */
export async function runCli(argv: string[], output: CliOutput = STDIO): Promise<number> {
  const program = await buildProgram(output);
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has printed its message; help and version are successes, the rest usage errors.
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? 0 : EXIT_USAGE;
    }
    // Our own errors are already actionable; print them without a stack trace.
    output.writeErr(`gradcam-audit: ${err instanceof AuditError ? describeError(err) : ((err as Error)?.stack ?? String(err))}\n`);
    return err instanceof AuditError && err.code === 'CONFIG' ? EXIT_USAGE : 1;
  }
}
