/**
 * The subcommands of the `gradcam-audit` binary, in help order. Each module only declares its flags
 * and imports its implementation lazily, so `enqueue` or `status` never load TensorFlow.js or ONNX
 * Runtime. Tests read the same table to check the README's CLI reference and the deploy files.
 */
import type { Command } from 'commander';

export const COMMAND_LOADERS: Readonly<Record<string, () => Promise<Command>>> = Object.freeze({
  explain: async () => (await import('./worker/explain/command.js')).explainCommand(),
  worker: async () => (await import('./worker/worker-command.js')).workerCommand(),
  dashboard: async () => (await import('./dashboard/command.js')).dashboardCommand(),
  enqueue: async () => (await import('./producer/enqueue-command.js')).enqueueCommand(),
  status: async () => (await import('./producer/status-command.js')).statusCommand(),
  report: async () => (await import('./producer/analysis-commands.js')).reportCommand(),
  compare: async () => (await import('./producer/analysis-commands.js')).compareCommand(),
  demo: async () => (await import('./demo/command.js')).demoCommand(),
  doctor: async () => (await import('./worker/doctor/command.js')).doctorCommand(),
});

export async function loadCommands(): Promise<Command[]> {
  return Promise.all(Object.values(COMMAND_LOADERS).map((load) => load()));
}
