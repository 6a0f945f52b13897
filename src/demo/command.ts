import { Command } from 'commander';

export async function demoCommand(): Promise<Command> {
  return new Command('demo')
    .description('Run the whole pipeline on this machine: embedded S3 and Redis, sample images, a worker and the dashboard')
    .option('--once', 'exit 0 after the run completes, printing its summary (default when CI=true)')
    .option('--weights <src>', 'model weights: TF.js model.json or Keras .h5 such as vgg16_weights_tf_dim_ordering_tf_kernels.h5 (default: the bundled demo model)')
    .option('--labels <file>', 'class labels for a non-ImageNet head (default: the demo model labels)')
    .option('--samples <dir>', 'folder of images to upload and audit (default: samples/synthetic with the demo model, samples/photos with other weights)')
    .option('--port <port>', 'dashboard port; 0 picks a free one (default: 3000, or a free port if taken)')
    .option('--data-dir <dir>', 'embedded S3 data and the local copy of the outputs (default: demo-data)')
    .option('--bucket <name>', 'bucket for samples and outputs (default: gradcam-demo)')
    .option('--engine <name>', 'auto|tfjs|onnx (default: auto)')
    .option('--batch-size <n>', 'worker batch size (default: 8)')
    .action(async (flags: Record<string, string | boolean | undefined>) => {
      const { runDemo } = await import('./demo.js');
      await runDemo(flags);
    });
}
