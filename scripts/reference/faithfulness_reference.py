#!/usr/bin/env python3
"""Independent NumPy reference for the faithfulness metrics (docs/audit-metrics.md).

On the committed reference model and inputs of gradcam_reference.py (prefix gradcam), per image:
the top-1 class c and its Grad-CAM map (logit score, float64, hand-written head backward), the map
upsampled to the input with half-pixel bilinear interpolation (clamped edges), the top 20% of input
pixels (ties: lower row-major index first), a random rectangle of sides round(sqrt(0.2)*W) x
round(sqrt(0.2)*H) placed with mulberry32 seeded by the 32-bit FNV-1a of the image key, a Gaussian
blur of the input (sigma = max(1, 0.04 * longer side), radius ceil(3 sigma), edges clamped,
separable), and the float64 forwards of both perturbed inputs:
  topDrop = p_c(x) - p_c(x_top), randomDrop = p_c(x) - p_c(x_random), score = topDrop - randomDrop

Output (committed; the TypeScript tests read it): test/fixtures/reference/faithfulness_expected.json
Run: python3 scripts/reference/faithfulness_reference.py   (needs python3-numpy only)
"""
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gradcam_reference as ref  # noqa: E402

FRACTION = 0.2
BLUR_SIGMA = 0.04
KEYS = ['photos/cat.jpg', 'photos/dog.png', 'a/b/c/scene-0003.webp', 'x']


def fnv1a(key):
    h = 0x811c9dc5
    for ch in key:
        h ^= ord(ch)
        h = (h * 0x01000193) & 0xffffffff
    return h


def mulberry32(seed):
    state = [seed & 0xffffffff]

    def imul(a, b):
        return (a * b) & 0xffffffff

    def nxt():
        state[0] = (state[0] + 0x6d2b79f5) & 0xffffffff
        t = state[0]
        t = imul(t ^ (t >> 15), t | 1)
        t ^= (t + imul(t ^ (t >> 7), t | 61)) & 0xffffffff
        return ((t ^ (t >> 14)) & 0xffffffff) / 4294967296
    return nxt


def load_fixture():
    d = ref.OUT
    model_json = json.load(open(os.path.join(d, 'gradcam_model.json')))
    model = next(m for m in ref.MODELS if m['prefix'] == 'gradcam')
    blob = np.fromfile(os.path.join(d, 'gradcam_weights.bin'), dtype='<f4')
    weights = []
    for e in model_json['weights']:
        k = blob[e['kernelOffset']:e['kernelOffset'] + int(np.prod(e['kernelShape']))].reshape(e['kernelShape'])
        b = blob[e['biasOffset']:e['biasOffset'] + int(np.prod(e['biasShape']))].reshape(e['biasShape'])
        weights.append((e['name'], k, b))
    shape = (model_json['batch'],) + tuple(model_json['inputShape'])
    x = np.fromfile(os.path.join(d, 'gradcam_inputs.bin'), dtype='<f4').reshape(shape).astype(np.float64)
    return model, weights, x


def gaussian_blur(img, sigma):
    r = max(1, math.ceil(3 * sigma))
    offsets = np.arange(-r, r + 1)
    kernel = np.exp(-offsets ** 2 / (2 * sigma * sigma))
    kernel /= kernel.sum()
    h, w, _ = img.shape
    cols = np.clip(np.arange(w)[:, None] + offsets[None, :], 0, w - 1)          # [w, taps]
    rows = (img[:, cols, :] * kernel[None, None, :, None]).sum(axis=2)            # [h, w, c]
    idx = np.clip(np.arange(h)[:, None] + offsets[None, :], 0, h - 1)
    return (rows[idx, :, :] * kernel[None, :, None, None]).sum(axis=1)


def probs_of(batch, weights, model):
    feats = ref.forward_features(batch, weights, model)
    _, probs, _ = ref.head_forward_backward(feats, weights, model, None, None)
    return probs


def main():
    model, weights, x = load_fixture()
    n, H, W, _ = x.shape
    a = ref.forward_features(x, weights, model)
    _, probs, _ = ref.head_forward_backward(a, weights, model, None, None)
    out = []
    for i in range(n):
        c = int(np.argmax(probs[i]))
        _, _, g = ref.head_forward_backward(a[i:i + 1], weights, model, np.array([c]), 'logit')
        raw = ref.cam('gradcam', a[i], g[0])
        grid = raw / raw.max()
        up = ref.upsample_bilinear(grid, H, W).reshape(-1)
        k = round(FRACTION * H * W)
        order = sorted(range(H * W), key=lambda j: (-up[j], j))
        top = np.zeros(H * W, dtype=bool)
        top[order[:k]] = True
        seed = fnv1a(KEYS[i])
        rand = mulberry32(seed)
        rw = min(W, max(1, round(math.sqrt(FRACTION) * W)))
        rh = min(H, max(1, round(math.sqrt(FRACTION) * H)))
        x0 = math.floor(rand() * (W - rw + 1))
        y0 = math.floor(rand() * (H - rh + 1))
        rect = np.zeros((H, W), dtype=bool)
        rect[y0:y0 + rh, x0:x0 + rw] = True
        blurred = gaussian_blur(x[i], max(1.0, BLUR_SIGMA * max(H, W)))
        x_top = np.where(top.reshape(H, W)[:, :, None], blurred, x[i])
        x_rand = np.where(rect[:, :, None], blurred, x[i])
        p = probs_of(np.stack([x_top, x_rand]), weights, model)[:, c]
        top_drop, random_drop = float(probs[i, c] - p[0]), float(probs[i, c] - p[1])
        out.append({'key': KEYS[i], 'seed': seed, 'classIndex': c, 'probability': float(probs[i, c]),
                    'topPixels': [int(j) for j in np.flatnonzero(top)], 'rect': [x0, y0, rw, rh],
                    'topDrop': top_drop, 'randomDrop': random_drop, 'score': top_drop - random_drop})
        print(KEYS[i], c, round(top_drop, 5), round(random_drop, 5), file=sys.stderr)
    with open(os.path.join(ref.OUT, 'faithfulness_expected.json'), 'w') as f:
        json.dump({'generator': 'scripts/reference/faithfulness_reference.py', 'numpy': np.__version__, 'fraction': FRACTION,
                   'blurSigma': BLUR_SIGMA, 'method': 'gradcam', 'score': 'logit', 'images': out}, f, indent=1)
        f.write('\n')


if __name__ == '__main__':
    main()
