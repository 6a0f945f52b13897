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
import { forwardInChunks } from './forward-host.js';
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
    // Class-agnostic: every target of an image gets the same map.
    raw = acts.data.map((a, i) => {
      const map = eigenCamMap(a, h, w, c);
      return targets[i].map(() => map);
    });
  } else {
    const [inH, inW] = host.inputShape;
    const scores = targets.map((ts) => ts.map(() => new Float64Array(c)));
    const rows = request.images.length * c;
    await forwardInChunks(
      host,
      rows,
      request.forwardRows ?? request.images.length,
      (r) => {
        const i = Math.floor(r / c);
        return maskImage(request.images[i], scoreCamMask(acts.data[i], h, w, c, r % c, inW, inH));
      },
      (r, probabilities, logits) => {
        const i = Math.floor(r / c);
        targets[i].forEach((cls, t) => (scores[i][t][r % c] = score({ probabilities, logits }, cls)));
      },
    );
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
