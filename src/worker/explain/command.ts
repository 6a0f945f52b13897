/**
 * `gradcam-audit explain IMAGE... --weights SRC`: declares the flags only; the implementation
 * (TF.js, sharp, h5wasm) is imported when the command actually runs.
 */
import { Command } from 'commander';
import { addOnnxFlags } from '../engine/onnx/options.js';
import { addModelFlags } from '../../shared/model-options.js';
import { CAM_METHOD_HELP, COLORMAPS, FAITHFULNESS_HELP, DEFAULT_EXPLAIN_OPTIONS, MAX_SIDE_HELP, OVERLAY_FORMATS, RESIZE_MODES, SCORE_MODES } from '../../shared/explain-options.js';
import type { RawExplainFlags } from './options.js';

const d = DEFAULT_EXPLAIN_OPTIONS;

export async function explainCommand(): Promise<Command> {
  return addOnnxFlags(addModelFlags(new Command('explain')
    .description('Predict and explain local images: writes overlays/<name>.<ext>, heatmaps/<name>.png and predictions/<name>.json per image under --out')
    .argument('<images...>', 'image files, directories (their images, recursively) or globs such as "photos/**/*.jpg" (JPEG, PNG, WebP, GIF, TIFF)')
    .requiredOption('--weights <src>', 'Keras .h5 weights or TF.js model.json: path, s3://bucket/key or http(s) URL')
    .option('--out <dir>', 'output directory (default: .)')
    .option('--top-k <n>', `number of decoded predictions (default: ${d.topK})`)
    .option('--targets <which>', 'classes to explain: top1, topk, or class indices such as 281,285 (default: top1)')
    .option('--method <name>', CAM_METHOD_HELP)
    .option('--faithfulness', FAITHFULNESS_HELP)
    .option('--score <mode>', `${SCORE_MODES.join('|')}: differentiate the softmax probability or the pre-softmax logit (default: ${d.score})`))
    .option('--backend <name>', 'TF.js backend: auto|node-gpu|node|wasm|cpu (default: auto)')
    .option('--engine <name>', 'auto|tfjs|onnx (default: auto)')
    .option('--batch-size <n>', 'images per engine call (default: 8)')
    .option('--resize <mode>', `${RESIZE_MODES.join('|')} resize to the model input (default: ${d.resize}, as keras load_img)`)
    .option('--colormap <name>', `${COLORMAPS.join('|')} (default: ${d.colormap})`)
    .option('--alpha <a>', `heatmap opacity 0..1 (default: ${d.alpha})`)
    .option('--format <fmt>', `overlay format ${OVERLAY_FORMATS.join('|')} (default: ${d.overlayFormat})`)
    .option('--max-side <px>', MAX_SIDE_HELP)
    .option('--json', 'print one manifest line per image (JSON Lines, as manifest.jsonl) instead of the human-readable lines'))
    .action(async (images: string[], flags: RawExplainFlags & { json?: boolean }) => {
      const [{ parseExplainFlags }, { runExplain, defaultExplainDeps }, { createLogger }, { loadConfig }] = await Promise.all([
        import('./options.js'),
        import('./run.js'),
        import('../../shared/logger.js'),
        import('../../shared/config.js'),
      ]);
      const options = parseExplainFlags(images, flags);
      const logger = createLogger({ level: loadConfig().logLevel, base: { component: 'explain' } });
      const deps = await defaultExplainDeps(logger);
      // With --json, stdout is only JSON Lines (machine-readable); the people's lines go to stderr.
      if (flags.json) deps.report = (line) => process.stderr.write(`${line}\n`);
      const summary = await runExplain(options, deps);
      if (flags.json) process.stdout.write(summary.outcomes.map((o) => `${JSON.stringify(o.line)}\n`).join(''));
      (flags.json ? process.stderr : process.stdout).write(`${summary.ok} explained, ${summary.failed} failed\n`);
      if (summary.failed > 0) process.exitCode = 1;
    });
}
