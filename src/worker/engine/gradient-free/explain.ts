/**
 * `Engine.explain` for the gradient-free methods, written once over an engine's `ForwardHost`: one
 * forward with the target activation serves the predictions, the targets and Eigen-CAM; Score-CAM
 * adds its masked forwards, chunked to `request.forwardRows`.
 */
import type { CamPostOptions } from '../cam-post.js';
import { postProcessCam } from '../cam-post.js';
import type { CamMap, EngineImageResult, EngineRequest } from '../engine.js';
import { resolveTargets } from '../targets.js';
import { eigenCamMap } from './eigencam.js';
import type { ForwardHost } from './forward-host.js';
import { forwardInChunks, yieldToEventLoop } from './forward-host.js';
import { maskImage, scoreCamMap, scoreCamMask } from './scorecam.js';

export async function explainGradientFree(request: EngineRequest, host: ForwardHost, camPost: CamPostOptions): Promise<EngineImageResult[]> {
  const method = request.method;
  if (method !== 'eigencam' && method !== 'scorecam') throw new RangeError(`${method} is not a gradient-free method`);
  const base = await host.forward(request.images, true);
  const acts = base.activations;
  if (!acts) throw new Error('the engine returned no target activation');
  const { height: h, width: w, channels: c } = acts;
  const score = (row: { probabilities: Float32Array; logits: Float32Array }, cls: number): number =>
    request.score === 'logit' ? row.logits[cls] : row.probabilities[cls];
  const targets = base.probabilities.map((p) => resolveTargets(request.targets, request.topK, p));

  // raw[i][t]: image i's unnormalised map for its t-th target.
  let raw: Float32Array[][];
  if (method === 'eigencam') {
    // Class-agnostic: every target of an image gets the same map. Each SVD is tens of ms on a large
    // layer: yield between images so a main-thread engine does not hold the event loop for a batch.
    raw = [];
    for (const [i, a] of acts.data.entries()) {
      if (i > 0) await yieldToEventLoop();
      const map = eigenCamMap(a, h, w, c);
      raw.push(targets[i].map(() => map));
    }
  } else {
    const [inH, inW, inC] = host.inputShape;
    const scores = targets.map((ts) => ts.map(() => new Float64Array(c)));
    // A constant channel's mask is 0 everywhere, so every such channel of every image masks its
    // input to the same all-zero image: one shared row instead of one per channel (ReLU layers
    // often leave many channels dead for an image), and exactly the same scores.
    const rows: { image: number; channel: number }[] = [];
    const constant: { image: number; channel: number }[] = [];
    acts.data.forEach((a, i) => {
      for (let k = 0; k < c; k++) (channelIsConstant(a, h * w, c, k) ? constant : rows).push({ image: i, channel: k });
    });
    if (constant.length > 0) rows.push({ image: -1, channel: -1 });
    let zero: { probabilities: Float32Array; logits: Float32Array } | null = null;
    await forwardInChunks(
      host,
      rows.length,
      request.forwardRows ?? request.images.length,
      (r) => {
        const { image: i, channel: k } = rows[r];
        if (i < 0) return { data: new Float32Array(inH * inW * inC), height: inH, width: inW };
        return maskImage(request.images[i], scoreCamMask(acts.data[i], h, w, c, k, inW, inH));
      },
      (r, probabilities, logits) => {
        const { image: i, channel: k } = rows[r];
        if (i < 0) zero = { probabilities, logits };
        else targets[i].forEach((cls, t) => (scores[i][t][k] = score({ probabilities, logits }, cls)));
      },
    );
    for (const { image: i, channel: k } of constant) targets[i].forEach((cls, t) => (scores[i][t][k] = score(zero!, cls)));
    raw = acts.data.map((a, i) => scores[i].map((s) => scoreCamMap(a, h, w, c, s)));
  }

  return base.probabilities.map((probabilities, i): EngineImageResult => {
    const row = { probabilities, logits: base.logits[i] };
    const cams: CamMap[] = targets[i].map((cls, t) =>
      postProcessCam(raw[i][t], { classIndex: cls, score: score(row, cls), scoreMode: request.score, probability: probabilities[cls], gradientMaxAbs: null, height: h, width: w }, camPost),
    );
    return { probabilities, logits: base.logits[i], cams };
  });
}

/** Whether channel `k` of a channels-last `[positions, c]` activation has one value everywhere. */
function channelIsConstant(a: Float32Array, positions: number, c: number, k: number): boolean {
  const first = a[k];
  for (let p = 1; p < positions; p++) if (a[p * c + k] !== first) return false;
  return true;
}
