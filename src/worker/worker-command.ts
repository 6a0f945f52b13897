/**
 * `gradcam-audit worker`: declares the flags only; the implementation (TF.js or ONNX Runtime,
 * sharp, BullMQ) is imported when the command actually runs.
 */
import { Command } from 'commander';
import { addModelFlags } from '../shared/model-options.js';
import { addOnnxFlags } from './engine/onnx/options.js';
import type { RawWorkerFlags } from './pipeline/run-worker.js';

export async function workerCommand(): Promise<Command> {
  return addOnnxFlags(addModelFlags(new Command('worker')
    .description('Serve audit jobs from the queue: micro-batch images of every run through the model, write overlays, heatmaps and predictions to S3')
    .option('--weights <src>', 'Keras .h5 weights or TF.js model.json: path, s3://bucket/key or http(s) URL (env GRADCAM_AUDIT_WEIGHTS); a model card beside it is read'))
    .option('--engine <name>', 'auto|tfjs|onnx (default: auto)')
    .option('--backend <name>', 'TF.js backend: auto|node-gpu|node|wasm|cpu (default: auto)')
    .option('--batch-size <n|auto>', 'largest batch per engine call; auto: the largest power of two the GPU\'s free memory holds for the model (8 on CPUs) (default: 16)')
    .option('--max-batch-delay-ms <ms>', 'longest wait of the oldest image for batch-mates (default: 50)')
    .option('--prefetch <n>', 'jobs held beyond the batch in the engine, so download, decode, render and upload overlap inference (default: twice the batch size)')
    .option('--concurrency-upload <n>', 'concurrent S3 uploads (default: 8)')
    .option('--metrics-port <port>', 'serve Prometheus metrics on this port; 0 picks a free one (env GRADCAM_AUDIT_METRICS_PORT; default: off)')
    .option('--metrics-host <host>', 'address the metrics server binds (env GRADCAM_AUDIT_METRICS_HOST; default: 127.0.0.1, the container images set 0.0.0.0)')
    .option('--require-gpu', 'exit with the reason instead of computing on the CPU when no GPU is usable (env GRADCAM_AUDIT_REQUIRE_GPU; the GPU images set it)')
    .option('--drain-timeout-ms <ms>', 'grace period on SIGTERM/SIGINT to finish in-flight batches; keep it below the pod\'s terminationGracePeriodSeconds (default: 25000, for the Kubernetes default of 30 s)')
    .option('--engine-thread <mode>', 'auto|on|off: compute in a worker thread so downloads, decodes and uploads continue during a batch (default: auto = on unless an NVIDIA GPU is visible)')
    .option('--worker-id <id>', 'id in heartbeats, logs and manifests (default: <host>-<pid>)')
    .option('--lock-duration-ms <ms>', 'BullMQ job lock duration (default: max(60000, 10x a measured batch))')
    .option('--stalled-interval-ms <ms>', 'how often to look for jobs of dead workers (default: 30000)')
    .option('--max-stalled-count <n>', 'times a job may be taken over from a dead worker before it fails, so an image that kills every worker stops (default: 2)')
    .option('--processes <n|auto>', 'worker processes to run and supervise on this machine, each with its own event loop and engine session, ids <worker-id>-<i>, their metrics summed on --metrics-port; auto: one per two cores beyond the first when an NVIDIA GPU is visible, else 1 (env GRADCAM_AUDIT_PROCESSES; default: 1)'))
    .action(async (flags: RawWorkerFlags) => {
      const [{ runWorkerCommand, runWorkerGroup }, { createLogger }, { loadConfig }, { processSlot, slottedWorkerId }] = await Promise.all([
        import('./pipeline/run-worker.js'),
        import('../shared/logger.js'),
        import('../shared/config.js'),
        import('./pipeline/worker-processes.js'),
      ]);
      const config = loadConfig();
      const slot = processSlot();
      const workerId = slottedWorkerId(slot, flags.workerId);
      const logger = createLogger({ level: config.logLevel, base: { component: 'worker', ...(workerId ? { workerId } : {}), ...(slot ? { process: slot.index } : {}) } });
      // A child of a `--processes` group runs as one worker; otherwise the flag decides.
      if (slot || !(await runWorkerGroup(flags, config, logger))) await runWorkerCommand(flags, config, logger);
      // Native addons and the wasm runtime may keep handles open; the drain is complete, so leave.
      logger.flush(() => process.exit(process.exitCode ?? 0));
    });
}
