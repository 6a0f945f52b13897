#!/usr/bin/env python3
"""Independent NumPy reference for the Grad-CAM engines.

Builds small VGG-shaped networks with fixed seeded weights (conv 'same' and 'valid', max-pool,
Keras (h, w, c) flatten or global average pooling, dense ReLU, dropout, dense softmax), runs a
batch of fixed inputs through each in float64, backpropagates through the head by hand (softmax,
dense, ReLU, flatten or GAP, max-pool with the gradient on the first maximum of a window, as TF's
CPU kernel) and computes all five gradient CAM methods for every class, with both the probability and the
logit score. The gradient-free methods come from their definitions with NumPy's SVD (Eigen-CAM:
centred activation projected on the first right singular vector, signed to covary with the
per-position total activation, then ReLU) and from one float64 forward per masked input
(Score-CAM: each channel upsampled with half-pixel bilinear interpolation and clamped edges,
min-max scaled, multiplied into the input; weights softmax over the class scores).

Outputs per model, PREFIX = gradcam (flatten head) or gradcam_gap (GAP head), committed; the
TypeScript tests read them, CI needs no Python:
  test/fixtures/reference/PREFIX_model.json     architecture, weight offsets, shapes, seed
  test/fixtures/reference/PREFIX_weights.bin    float32 little-endian, layers in order, kernel then bias
  test/fixtures/reference/PREFIX_inputs.bin     float32 little-endian, [N, H, W, C] preprocessed inputs
  test/fixtures/reference/PREFIX_expected.json  probabilities, logits, per (score, method, image, class)
                                                normalised CAM grids, raw max and mean, degenerate flag

Run: python3 scripts/reference/gradcam_reference.py   (needs python3-numpy only)
"""
import json
import os
import sys

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'test', 'fixtures', 'reference')
EPS = 1e-7  # the same epsilon as the engines' xgradcam / gradcam++ denominators
INPUT_STD = 50.0

# Small VGG-shaped nets. In the first, block2_conv2 uses 'valid' padding so both padding rules are
# exercised and the head is VGG16's (pool, flatten, dense ReLU, dropout, dense softmax); the second
# has a GlobalAveragePooling2D head, as the demo model.
MODELS = [
    {
        'prefix': 'gradcam', 'name': 'reference-vgg-small', 'seed': 20261125, 'inputShape': (20, 20, 3), 'batch': 4,
        'target': 'block2_conv2',
        'layers': [
            {'type': 'conv2d', 'name': 'block1_conv1', 'filters': 6, 'kernelSize': [3, 3], 'strides': [1, 1], 'padding': 'same', 'activation': 'relu'},
            {'type': 'conv2d', 'name': 'block1_conv2', 'filters': 6, 'kernelSize': [3, 3], 'strides': [1, 1], 'padding': 'same', 'activation': 'relu'},
            {'type': 'maxpool2d', 'name': 'block1_pool', 'poolSize': [2, 2], 'strides': [2, 2], 'padding': 'valid'},
            {'type': 'conv2d', 'name': 'block2_conv1', 'filters': 8, 'kernelSize': [3, 3], 'strides': [1, 1], 'padding': 'same', 'activation': 'relu'},
            {'type': 'conv2d', 'name': 'block2_conv2', 'filters': 8, 'kernelSize': [3, 3], 'strides': [1, 1], 'padding': 'valid', 'activation': 'relu'},
            {'type': 'maxpool2d', 'name': 'block2_pool', 'poolSize': [2, 2], 'strides': [2, 2], 'padding': 'valid'},
            {'type': 'flatten', 'name': 'flatten'},
            {'type': 'dense', 'name': 'fc1', 'units': 16, 'activation': 'relu'},
            {'type': 'dropout', 'name': 'dropout', 'rate': 0.5},
            {'type': 'dense', 'name': 'predictions', 'units': 7, 'activation': 'softmax'},
        ],
    },
    {
        'prefix': 'gradcam_gap', 'name': 'reference-vgg-gap', 'seed': 20261126, 'inputShape': (18, 22, 3), 'batch': 3,
        'target': 'block2_conv1',
        'layers': [
            {'type': 'conv2d', 'name': 'block1_conv1', 'filters': 6, 'kernelSize': [3, 3], 'strides': [1, 1], 'padding': 'same', 'activation': 'relu'},
            {'type': 'maxpool2d', 'name': 'block1_pool', 'poolSize': [2, 2], 'strides': [2, 2], 'padding': 'valid'},
            {'type': 'conv2d', 'name': 'block2_conv1', 'filters': 10, 'kernelSize': [3, 3], 'strides': [1, 1], 'padding': 'same', 'activation': 'relu'},
            {'type': 'gap', 'name': 'global_average_pooling2d'},
            {'type': 'dense', 'name': 'predictions', 'units': 5, 'activation': 'softmax'},
        ],
    },
]
METHODS = ['gradcam', 'gradcam++', 'hirescam', 'xgradcam', 'layercam']
GRADIENT_FREE = ['eigencam', 'scorecam']
SCORES = ['prob', 'logit']


def make_weights(rng, model):
    """He-uniform kernels (scaled so activations stay near unit size), small uniform biases, float32."""
    shape = list(model['inputShape'])
    weights = []
    first = True
    for layer in model['layers']:
        if layer['type'] == 'conv2d':
            kh, kw = layer['kernelSize']
            kshape = (kh, kw, shape[2], layer['filters'])
            fan_in = kh * kw * shape[2]
            shape = conv_out_shape(shape, layer)
        elif layer['type'] == 'dense':
            kshape = (shape[0], layer['units'])
            fan_in = shape[0]
            shape = [layer['units']]
        else:
            shape = shape_after(shape, layer)
            continue
        var = 2.0 / fan_in
        if first:
            var /= INPUT_STD ** 2
            first = False
        if layer['activation'] == 'softmax':
            var = 1.0 / fan_in  # moderate logits: no saturated softmax in the fixtures
        limit = np.sqrt(3 * var)
        kernel = rng.uniform(-limit, limit, size=kshape).astype(np.float32)
        bias = rng.uniform(-0.05, 0.05, size=(kshape[-1],)).astype(np.float32)
        weights.append((layer['name'], kernel, bias))
    return weights


def conv_out_shape(shape, layer):
    kh, kw = layer['kernelSize']
    if layer['padding'] == 'same':
        return [shape[0], shape[1], layer['filters']]
    return [shape[0] - kh + 1, shape[1] - kw + 1, layer['filters']]


def shape_after(shape, layer):
    if layer['type'] == 'maxpool2d':
        return [shape[0] // 2, shape[1] // 2, shape[2]]
    if layer['type'] == 'flatten':
        return [int(np.prod(shape))]
    if layer['type'] == 'gap':
        return [shape[2]]
    return shape


def conv2d(x, kernel, bias, padding):
    """x [N,H,W,C] float64, kernel HWIO. TF 'same' padding: total k-1, the smaller half on top/left."""
    kh, kw, cin, cout = kernel.shape
    if padding == 'same':
        pt, pl = (kh - 1) // 2, (kw - 1) // 2
        x = np.pad(x, ((0, 0), (pt, kh - 1 - pt), (pl, kw - 1 - pl), (0, 0)))
    n, h, w, _ = x.shape
    oh, ow = h - kh + 1, w - kw + 1
    out = np.zeros((n, oh, ow, cout))
    k = kernel.astype(np.float64)
    for i in range(kh):
        for j in range(kw):
            out += np.einsum('nhwc,co->nhwo', x[:, i:i + oh, j:j + ow, :], k[i, j])
    return out + bias.astype(np.float64)


def maxpool_forward(x):
    """2x2 stride 2 'valid'. Returns the output and the flat argmax (first max, row-major) per window."""
    n, h, w, c = x.shape
    oh, ow = h // 2, w // 2
    win = x[:, :oh * 2, :ow * 2, :].reshape(n, oh, 2, ow, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(n, oh, ow, c, 4)
    return win.max(axis=-1), win.argmax(axis=-1)


def maxpool_backward(grad_out, argmax, in_shape):
    n, oh, ow, c = grad_out.shape
    grad = np.zeros(in_shape)
    for k in range(4):
        di, dj = divmod(k, 2)
        grad[:, di:oh * 2:2, dj:ow * 2:2, :] += np.where(argmax == k, grad_out, 0.0)
    return grad


def forward_features(x, weights, model):
    wmap = {name: (k, b) for name, k, b in weights}
    for layer in model['layers']:
        if layer['type'] == 'conv2d':
            k, b = wmap[layer['name']]
            x = np.maximum(conv2d(x, k, b, layer['padding']), 0.0)
        elif layer['type'] == 'maxpool2d':
            x, _ = maxpool_forward(x)
        if layer['name'] == model['target']:
            return x
    raise SystemExit('target layer not found')


def head_forward_backward(a, weights, model, classes, score):
    """Logits and probabilities for activation a [N,h,w,c]; with classes (one per row) also dS/dA by hand."""
    wmap = {name: (k.astype(np.float64), b.astype(np.float64)) for name, k, b in weights}
    names = [layer['name'] for layer in model['layers']]
    head = model['layers'][names.index(model['target']) + 1:]
    x = a
    tape = []                                            # (layer, cache) for the backward
    for layer in head:
        if layer['type'] == 'maxpool2d':
            out, argmax = maxpool_forward(x)
            tape.append((layer, (argmax, x.shape)))
            x = out
        elif layer['type'] == 'flatten':                 # Keras flatten: (h, w, c) order = NHWC reshape
            tape.append((layer, x.shape))
            x = x.reshape(x.shape[0], -1)
        elif layer['type'] == 'gap':
            tape.append((layer, x.shape))
            x = x.mean(axis=(1, 2))
        elif layer['type'] == 'dense':
            k, b = wmap[layer['name']]
            z = x @ k + b
            tape.append((layer, z))
            x = np.maximum(z, 0.0) if layer['activation'] == 'relu' else z   # softmax: split off below
        elif layer['type'] == 'dropout':                 # identity at inference
            continue
        else:
            raise ValueError(layer['type'])
    logits = x
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = e / e.sum(axis=1, keepdims=True)
    if classes is None:
        return logits, probs, None
    onehot = np.zeros_like(logits)
    onehot[np.arange(len(classes)), classes] = 1.0
    if score == 'logit':
        d = onehot
    else:
        pc = probs[np.arange(len(classes)), classes][:, None]
        d = pc * (onehot - probs)                        # d p_c / d z = p_c (e_c - p)
    for layer, cache in reversed(tape):
        if layer['type'] == 'dense':
            if layer['activation'] == 'relu':
                d = d * (cache > 0)
            d = d @ wmap[layer['name']][0].T
        elif layer['type'] == 'flatten':
            d = d.reshape(cache)
        elif layer['type'] == 'gap':
            n, h, w, c = cache
            d = np.broadcast_to(d[:, None, None, :] / (h * w), cache)
        elif layer['type'] == 'maxpool2d':
            argmax, shape = cache
            d = maxpool_backward(d, argmax, shape)
    return logits, probs, d


def cam(method, a, g):
    """a, g: [h, w, c] for one (image, class). Returns the raw map with the final ReLU."""
    if method == 'gradcam':
        w = g.mean(axis=(0, 1))
        m = (a * w).sum(axis=2)
    elif method == 'hirescam':
        m = (g * a).sum(axis=2)
    elif method == 'xgradcam':
        w = (g * a).sum(axis=(0, 1)) / (a.sum(axis=(0, 1)) + EPS)
        m = (a * w).sum(axis=2)
    elif method == 'layercam':
        m = (np.maximum(g, 0) * a).sum(axis=2)
    elif method == 'gradcam++':
        g2, g3 = g ** 2, g ** 3
        den = 2 * g2 + a.sum(axis=(0, 1)) * g3 + EPS
        alpha = np.where(g == 0, 0.0, g2 / den)
        w = (alpha * np.maximum(g, 0)).sum(axis=(0, 1))
        m = (a * w).sum(axis=2)
    else:
        raise ValueError(method)
    return np.maximum(m, 0.0)


def eigencam(a):
    """a: [h, w, c]. First principal component of the positions, signed, ReLU'd."""
    h, w, c = a.shape
    x = a.reshape(h * w, c)
    xc = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    p = xc @ vt[0]
    if p @ x.sum(axis=1) < 0:
        p = -p
    return np.maximum(p, 0.0).reshape(h, w)


def upsample_bilinear(grid, out_h, out_w):
    """Half-pixel-centre bilinear interpolation with clamped edges (an enlargement)."""
    h, w = grid.shape

    def taps(n_in, n_out):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    y0, y1, fy = taps(h, out_h)
    x0, x1, fx = taps(w, out_w)
    rows = grid[y0] * (1 - fy)[:, None] + grid[y1] * fy[:, None]
    return rows[:, x0] * (1 - fx)[None, :] + rows[:, x1] * fx[None, :]


def scorecam_scores(x, a, weights, model):
    """x: [H, W, C] input, a: [h, w, k] activation. Logits and probabilities of each masked input [k, classes]."""
    H, W = x.shape[:2]
    masked = []
    for k in range(a.shape[2]):
        up = upsample_bilinear(a[:, :, k], H, W)
        lo, hi = up.min(), up.max()
        mask = (up - lo) / (hi - lo) if hi > lo else np.zeros_like(up)
        masked.append(x * mask[:, :, None])
    feats = forward_features(np.stack(masked), weights, model)
    logits, probs, _ = head_forward_backward(feats, weights, model, None, None)
    return logits, probs


def scorecam(a, scores):
    w = np.exp(scores - scores.max())
    w /= w.sum()
    return np.maximum((a * w).sum(axis=2), 0.0)


def record(c, raw):
    mx, mean = float(raw.max()), float(raw.mean())
    degenerate = not (mx > 0)
    grid = np.zeros_like(raw) if degenerate else raw / mx
    return {'classIndex': c, 'rawMax': mx, 'rawMean': mean, 'degenerate': degenerate,
            'grid': [round(float(v), 7) for v in grid.reshape(-1)]}


def build(model):
    rng = np.random.RandomState(model['seed'])
    weights = make_weights(rng, model)
    # Inputs on the Keras caffe scale: 0..255 pixels minus the ImageNet mean, roughly ±120.
    shape = (model['batch'],) + tuple(model['inputShape'])
    x32 = (rng.uniform(0, 255, size=shape) - np.array([103.939, 116.779, 123.68])).astype(np.float32)
    x = x32.astype(np.float64)
    a = forward_features(x, weights, model)
    logits, probs, _ = head_forward_backward(a, weights, model, None, None)
    n, h, w, _ = a.shape
    classes = probs.shape[1]

    cams = {}
    for score in SCORES:
        cams[score] = {}
        for method in METHODS:
            per_image = []
            for i in range(n):
                per_class = []
                rows = np.repeat(a[i:i + 1], classes, axis=0)
                _, _, g = head_forward_backward(rows, weights, model, np.arange(classes), score)
                for c in range(classes):
                    raw = cam(method, a[i], g[c])
                    mx, mean = float(raw.max()), float(raw.mean())
                    degenerate = not (mx > 0)
                    grid = np.zeros_like(raw) if degenerate else raw / mx
                    per_class.append({'classIndex': c, 'rawMax': mx, 'rawMean': mean, 'degenerate': degenerate,
                                      'grid': [round(float(v), 7) for v in grid.reshape(-1)]})
                per_image.append(per_class)
            cams[score][method] = per_image
        masked = [scorecam_scores(x[i], a[i], weights, model) for i in range(n)]
        cams[score]['eigencam'] = [[record(c, eigencam(a[i])) for c in range(classes)] for i in range(n)]
        cams[score]['scorecam'] = [[record(c, scorecam(a[i], (masked[i][1] if score == 'prob' else masked[i][0])[:, c]))
                                    for c in range(classes)] for i in range(n)]

    prefix = os.path.join(OUT, model['prefix'])
    blob = bytearray()
    entries = []
    for name, k, b in weights:
        entries.append({'name': name, 'kernelOffset': len(blob) // 4, 'kernelShape': list(k.shape)})
        blob += k.astype('<f4').tobytes()
        entries[-1].update({'biasOffset': len(blob) // 4, 'biasShape': list(b.shape)})
        blob += b.astype('<f4').tobytes()
    with open(prefix + '_weights.bin', 'wb') as f:
        f.write(bytes(blob))
    with open(prefix + '_inputs.bin', 'wb') as f:
        f.write(x32.astype('<f4').tobytes())
    with open(prefix + '_model.json', 'w') as f:
        json.dump({'name': model['name'], 'seed': model['seed'], 'inputShape': list(model['inputShape']), 'batch': model['batch'],
                   'targetLayer': model['target'], 'layers': model['layers'], 'weights': entries}, f, indent=1)
        f.write('\n')
    with open(prefix + '_expected.json', 'w') as f:
        json.dump({'generator': 'scripts/reference/gradcam_reference.py', 'numpy': np.__version__, 'epsilon': EPS,
                   'targetShape': [h, w, int(a.shape[3])],
                   'logits': [[round(float(v), 9) for v in row] for row in logits],
                   'probabilities': [[round(float(v), 9) for v in row] for row in probs],
                   'cams': cams}, f, separators=(',', ':'))
        f.write('\n')
    print(model['name'], 'probabilities:', np.round(probs, 4), file=sys.stderr)


def main():
    os.makedirs(OUT, exist_ok=True)
    for model in MODELS:
        build(model)
    print(f'wrote {OUT}', file=sys.stderr)


if __name__ == '__main__':
    main()
