/**
 * The audit finds what is there. Two committed models explain the same watermarked scenes (every
 * star carries a logo in the bottom-right corner): the clean demo model, which never saw the logo,
 * and models/demo-shortcut, fine-tuned on scenes where the logo alone marks a star. Each model runs
 * through the project's engine, each result through the worker's per-image metrics and the run
 * analysis, exactly as a run's lines would:
 * - the shortcut model's run flags the star class as a corner shortcut in the bottom-right corner;
 * - the clean model's run flags no class (no shortcut of any kind) and no image as right for the
 *   wrong reasons; its only flags are its own genuine errors (label suspects: confident and wrong)
 *   and uncertain predictions (out of distribution), checked against the scenes' real classes;
 * - comparing the two runs names the star class first;
 * - with 5% of the truth labels flipped (seeded), every flipped image the model classifies
 *   confidently is a label suspect, and every other suspect is a genuine model error;
 * - the audit's pointing game equals eval:demo's on the same images.
 * (The queue → worker → finalizer path adds no computation of its own to these numbers; its wiring
 * is tested where the pipeline is.)
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditAccumulator } from '../../../src/shared/audit/accumulator.js';
import { CompareAccumulator, mergeJoin } from '../../../src/shared/audit/compare.js';
import { LabelMatcher } from '../../../src/shared/audit/label-matcher.js';
import type { AuditLine, AuditReport } from '../../../src/shared/audit/types.js';
import { imageMetricsOf, lineTruthOf, resolveTruth } from '../../../src/worker/audit/image-audit.js';
import type { TargetSpec } from '../../../src/shared/explain-options.js';
import type { Engine, EngineImageResult } from '../../../src/worker/engine/engine.js';
import { createEngine } from '../../../src/worker/engine/factory.js';
import { preprocess } from '../../../src/worker/image/preprocess.js';
import { loadModelSpec } from '../../../src/worker/model/source.js';
import { useBackend } from '../../../scripts/demo-model/backend.js';
import { evaluate, DEFAULT_EVAL_OPTIONS } from '../../../scripts/demo-model/evaluate.js';
import { DEMO_CLASSES, generateImage, SHORTCUT_EVAL_SCENE_OPTIONS, type SyntheticImage } from '../../../scripts/demo-model/synth.js';

const IMAGES = 100;
const SEED = 3030; // never used in training or evaluation
const ROOT = path.resolve(import.meta.dirname, '../../..');
const matcher = new LabelMatcher(DEMO_CLASSES.map((label) => ({ label })), DEMO_CLASSES.length);

async function engineFor(dir: string): Promise<Engine> {
  const spec = await loadModelSpec(path.join(ROOT, dir, 'model.json'));
  return createEngine({ spec, layer: 'last_conv', backend: 'wasm' });
}

/**
 * The run's lines: one per scene, with truth (label, box) and the worker's metrics record. Images
 * are explained in batches; with `trueClassTargets`, each batch holds one class and explains it.
 */
async function runLines(engine: Engine, scenes: SyntheticImage[], labels: string[], trueClassTargets = false): Promise<AuditLine[]> {
  const results = new Array<EngineImageResult>(scenes.length);
  const groups = trueClassTargets ? DEMO_CLASSES.map((_, c) => scenes.map((s, i) => (s.classIndex === c ? i : -1)).filter((i) => i >= 0)) : [scenes.map((_, i) => i)];
  for (const [c, group] of groups.entries()) {
    const targets: TargetSpec = trueClassTargets ? { kind: 'indices', indices: [c] } : { kind: 'top1' };
    for (let start = 0; start < group.length; start += 25) {
      const idx = group.slice(start, start + 25);
      const out = await engine.explain({ images: idx.map((i) => preprocess({ data: scenes[i].rgb, width: 64, height: 64 }, { width: 64, height: 64 })), targets, topK: 1, method: 'gradcam', score: 'prob' });
      out.forEach((r, k) => (results[idx[k]] = r));
    }
  }
  return scenes.map((s, i) => {
    const result = results[i];
    const truth = resolveTruth({ label: labels[i], boxes: [[s.box.x0, s.box.y0, s.box.x1, s.box.y1]] }, matcher);
    const top = result.probabilities.indexOf(Math.max(...result.probabilities));
    return {
      key: `scenes/${String(i).padStart(4, '0')}-${s.className}.png`,
      status: 'ok' as const,
      top1: { index: top, label: DEMO_CLASSES[top], probability: result.probabilities[top] },
      degenerate: result.cams[0].degenerate !== null,
      truth: lineTruthOf(truth!),
      metrics: imageMetricsOf({ result, image: { width: s.width, height: s.height }, truth }),
    };
  });
}

function audit(lines: AuditLine[], runId: string): AuditReport {
  const acc = new AuditAccumulator({ runId });
  for (const l of lines) acc.add(l);
  return acc.finish();
}

async function* from(lines: AuditLine[]): AsyncGenerator<AuditLine> {
  yield* lines;
}

describe('the audit finds the shortcut', () => {
  let clean: Engine;
  let shortcut: Engine;
  let scenes: SyntheticImage[];
  let cleanLines: AuditLine[];
  let shortcutLines: AuditLine[];
  beforeAll(async () => {
    await useBackend('wasm');
    clean = await engineFor('models/demo');
    shortcut = await engineFor('models/demo-shortcut');
    scenes = Array.from({ length: IMAGES }, (_, i) => generateImage(SEED, i, SHORTCUT_EVAL_SCENE_OPTIONS));
    const labels = scenes.map((s) => s.className);
    cleanLines = await runLines(clean, scenes, labels);
    shortcutLines = await runLines(shortcut, scenes, labels);
  }, 180_000);
  afterAll(async () => {
    await clean?.dispose();
    await shortcut?.dispose();
  });

  it('flags the star class as a bottom-right corner shortcut in the shortcut model\'s run, and nothing in the clean one', () => {
    const s = audit(shortcutLines, 'shortcut');
    const corner = s.flags.filter((f) => f.kind === 'corner-shortcut');
    expect(corner).toHaveLength(1);
    expect(corner[0].subject).toEqual({ type: 'class', class: { index: 3, label: 'star' }, role: 'predicted' });
    expect(corner[0].evidence.corner).toBe('bottom-right');
    const c = audit(cleanLines, 'clean');
    expect(c.flags.filter((f) => f.subject.type === 'class')).toEqual([]);
    expect(c.flagCounts['right-for-wrong-reasons']).toBe(0);
    for (const f of c.flags) {
      const i = cleanLines.findIndex((l) => f.subject.type === 'image' && l.key === f.subject.key);
      const line = cleanLines[i];
      const wrong = line.top1?.index !== scenes[i].classIndex;
      const unsure = (line.metrics?.top1Prob as number) <= 0.5;
      expect(wrong || unsure, `${f.kind} on ${line.key}`).toBe(true);
    }
    // The numbers behind it, as the model card states them.
    const share = (r: AuditReport) => r.classes.predicted.find((k) => k.class.index === 3)?.metrics.cornerBottomRight?.mean ?? NaN;
    expect(share(s)).toBeGreaterThan(0.15);
    expect(share(c)).toBeLessThan(0.05);
  });

  it('compare names the star class first', async () => {
    const acc = new CompareAccumulator({ a: 'clean', b: 'shortcut' });
    for await (const [a, b] of mergeJoin(from(cleanLines), from(shortcutLines))) acc.add(a, b);
    const r = acc.finish();
    expect(r.counts.both).toBe(IMAGES);
    expect(r.classes[0].class).toEqual({ index: 3, label: 'star' });
  });

  it('finds the flipped labels when 5% of the truth is wrong', async () => {
    // 5 of 100 labels moved to another class, chosen by a seeded generator.
    let state = 77;
    const next = (): number => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
    const flipped = new Set<number>();
    while (flipped.size < IMAGES / 20) flipped.add(Math.floor(next() * IMAGES));
    const labels = scenes.map((s, i) => (flipped.has(i) ? DEMO_CLASSES[(s.classIndex + 1 + Math.floor(next() * 4)) % DEMO_CLASSES.length] : s.className));
    const lines = await runLines(clean, scenes, labels);
    const r = audit(lines, 'flipped');
    const suspects = new Set(r.flags.filter((f) => f.kind === 'label-suspect').map((f) => (f.subject.type === 'image' ? f.subject.key : '')));
    expect(r.flagCounts['label-suspect']).toBe(suspects.size);
    // Every flipped image the model gets right with confidence is found...
    const confident = [...flipped].filter((i) => cleanLines[i].top1?.index === scenes[i].classIndex && (cleanLines[i].metrics?.top1Prob as number) >= 0.5);
    expect(confident.length).toBeGreaterThanOrEqual(4);
    for (const i of confident) expect(suspects.has(lines[i].key), lines[i].key).toBe(true);
    // ...and every other suspect is an image the model itself gets wrong.
    for (const key of suspects) {
      const i = lines.findIndex((l) => l.key === key);
      if (!flipped.has(i)) expect(lines[i].top1?.index, key).not.toBe(scenes[i].classIndex);
    }
  });

  it("scores the pointing game exactly as eval:demo does on the same images", async () => {
    const images = 50;
    const evalResult = await evaluate(clean, { ...DEFAULT_EVAL_OPTIONS, images, seed: SEED, scene: 'shortcut', batchSize: 25 });
    // eval:demo explains each image's true class; so does this run (targets = the truth label).
    const lines = await runLines(clean, scenes.slice(0, images), scenes.map((s) => s.className), true);
    const r = audit(lines, 'pointing');
    expect(r.metrics.pointingHit?.n).toBe(images);
    expect(r.metrics.pointingHit?.mean).toBe(evalResult.pointing.prob);
  });
});
