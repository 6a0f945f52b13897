/**
 * `gradcam-audit doctor`: declares the flags only; the checks (ONNX Runtime, TF.js, sharp, the
 * Redis and S3 clients) are imported when the command runs.
 */
import { Command } from 'commander';
import { addModelFlags } from '../../shared/model-options.js';
import { addOnnxFlags } from '../engine/onnx/options.js';
import type { RawDoctorFlags } from './run.js';

export async function doctorCommand(): Promise<Command> {
  const command = new Command('doctor')
    .description('Check what this machine will do: Node, engines and providers, GPU, the model on the chosen engine (parity with a CPU path, img/s), Redis and S3; exits 1 when the setup cannot work')
    .option('--weights <src>', 'model to check, as for worker (env GRADCAM_AUDIT_WEIGHTS; default: the bundled demo model)');
  // The model flags and model card as explain and worker take them: the parity images get the model's own preprocessing.
  return addOnnxFlags(addModelFlags(command)
    .option('--engine <name>', 'auto|tfjs|onnx (default: auto)')
    .option('--backend <name>', 'TF.js backend: auto|node-gpu|node|wasm|cpu (default: auto)')
    .option('--require-gpu', 'fail unless the engine computes on a GPU (env GRADCAM_AUDIT_REQUIRE_GPU)')
    .option('--source <uri>', 's3://BUCKET/PREFIX to check read access to (default: check the credentials and ListBuckets)')
    .option('--offline', 'skip Redis and S3 (a machine that only runs explain)')
    .option('--batch <n>', 'batch size of the speed check (default: 8)')
    .option('--json', 'the report as JSON on stdout'))
    .action(async (flags: RawDoctorFlags) => {
      const { runDoctorCli } = await import('./cli.js');
      process.exitCode = await runDoctorCli(flags);
    });
}
