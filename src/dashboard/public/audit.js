// gradcam-audit dashboard: the Audit view of a run (#/runs/ID/audit) and the compare page
// (#/compare?a=A&b=B). Both draw documents the pipeline already wrote (audit.json, compare.json);
// the server does no analysis for them. Loaded before app.js, whose helpers (h, s, api, fmt,
// vocabulary, colormapColors, currentLocation, setLocation, runTabs, setNav, showError) these
// functions call when the pages open.
'use strict';

const FLAG_TITLES = {
  'corner-shortcut': 'Corner shortcut',
  'border-shortcut': 'Border shortcut',
  'background-shortcut': 'Background shortcut',
  'right-for-wrong-reasons': 'Right for the wrong reasons',
  'label-suspect': 'Label suspect',
  'out-of-distribution': 'Out of distribution',
  'degenerate-map': 'Degenerate map',
};

const className = (c) => (c ? (c.label !== undefined ? `${c.label} (#${c.index})` : `#${c.index}`) : '–');
const num = (x, digits = 3) => (x === null || x === undefined ? '–' : Number(x).toFixed(digits));

/** A `size`×`size` map (values in [0, 1]) on a canvas, scaled to its own maximum, in `colors`. */
function atlasCanvas(values, size, colors, label) {
  const canvas = h('canvas', { width: size, height: size, class: 'atlas', role: 'img', 'aria-label': label });
  if (!values) return h('div', { class: 'atlas empty-atlas', text: 'no maps' });
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(size, size);
  let max = 0;
  for (const v of values) max = Math.max(max, v);
  values.forEach((v, i) => {
    const c = colorOf(colors, max > 0 ? v / max : 0);
    img.data[4 * i] = parseInt(c.slice(1, 3), 16);
    img.data[4 * i + 1] = parseInt(c.slice(3, 5), 16);
    img.data[4 * i + 2] = parseInt(c.slice(5, 7), 16);
    img.data[4 * i + 3] = 255;
  });
  ctx.putImageData(img, 0, 0);
  return canvas;
}

/** The detail view of an image of a run, as a link. */
function imageHref(runId, key) {
  return `#/runs/${encodeURIComponent(runId)}?image=${encodeURIComponent(key)}`;
}

// ---------- Audit view ----------

function auditPage(runId, params) {
  setNav('runs');
  // Static documents: the live stream only keeps the status light honest.
  connectLive(null);
  const id = encodeURIComponent(runId);
  const head = h(
    'div',
    { class: 'page-head' },
    h('div', {}, h('div', { class: 'muted small' }, h('a', { href: '#/', text: 'Runs' }), ' / ', h('a', { href: `#/runs/${id}`, text: runId }), ' / audit'), h('h1', { text: `Audit of run ${runId}` }), runTabs(runId, 'audit')),
    h('div', { class: 'links' }, h('a', { class: 'btn', href: `/api/runs/${id}/report.html`, target: '_blank', id: 'audit-report', text: 'report.html' }), h('a', { class: 'btn', href: `/api/runs/${id}/audit.json`, target: '_blank', text: 'audit.json' }), h('a', { class: 'btn', href: `/api/runs/${id}/metrics.parquet`, text: 'metrics.parquet' })),
  );
  const body = h('div', { id: 'audit-body' }, h('div', { class: 'panel empty', text: 'Loading the audit…' }));
  app.replaceChildren(head, body);

  let state = null; // { audit, vocab, colors, flags: panel updater, atlas: panel updater }
  Promise.all([api(`/api/runs/${id}/audit.json`), vocabulary(), colormapColors('viridis')]).then(
    ([audit, vocab, colors]) => {
      state = { audit, vocab, colors };
      render(params);
    },
    async (err) => {
      // No audit yet: say why (the finalizer's record in summary.json) and how to write it.
      const summary = await api(`/api/runs/${id}/summary.json`).catch(() => null);
      const failed = summary && summary.analysis && summary.analysis.status === 'failed' ? summary.analysis : null;
      body.replaceChildren(
        h(
          'div',
          { class: 'panel empty', id: 'audit-missing' },
          h('h2', { text: 'No audit for this run yet' }),
          h('p', { class: 'muted', text: failed ? `The run's analysis failed: ${failed.error}` : err.message }),
          h('p', {}, 'Write it with ', h('code', { text: failed ? failed.redo : `gradcam-audit report ${runId}` }), '; runs write it themselves when they finish.'),
        ),
      );
    },
  );

  function render(p) {
    const { audit, vocab, colors } = state;
    const c = audit.counts;
    const totalFlags = Object.values(audit.flagCounts).reduce((a, n) => a + n, 0);
    const stats = h(
      'div',
      { class: 'stats', id: 'audit-stats' },
      stat('Images', fmt.int(c.images)),
      stat('Failed', fmt.int(c.failed), c.failed ? 'bad' : ''),
      stat('With metrics', fmt.int(c.withMetrics)),
      stat('With truth', fmt.int(c.withTruth)),
      stat('Degenerate maps', fmt.int(c.degenerate), c.degenerate ? 'warn' : ''),
      stat('Flags', fmt.int(totalFlags), totalFlags ? 'warn' : '', 'audit-flag-count'),
    );
    const flagsPanel = h('div', { class: 'panel', id: 'flags-panel' });
    const atlasPanel = h('div', { class: 'panel', id: 'atlas-panel' });
    const confusionPanel = h('div', { class: 'panel', id: 'confusion-panel' });
    const histPanel = h('div', { class: 'panel', id: 'histograms-panel' });
    body.replaceChildren(stats, flagsPanel, atlasPanel, h('div', { class: 'grid-2' }, confusionPanel, histPanel));
    state.flags = flagList(flagsPanel, runId, audit, colors);
    state.atlas = classAtlas(atlasPanel, audit, colors);
    confusionMatrix(confusionPanel, audit);
    metricHistograms(histPanel, audit, vocab);
    state.flags(p);
    state.atlas(p);
  }

  return (next) => {
    if (!state || !state.flags) return;
    state.flags(next);
    state.atlas(next);
  };
}

/** The flags, filtered by kind and sorted by severity; both kept in the URL (`kind`, `order`). */
function flagList(panel, runId, audit, colors) {
  const kinds = Object.entries(audit.flagCounts).filter(([, n]) => n > 0);
  const kindSel = h('select', { id: 'flag-kind' }, h('option', { value: '', text: `All kinds (${audit.flags.length})` }), ...kinds.map(([k, n]) => h('option', { value: k, text: `${FLAG_TITLES[k] || k} (${n})` })));
  const sortBtn = h('button', { class: 'btn small', type: 'button', id: 'flag-sort' });
  const tbody = h('tbody');
  const note = h('div', { class: 'muted small', id: 'flag-note' });
  const update = (patch) => {
    const { path, params } = currentLocation();
    for (const [k, v] of Object.entries(patch)) (v ? params.set(k, v) : params.delete(k));
    setLocation(path, params);
    draw(params);
  };
  kindSel.addEventListener('change', () => update({ kind: kindSel.value }));
  sortBtn.addEventListener('click', () => update({ order: sortBtn.dataset.order === 'asc' ? '' : 'asc' }));
  panel.replaceChildren(
    h('div', { class: 'page-head' }, h('h2', { text: 'Flags' }), h('div', { class: 'filters inline' }, h('label', {}, 'Kind', kindSel))),
    audit.flags.length
      ? h('table', { class: 'data', id: 'flags-table' }, h('thead', {}, h('tr', {}, h('th', { text: '' }), h('th', { text: 'Kind' }), h('th', { text: 'Concerns' }), h('th', { class: 'num' }, sortBtn), h('th', { text: 'Why' }))), tbody)
      : h('div', { class: 'empty', text: 'Nothing flagged: no class or image crossed a threshold.' }),
    note,
  );

  function draw(params) {
    const kind = params.get('kind') || '';
    const order = params.get('order') === 'asc' ? 'asc' : 'desc';
    kindSel.value = kind;
    sortBtn.dataset.order = order;
    sortBtn.textContent = `Severity ${order === 'asc' ? '▲' : '▼'}`;
    sortBtn.title = `Sorted by severity, ${order === 'asc' ? 'least' : 'most'} severe first; click to reverse`;
    const shown = audit.flags.filter((f) => !kind || f.kind === kind).sort((a, b) => (order === 'asc' ? a.severity - b.severity : b.severity - a.severity));
    tbody.replaceChildren(...shown.map((f) => flagRow(runId, f, audit, colors)));
    const kept = kind ? audit.flagCounts[kind] - shown.length : 0;
    note.textContent = kept > 0 ? `${fmt.int(kept)} more ${kind} flags are counted; audit.json keeps the ${shown.length} most severe.` : 'Severity orders flags of one kind (its meaning per kind: docs/audit-metrics.md).';
  }
  return draw;
}

function flagRow(runId, f, audit, colors) {
  const sub = f.subject;
  let thumb;
  let concerns;
  if (sub.type === 'image') {
    const href = imageHref(runId, sub.key);
    thumb = h('a', { href, class: 'flag-thumb' }, h('img', { src: `/api/runs/${encodeURIComponent(runId)}/thumbnail?key=${encodeURIComponent(sub.key)}`, alt: `Overlay of ${sub.key}`, loading: 'lazy' }));
    concerns = h('div', {}, h('a', { href, class: 'mono', text: sub.key }), h('div', { class: 'muted small', text: `predicted ${className(sub.predicted)}${sub.truth ? `, labelled ${className(sub.truth)}` : ''}` }));
  } else {
    const cls = (audit.classes[sub.role] || []).find((c) => c.class.index === sub.class.index);
    thumb = h('div', { class: 'flag-thumb' }, atlasCanvas(cls && cls.atlas, audit.atlasSize, colors, `Mean map of ${className(sub.class)}`));
    concerns = h('div', {}, h('strong', { text: className(sub.class) }), h('div', { class: 'muted small', text: `class (${sub.role})` }));
  }
  const evidence = Object.entries(f.evidence)
    .filter(([, v]) => v !== null)
    .map(([k, v]) => `${k} ${typeof v === 'number' ? num(v) : v}`)
    .join(' · ');
  const threshold = Object.entries(f.threshold)
    .map(([k, v]) => `${k} ${num(v)}`)
    .join(' · ');
  return h(
    'tr',
    { 'data-kind': f.kind, 'data-severity': f.severity, 'data-subject': sub.type === 'image' ? sub.key : `class:${sub.class.index}` },
    h('td', {}, thumb),
    h('td', {}, badge(FLAG_TITLES[f.kind] || f.kind, `flag ${f.kind}`)),
    h('td', {}, concerns),
    h('td', { class: 'num severity', text: num(f.severity) }),
    h('td', {}, h('div', { text: f.message }), h('div', { class: 'muted small', text: `evidence: ${evidence}` }), threshold ? h('div', { class: 'muted small', text: `thresholds: ${threshold}` }) : ''),
  );
}

/** Each class's mean map (predicted or true classes, `role` in the URL), largest classes first. */
function classAtlas(panel, audit, colors) {
  const roleSel = h('select', { id: 'atlas-role' }, h('option', { value: 'predicted', text: 'Predicted class' }), h('option', { value: 'true', text: 'True class' }));
  const grid = h('div', { class: 'atlas-grid', id: 'class-atlas' });
  roleSel.addEventListener('change', () => {
    const { path, params } = currentLocation();
    if (roleSel.value === 'true') params.set('role', 'true');
    else params.delete('role');
    setLocation(path, params);
    draw(params);
  });
  const runMap = h('figure', { class: 'atlas-card run' }, atlasCanvas(audit.atlas, audit.atlasSize, colors, 'Mean map of the whole run'), h('figcaption', {}, h('strong', { text: 'Whole run' }), h('span', { class: 'muted small', text: `${fmt.int(audit.counts.ok)} images` })));
  panel.replaceChildren(
    h('div', { class: 'page-head' }, h('h2', { text: 'Class atlas' }), h('div', { class: 'filters inline' }, audit.classes.true.length ? h('label', {}, 'Group by', roleSel) : '')),
    h('p', { class: 'muted small', text: 'Mean normalised Grad-CAM map per class in image coordinates, each scaled to its own maximum: where the model looks for that class.' }),
    grid,
  );
  function draw(params) {
    const role = params.get('role') === 'true' && audit.classes.true.length ? 'true' : 'predicted';
    roleSel.value = role;
    const classes = [...audit.classes[role]].sort((a, b) => b.count - a.count || a.class.index - b.class.index);
    grid.replaceChildren(
      runMap,
      ...classes.map((c) =>
        h(
          'figure',
          { class: 'atlas-card', 'data-class': c.class.index },
          atlasCanvas(c.atlas, audit.atlasSize, colors, `Mean map of ${className(c.class)}`),
          h('figcaption', {}, h('strong', { text: c.class.label || `class ${c.class.index}` }), h('span', { class: 'muted small', text: `${fmt.int(c.count)} images${c.accuracy !== null ? ` · accuracy ${fmt.pct(c.accuracy)}` : ''}` })),
        ),
      ),
    );
  }
  return draw;
}

/** True class (rows) against predicted class (columns), shaded by the share of each row. */
function confusionMatrix(panel, audit) {
  const m = audit.confusion;
  if (!m) {
    panel.replaceChildren(h('h2', { text: 'Confusion matrix' }), h('div', { class: 'empty', text: 'No ground truth in this run (enqueue with --truth or --truth-from-path).' }));
    return;
  }
  const MAX = 30;
  const totals = new Map();
  for (const [t, , n] of m.cells) totals.set(t, (totals.get(t) || 0) + n);
  const classes = [...m.classes].sort((a, b) => (totals.get(b.index) || 0) - (totals.get(a.index) || 0)).slice(0, MAX).sort((a, b) => a.index - b.index);
  const at = new Map(m.cells.map(([t, p, n]) => [`${t}:${p}`, n]));
  const table = h(
    'table',
    { class: 'confusion', id: 'confusion' },
    h('thead', {}, h('tr', {}, h('th', { class: 'corner', text: 'true ↓ / predicted →' }), ...classes.map((c) => h('th', { title: className(c), text: c.label || `#${c.index}` })))),
    h(
      'tbody',
      {},
      classes.map((t) =>
        h(
          'tr',
          {},
          h('th', { text: t.label || `#${t.index}` }),
          ...classes.map((p) => {
            const n = at.get(`${t.index}:${p.index}`) || 0;
            const share = n / (totals.get(t.index) || 1);
            const td = h('td', { class: `num${t.index === p.index ? ' diagonal' : n ? ' off' : ''}`, 'data-true': t.index, 'data-predicted': p.index, title: `${className(t)} predicted as ${className(p)}: ${n}`, text: n ? String(n) : '' });
            if (n) td.style.background = t.index === p.index ? `rgba(43, 138, 62, ${0.15 + 0.6 * share})` : `rgba(201, 42, 42, ${0.15 + 0.6 * share})`;
            return td;
          }),
        ),
      ),
    ),
  );
  panel.replaceChildren(h('h2', { text: 'Confusion matrix' }), h('div', { class: 'scroll' }, table), m.classes.length > MAX ? h('div', { class: 'muted small', text: `The ${MAX} classes with the most labelled images of ${m.classes.length}; report.html lists the largest confusions.` }) : '');
}

/** One small histogram per metric the run has values for. */
function metricHistograms(panel, audit, vocab) {
  const charts = [];
  for (const col of vocab.metrics) {
    const hist = audit.histograms[col.name];
    const summary = audit.metrics[col.name];
    if (!hist || !summary || !summary.n) continue;
    const W = 220;
    const H = 70;
    const max = Math.max(...hist.counts, 1);
    const bw = W / hist.counts.length;
    const svg = s('svg', { class: 'chart histogram', viewBox: `0 0 ${W} ${H + 14}`, role: 'img', 'aria-label': `Histogram of ${col.label}` });
    hist.counts.forEach((n, i) => {
      const bh = (n / max) * H;
      const lo = hist.lo + ((hist.hi - hist.lo) * i) / hist.counts.length;
      const rect = s('rect', { class: 'bar', x: i * bw + 0.5, y: H - bh, width: Math.max(1, bw - 1), height: bh });
      rect.append(s('title', {}, `${num(lo, 2)}–${num(lo + (hist.hi - hist.lo) / hist.counts.length, 2)}: ${n}`));
      svg.append(rect);
    });
    svg.append(s('text', { x: 0, y: H + 12 }, num(hist.lo, 2)), s('text', { x: W, y: H + 12, 'text-anchor': 'end' }, num(hist.hi, 2)));
    charts.push(h('figure', { class: 'histogram-card', 'data-metric': col.name }, h('figcaption', {}, h('strong', { text: col.label }), h('span', { class: 'muted small', text: ` mean ${num(summary.mean)} · n ${fmt.int(summary.n)}` })), svg));
  }
  panel.replaceChildren(h('h2', { text: 'Metric histograms' }), charts.length ? h('div', { class: 'histograms', id: 'metric-histograms' }, charts) : h('div', { class: 'empty', text: 'No per-image metrics in this run.' }));
}

// ---------- compare page ----------

function comparePage(params) {
  setNav('compare');
  connectLive(null);
  const aSel = h('select', { id: 'compare-a' });
  const bSel = h('select', { id: 'compare-b' });
  const form = h(
    'form',
    { class: 'filters', id: 'compare-form', onsubmit: (e) => (e.preventDefault(), choose()) },
    h('label', {}, 'Run A (before)', aSel),
    h('label', {}, 'Run B (after)', bSel),
    h('button', { class: 'btn primary', type: 'submit', id: 'compare-go' }, 'Compare'),
  );
  const result = h('div', { id: 'compare-result' });
  app.replaceChildren(
    h('div', { class: 'page-head' }, h('div', {}, h('h1', { text: 'Compare two runs' }), h('div', { class: 'muted', text: 'Two models, versions or methods over the same keys: do they predict the same, and do they look at the same places?' }))),
    h('div', { class: 'panel' }, form),
    result,
  );
  api('/api/runs?limit=1000').then(({ runs }) => {
    const options = (sel) => sel.replaceChildren(h('option', { value: '', text: 'choose a run' }), ...runs.map((r) => h('option', { value: r.id, text: `${r.id} (${r.state}, ${fmt.int(r.total)} images)` })));
    options(aSel);
    options(bSel);
    show(params);
  }, showError);

  function choose() {
    const q = new URLSearchParams();
    if (aSel.value) q.set('a', aSel.value);
    if (bSel.value) q.set('b', bSel.value);
    setLocation('/compare', q, { push: true });
    show(q);
  }

  let token = 0;
  async function show(p) {
    const a = p.get('a') || '';
    const b = p.get('b') || '';
    aSel.value = a;
    bSel.value = b;
    const mine = ++token;
    if (!a || !b) {
      result.replaceChildren(h('div', { class: 'panel empty', text: 'Choose two finished runs.' }));
      return;
    }
    result.replaceChildren(h('div', { class: 'panel empty', text: 'Loading…' }));
    const q = new URLSearchParams({ a, b });
    try {
      const report = await api(`/api/compare?${q}`);
      if (mine === token) renderCompare(result, report);
    } catch (err) {
      if (mine !== token) return;
      const compute = h('button', { class: 'btn primary', type: 'button', id: 'compare-compute' }, 'Compute the comparison');
      compute.addEventListener('click', async () => {
        compute.disabled = true;
        compute.textContent = 'Comparing… (reads both manifests)';
        try {
          const report = await api('/api/compare', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ a, b }) });
          if (mine === token) renderCompare(result, report);
        } catch (e) {
          compute.disabled = false;
          compute.textContent = 'Compute the comparison';
          showError(e);
        }
      });
      result.replaceChildren(h('div', { class: 'panel empty', id: 'compare-missing' }, h('p', { class: 'muted', text: err.message }), compute));
    }
  }

  return (next) => show(next);
}

async function renderCompare(container, r) {
  const colors = await colormapColors('viridis');
  const pct = (x) => (x === null || x === undefined ? '–' : fmt.pct(x));
  const stats = h(
    'div',
    { class: 'stats', id: 'compare-stats' },
    stat('Images in both', fmt.int(r.counts.both)),
    stat('Only in A', fmt.int(r.counts.onlyA), r.counts.onlyA ? 'warn' : ''),
    stat('Only in B', fmt.int(r.counts.onlyB), r.counts.onlyB ? 'warn' : ''),
    stat('Same top-1 class', pct(r.agreement), '', 'compare-agreement'),
    stat('Map rank correlation', num(r.similarity.rankCorrelation.mean)),
    stat('Top-20% IoU', num(r.similarity.topIou.mean)),
  );
  const classes = h(
    'table',
    { class: 'data', id: 'compare-classes' },
    h('thead', {}, h('tr', {}, ...['Class', 'Mean map in A', 'Mean map in B', 'Images', 'Same top-1', 'Rank corr.', 'Top-20% IoU', 'Moved'].map((t, i) => h('th', { class: i >= 3 ? 'num' : undefined, text: t })))),
    h(
      'tbody',
      {},
      r.classes.map((c) =>
        h(
          'tr',
          { 'data-class': c.class.index },
          h('td', {}, h('strong', { text: className(c.class) })),
          h('td', {}, atlasCanvas(c.atlasA, r.atlasSize, colors, `Mean map of ${className(c.class)} in ${r.runs.a}`)),
          h('td', {}, atlasCanvas(c.atlasB, r.atlasSize, colors, `Mean map of ${className(c.class)} in ${r.runs.b}`)),
          h('td', { class: 'num', text: fmt.int(c.images) }),
          h('td', { class: 'num', text: pct(c.agreement) }),
          h('td', { class: 'num', text: num(c.rankCorrelation) }),
          h('td', { class: 'num', text: num(c.topIou) }),
          h('td', { class: 'num movement', text: num(c.movement) }),
        ),
      ),
    ),
  );
  const side = (run, x) => h('td', {}, h('a', { href: imageHref(run, x.key), class: 'flag-thumb' }, h('img', { src: `/api/runs/${encodeURIComponent(run)}/thumbnail?key=${encodeURIComponent(x.key)}`, alt: `Overlay in ${run}`, loading: 'lazy' })), h('div', { class: 'small', text: `${className(x.side.top1)} ${num(x.side.top1Prob)}` }));
  const images = h(
    'table',
    { class: 'data', id: 'compare-images' },
    h('thead', {}, h('tr', {}, ...['Key', `In ${r.runs.a}`, `In ${r.runs.b}`, 'Rank corr.', 'Top-20% IoU', 'Change'].map((t, i) => h('th', { class: i >= 3 ? 'num' : undefined, text: t })))),
    h(
      'tbody',
      {},
      r.images.map((im) =>
        h('tr', { 'data-key': im.key }, h('td', { class: 'mono', text: im.key }), side(r.runs.a, { key: im.key, side: im.a }), side(r.runs.b, { key: im.key, side: im.b }), h('td', { class: 'num', text: num(im.rankCorrelation) }), h('td', { class: 'num', text: num(im.topIou) }), h('td', { class: 'num', text: num(im.change) })),
      ),
    ),
  );
  container.replaceChildren(
    stats,
    h('div', { class: 'panel' }, h('h2', { text: 'Classes whose attention moved most' }), h('p', { class: 'muted small', text: 'Moved = 1 − mean per-image Spearman ρ between the two runs’ maps (0: same places; 2: opposite).' }), r.classes.length ? classes : h('div', { class: 'empty', text: 'No class with maps in both runs.' })),
    h('div', { class: 'panel' }, h('h2', { text: 'Images that changed most' }), r.images.length ? images : h('div', { class: 'empty', text: 'No image in both runs.' })),
  );
}
