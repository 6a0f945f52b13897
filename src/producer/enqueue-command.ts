/**
 * `gradcam-audit enqueue s3://BUCKET/PREFIX`: declares the flags only; the implementation (S3,
 * BullMQ) is imported when the command runs.
 */
import { Command } from 'commander';
import { addModelFlags } from '../shared/model-options.js';
import { CAM_METHOD_HELP, COLORMAPS, FAITHFULNESS_HELP, DEFAULT_EXPLAIN_OPTIONS, MAX_SIDE_HELP, OVERLAY_FORMATS, RESIZE_MODES, SCORE_MODES } from '../shared/explain-options.js';
import type { EnqueueCliFlags } from './enqueue-cli.js';
import { ENQUEUE_DEFAULTS } from './enqueue-options.js';

const d = DEFAULT_EXPLAIN_OPTIONS;

export async function enqueueCommand(): Promise<Command> {
  return addModelFlags(new Command('enqueue')
    .description(
      'List the images under an S3 prefix and queue one audit job per image. Re-running the same command resumes the same run and adds only new images.',
    )
    .argument('<source>', 's3://BUCKET/PREFIX to audit (a plain S3 prefix: "s3://b/photos" also matches "photos2/"; end it with / for a folder)')
    .option('--output <uri>', 'output prefix for overlays, heatmaps, predictions, manifest.jsonl and summary.json (default: s3://BUCKET/gradcam-audit/RUN_ID/)')
    .option('--run-id <id>', 'run id (default: derived from the source, output, filters and options, so the same command resumes the same run)')
    .option('--include <globs>', 'comma-separated globs on the key relative to the prefix; replaces the default image-extension filter (jpg, jpeg, png, webp, gif, tif, tiff). A glob without "/" matches the file name at any depth')
    .option('--exclude <globs>', 'comma-separated globs on the key relative to the prefix, applied after --include')
    .option('--top-k <n>', `number of decoded predictions (default: ${d.topK})`)
    .option('--targets <which>', 'classes to explain: top1, topk, or class indices such as 281,285 (default: top1)')
    .option('--method <name>', CAM_METHOD_HELP)
    .option('--faithfulness', FAITHFULNESS_HELP)
    .option('--score <mode>', `${SCORE_MODES.join('|')} (default: ${d.score})`)
    .option('--resize <mode>', `${RESIZE_MODES.join('|')} (default: ${d.resize})`)
    .option('--colormap <name>', `${COLORMAPS.join('|')} (default: ${d.colormap})`)
    .option('--alpha <a>', `heatmap opacity 0..1 (default: ${d.alpha})`)
    .option('--format <fmt>', `overlay format ${OVERLAY_FORMATS.join('|')} (default: ${d.overlayFormat})`)
    .option('--max-side <px>', MAX_SIDE_HELP)
    .option('--weights <src>', 'the model the run needs, as the workers name it (env GRADCAM_AUDIT_WEIGHTS): its model card, preprocessing and weights fingerprint are recorded, and workers serving another model leave the run\'s jobs (default: none, any worker)'))
    .option('--truth <file>', 'ground truth for the audit: CSV (key,label[,x0,y0,x1,y1]), JSONL ({"key","label","boxes"}) or COCO JSON; a path or s3://bucket/key. Keys match on their tail, labels by class index, wnid or name')
    .option('--truth-format <fmt>', 'csv|jsonl|coco (default: from the file name)')
    .option('--truth-from-path <n>', 'the label is path segment N of each key (0 = first folder, -2 = parent folder)')
    .option('--model <label>', 'free-form model label recorded on the run (workers record the exact weights hash)')
    .option('--max-backlog <n>', `images of the run queued in Redis at most; listing pauses there and resumes as workers drain (default: ${ENQUEUE_DEFAULTS.maxBacklog}, about 100 MB of Redis)`)
    .option('--page-size <n>', `keys per listing request (ListObjectsV2 MaxKeys) and per batch of jobs, 1-1000 (default: ${ENQUEUE_DEFAULTS.pageSize}); smaller pages move the resume cursor in smaller steps`)
    .option('--list-concurrency <n>', `key ranges between the prefix's first-level folders listed in parallel, 1-64 (default: ${ENQUEUE_DEFAULTS.listConcurrency}, one sequence); images are still registered in key order, so the resume cursor keeps its meaning. Pays off for folders of many thousands of keys when listing is the bottleneck`)
    .option('--detach', 'return once the backlog reaches --max-backlog instead of waiting; the run stays open, and running the same enqueue again continues the listing from where it stopped')
    .option('--dry-run', 'count matching images and show a few, without creating a run or a job')
    .option('--json', 'print the run record (or the dry-run counts) as JSON on stdout')
    .action(async (source: string, flags: EnqueueCliFlags) => {
      const { runEnqueueCli } = await import('./enqueue-cli.js');
      await runEnqueueCli(source, flags);
    });
}
