#!/usr/bin/env node
/** The one `gradcam-audit` binary; the program and its exit-code policy live in cli-program.ts. */
import { runCli } from './cli-program.js';

// Started by a supervisor with an IPC channel (the demo): when that channel closes, the supervisor
// is gone, so shut down as on SIGTERM (the worker drains) rather than run on as an orphan.
if (process.channel) {
  process.channel.unref();
  process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));
}

process.exitCode = await runCli(process.argv);
