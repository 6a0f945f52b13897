/**
 * `gradcam-audit explain IMAGE... --weights SRC`: declares the flags only; the implementation
 * (TF.js, sharp, h5wasm) is imported when the command actually runs.
 */
import { Command } from 'commander';
import { ONNX_FLAG_HELP } from '../engine/onnx/options.js';
import { CAM_METHODS, COLORMAPS, DEFAULT_EXPLAIN_OPTIONS, OVERLAY_FORMATS, RESIZE_MODES, SCORE_MODES } from '../../shared/explain-options.js';
import type { RawExplainFlags } from './options.js';

const d = DEFAULT_EXPLAIN_OPTIONS;

export async function explainCommand(): Promise<Command> {
  return new Command('explain')
    .description('Predict and explain local images: writes <name>.overlay.<ext>, <name>.heatmap.png and <name>.json per image')
    .argument('<images...>', 'image files (JPEG, PNG, WebP, GIF, TIFF)')
    .requiredOption('--weights <src>', 'Keras .h5 weights or TF.js model.json: path, s3://bucket/key or http(s) URL')
    .option('--out <dir>', 'output directory (default: .)')
    .option('--top-k <n>', `number of decoded predictions (default: ${d.topK})`)
    .option('--targets <which>', 'classes to explain: top1, topk, or class indices such as 281,285 (default: top1)')
    .option('--method <name>', `${CAM_METHODS.join('|')} (default: ${d.method})`)
    .option('--score <mode>', `${SCORE_MODES.join('|')}: differentiate the softmax probability or the pre-softmax logit (default: ${d.score})`)
    .option('--layer <name>', 'target layer (default: block5_conv3 for VGG16, else the last conv layer)')
    .option('--labels <file>', 'class labels for non-ImageNet heads (JSON or one label per line)')
    .option('--backend <name>', 'TF.js backend: auto|node-gpu|node|wasm|cpu (default: auto)')
    .option('--engine <name>', 'auto|tfjs|onnx (default: auto)')
    .option(ONNX_FLAG_HELP.providers[0], ONNX_FLAG_HELP.providers[1])
    .option(ONNX_FLAG_HELP.threads[0], ONNX_FLAG_HELP.threads[1])
    .option(ONNX_FLAG_HELP.cacheDir[0], ONNX_FLAG_HELP.cacheDir[1])
    .option('--batch-size <n>', 'images per engine call (default: 8)')
    .option('--resize <mode>', `${RESIZE_MODES.join('|')} resize to the model input (default: ${d.resize}, as keras load_img)`)
    .option('--colormap <name>', `${COLORMAPS.join('|')} (default: ${d.colormap})`)
    .option('--alpha <a>', `heatmap opacity 0..1 (default: ${d.alpha})`)
    .option('--format <fmt>', `overlay format ${OVERLAY_FORMATS.join('|')} (default: ${d.overlayFormat})`)
    .option('--max-side <px>', 'cap on the overlay\'s longer side (default: original size)')
    .action(async (images: string[], flags: RawExplainFlags) => {
      const [{ parseExplainFlags }, { runExplain, defaultExplainDeps }, { createLogger }, { loadConfig }] = await Promise.all([
        import('./options.js'),
        import('./run.js'),
        import('../../shared/logger.js'),
        import('../../shared/config.js'),
      ]);
      const options = parseExplainFlags(images, flags);
      const logger = createLogger({ level: loadConfig().logLevel, base: { component: 'explain' } });
      const summary = await runExplain(options, await defaultExplainDeps(logger));
      process.stdout.write(`${summary.ok} explained, ${summary.failed} failed\n`);
      if (summary.failed > 0) process.exitCode = 1;
    });
}
