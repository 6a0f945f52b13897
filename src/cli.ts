#!/usr/bin/env node
/** The one `gradcam-audit` binary; the program and its exit-code policy live in cli-program.ts. */
import { runCli } from './cli-program.js';

process.exitCode = await runCli(process.argv);
