#!/usr/bin/env node
/** The one `gradcam-audit` binary; the program and its exit-code policy live in cli-program.ts. */
import { runCli } from './cli-program.js';

// Started by a supervisor with an IPC channel (the demo): when that channel closes, the supervisor
// is gone, so shut down as on SIGTERM (the worker drains) rather than run on as an orphan.
if (process.channel) {
  process.channel.unref();
  process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));
}

// The AWS SDK prints a multi-line NodeVersionSupportWarning on Node 20 (its releases after January
// 2027 need Node >= 22). It is about the SDK's future, not this run, so it never reaches users;
// `gradcam-audit doctor` reports the Node version and its support status instead. The variable also
// reaches the worker, dashboard and enqueue processes the demo spawns.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

process.exitCode = await runCli(process.argv);
