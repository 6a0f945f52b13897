#!/usr/bin/env python3
"""Independent NumPy reference for the audit's per-image metrics and map comparison.

Implements docs/audit-metrics.md from the formulas, vectorised (the TypeScript code loops), on fixed
inputs: seeded random CAM grids of several shapes, hand-made maps (a single hot cell in a corner, a
uniform map, a map hot along one border, plateaus with ties, an all-zero map), image sizes below
and above the analysis side, square and elongated, boxes inside, overlapping, touching the border
and covering no raster pixel centre, and softmax vectors with ties.

Output, committed; the TypeScript tests read it, CI needs no Python:
  test/fixtures/reference/audit_metrics_expected.json

Run: python3 scripts/reference/audit_metrics_reference.py   (needs python3-numpy only)
"""
import json
import math
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'test', 'fixtures', 'reference', 'audit_metrics_expected.json')

OPTIONS = {'analysisSide': 128, 'borderBand': 0.1, 'cornerSize': 0.2, 'topFraction': 0.2, 'atlasSize': 16}


def round_half_up(x):
    return int(math.floor(x + 0.5))


def analysis_size(w, h, side):
    longer = max(w, h)
    if longer <= side:
        return w, h
    s = side / longer
    return max(1, round_half_up(w * s)), max(1, round_half_up(h * s))


def taps(grid_size, out_size):
    o = np.arange(out_size, dtype=np.float64)
    pos = ((o + 0.5) * grid_size) / out_size - 0.5
    p = np.minimum(np.maximum(pos, 0.0), grid_size - 1)
    lo = np.floor(p).astype(np.int64)
    hi = np.minimum(lo + 1, grid_size - 1)
    return lo, hi, p - lo


def upsample(grid, out_h, out_w):
    """Half-pixel-centre bilinear, double precision, stored as float32."""
    g = grid.astype(np.float64)
    gh, gw = g.shape
    xl, xh, fx = taps(gw, out_w)
    yl, yh, fy = taps(gh, out_h)
    top = g[yl][:, xl] * (1 - fx)[None, :] + g[yl][:, xh] * fx[None, :]
    bottom = g[yh][:, xl] * (1 - fx)[None, :] + g[yh][:, xh] * fx[None, :]
    return (top * (1 - fy)[:, None] + bottom * fy[:, None]).astype(np.float32)


def prediction_metrics(p, true_class):
    p = np.asarray(p, dtype=np.float64)
    n = len(p)
    # top-k order: probability descending, ties by lower index
    order = sorted(range(n), key=lambda i: (-p[i], i))
    nz = p[p > 0]
    h = float(-(nz * np.log(nz)).sum())
    out = {
        'top1Prob': float(p[order[0]]),
        'margin': float(p[order[0]] - p[order[1]]) if n > 1 else float(p[order[0]]),
        'entropy': h / math.log(n) if n > 1 else 0.0,
    }
    if true_class is not None:
        rank = order.index(true_class) + 1
        out.update({'correct': rank == 1, 'trueRank': rank, 'trueProb': float(p[true_class])})
    return out


def gini(values):
    c = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = len(c)
    total = c.sum()
    if not total > 0:
        return None
    k = np.arange(1, n + 1)
    return float(1 - 2 * np.sum((c / total) * ((n - k + 0.5) / n)))


def map_metrics(grid, w, h, boxes, degenerate):
    if degenerate:
        return None
    g = gini(grid)
    if g is None:
        return None
    rw, rh = analysis_size(w, h, OPTIONS['analysisSide'])
    m = upsample(grid, rh, rw).astype(np.float64)
    total = m.sum()
    if not total > 0:
        return None
    u = (np.arange(rw) + 0.5) / rw
    v = (np.arange(rh) + 0.5) / rh
    U, V = np.meshgrid(u, v)
    cx = float((m * U).sum() / total)
    cy = float((m * V).sum() / total)
    spread = math.sqrt(float((m * ((U - cx) ** 2 + (V - cy) ** 2)).sum() / total))
    b, c = OPTIONS['borderBand'], OPTIONS['cornerSize']
    band = (U < b) | (U >= 1 - b) | (V < b) | (V >= 1 - b)
    left, right, top, bottom = U < c, U >= 1 - c, V < c, V >= 1 - c
    flat = m.astype(np.float32).ravel()
    peak = int(np.argmax(flat))  # first maximum in row-major order
    py, px = divmod(peak, rw)
    out = {
        'peakX': float(u[px]), 'peakY': float(v[py]),
        'centroidX': cx, 'centroidY': cy, 'spread': spread, 'gini': g,
        'borderShare': float(m[band].sum() / total),
        'cornerShares': {
            'topLeft': float(m[top & left].sum() / total), 'topRight': float(m[top & right].sum() / total),
            'bottomLeft': float(m[bottom & left].sum() / total), 'bottomRight': float(m[bottom & right].sum() / total),
        },
    }
    if boxes:
        X = ((np.arange(rw) + 0.5) * w) / rw
        Y = ((np.arange(rh) + 0.5) * h) / rh
        XX, YY = np.meshgrid(X, Y)
        inside = np.zeros((rh, rw), dtype=bool)
        for x0, y0, x1, y1 in boxes:
            inside |= (XX >= x0) & (XX < x1) & (YY >= y0) & (YY < y1)
        n = rw * rh
        k = max(1, math.ceil(OPTIONS['topFraction'] * n))
        tau = np.sort(flat)[::-1][k - 1]
        topr = ((flat >= tau) & (flat > 0)).reshape(rh, rw)
        union = (topr | inside).sum()
        out.update({
            'boxEnergy': float(m[inside].sum() / total),
            'boxArea': float(inside.sum() / n),
            # A flat map has no peak: the pointing game counts it as a miss.
            'pointingHit': bool(inside[py, px]) and bool(grid.max() > grid.min()),
            'topIou': float((topr & inside).sum() / union) if union > 0 else 0.0,
        })
    return out


def atlas(grid, degenerate):
    if degenerate:
        return None
    a = upsample(grid, OPTIONS['atlasSize'], OPTIONS['atlasSize']).astype(np.float64)
    mx = a.max()
    if not mx > 0:
        return None
    return [int(math.floor(x + 0.5)) for x in (a / mx * 255).ravel()]


def average_ranks(x):
    """1-based ranks, ties get the mean of the ranks they span."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind='mergesort')
    ranks = np.empty(len(x))
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def similarity(a, b):
    """Spearman correlation and top-fraction IoU of two atlas maps (bytes)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ra, rb = average_ranks(a), average_ranks(b)
    da, db = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float((da * da).sum() * (db * db).sum()))
    rho = float((da * db).sum() / den) if den > 0 else None
    k = max(1, math.ceil(OPTIONS['topFraction'] * len(a)))
    ta = (a >= np.sort(a)[::-1][k - 1]) & (a > 0)
    tb = (b >= np.sort(b)[::-1][k - 1]) & (b > 0)
    union = (ta | tb).sum()
    return {'rankCorrelation': rho, 'topIou': float((ta & tb).sum() / union) if union > 0 else 0.0}


def f32(a):
    return [float(x) for x in np.asarray(a, dtype=np.float32).ravel()]


def random_grid(rng, gh, gw, kind):
    if kind == 'blob':
        cy, cx = rng.uniform(0, gh), rng.uniform(0, gw)
        s = rng.uniform(0.8, 3.0)
        yy, xx = np.mgrid[0:gh, 0:gw]
        g = np.exp(-((yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2) / (2 * s * s)) + 0.1 * rng.random((gh, gw))
    elif kind == 'sparse':
        g = np.maximum(rng.normal(size=(gh, gw)), 0) ** 3
    else:
        g = rng.random((gh, gw))
    g = g / g.max()
    return np.round(g, 4).astype(np.float32)  # engines round grids to 1e-4 in the JSON


def main():
    rng = np.random.default_rng(20261201)
    cases = []
    sizes = [(64, 64), (128, 96), (192, 192), (333, 217), (97, 401), (640, 427), (1000, 30), (7, 5)]
    grids = [(16, 16), (14, 14), (7, 9), (1, 1), (3, 2)]
    kinds = ['blob', 'sparse', 'uniform']
    for i in range(24):
        gh, gw = grids[i % len(grids)]
        w, h = sizes[i % len(sizes)]
        g = random_grid(rng, gh, gw, kinds[i % 3])
        nb = i % 4
        boxes = []
        for _ in range(nb):
            x0, y0 = rng.uniform(-0.1 * w, 0.9 * w), rng.uniform(-0.1 * h, 0.9 * h)
            boxes.append([round(x0, 2), round(y0, 2), round(x0 + rng.uniform(1, 0.6 * w), 2), round(y0 + rng.uniform(1, 0.6 * h), 2)])
        probs = rng.dirichlet(np.full(5 + i % 4, 0.3))
        cases.append({'name': f'random-{i}', 'grid': f32(g), 'gh': gh, 'gw': gw, 'width': w, 'height': h, 'boxes': boxes,
                      'probabilities': f32(probs), 'trueClass': int(i % len(probs)) if i % 3 else None, 'degenerate': None})
    # Hand-made maps.
    def hot(gh, gw, cells):
        g = np.zeros((gh, gw), dtype=np.float32)
        for (r, c) in cells:
            g[r, c] = 1
        return g
    border = np.zeros((16, 16), dtype=np.float32)
    border[0, :] = 1
    plateau = np.zeros((16, 16), dtype=np.float32)
    plateau[5:9, 3:7] = 0.75
    plateau[2, 12] = 0.75
    hand = [
        ('hot-bottom-right', hot(16, 16, [(15, 15)]), 64, 64, [[54, 53, 62, 61]]),
        ('hot-top-left', hot(16, 16, [(0, 0)]), 640, 480, [[0, 0, 40, 40]]),
        ('uniform', np.ones((14, 14), dtype=np.float32), 224, 224, [[56, 56, 168, 168]]),
        ('border-row', border, 300, 100, [[0, 0, 300, 10]]),
        ('plateau-ties', plateau, 64, 64, [[12, 20, 28, 36], [20, 28, 40, 44]]),
        ('box-without-pixel-centre', hot(4, 4, [(1, 2)]), 8, 8, [[3.6, 3.6, 4.4, 4.4]]),
        ('all-zero', np.zeros((16, 16), dtype=np.float32), 64, 64, [[0, 0, 10, 10]]),
        ('tied-probabilities', hot(16, 16, [(8, 8)]), 64, 64, []),
    ]
    for name, g, w, h, boxes in hand:
        probs = np.array([0.4, 0.4, 0.1, 0.1]) if name == 'tied-probabilities' else np.array([0.05, 0.9, 0.05])
        cases.append({'name': name, 'grid': f32(g), 'gh': g.shape[0], 'gw': g.shape[1], 'width': w, 'height': h, 'boxes': boxes,
                      'probabilities': f32(probs), 'trueClass': 1, 'degenerate': None})
    cases.append({'name': 'degenerate', 'grid': f32(hot(16, 16, [(3, 3)])), 'gh': 16, 'gw': 16, 'width': 64, 'height': 64, 'boxes': [],
                  'probabilities': f32([1.0, 0.0]), 'trueClass': 0, 'degenerate': 'saturated softmax'})
    for c in cases:
        g = np.asarray(c['grid'], dtype=np.float32).reshape(c['gh'], c['gw'])
        c['expected'] = {
            'prediction': prediction_metrics(np.asarray(c['probabilities'], dtype=np.float32), c['trueClass']),
            'map': map_metrics(g, c['width'], c['height'], c['boxes'], c['degenerate']),
            'atlas': atlas(g, c['degenerate']),
        }
    # Map similarity on atlas pairs: random, identical, disjoint, constant, with ties.
    pairs = []
    atlases = [c['expected']['atlas'] for c in cases if c['expected']['atlas'] is not None]
    for i in range(10):
        a, b = atlases[i], atlases[(i * 7 + 3) % len(atlases)]
        pairs.append({'a': a, 'b': b})
    pairs.append({'a': atlases[0], 'b': atlases[0]})
    pairs.append({'a': [255] + [0] * 255, 'b': [0] * 255 + [255]})
    pairs.append({'a': [128] * 256, 'b': atlases[1]})
    for p in pairs:
        p['expected'] = similarity(p['a'], p['b'])
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, 'w') as f:
        json.dump({'options': OPTIONS, 'numpy': np.__version__, 'cases': cases, 'similarity': pairs}, f, indent=1)
        f.write('\n')
    print(f'wrote {OUT}: {len(cases)} metric cases, {len(pairs)} similarity pairs')


if __name__ == '__main__':
    main()
