// gradcam-audit dashboard front end: plain browser JavaScript, no build step.
// Pages are chosen by the URL fragment (#/, #/runs/ID, #/runs/ID/audit, #/compare, #/workers); a
// page's state (gallery filters and sort, the open image, the audit's flag filter) lives in the
// fragment's query, so every view is a link. Live numbers arrive over server-sent events
// (/api/events). Every piece of data is inserted with textContent, never as HTML, because keys and
// labels come from arbitrary buckets. audit.js (loaded first) draws the Audit and compare pages.
'use strict';

const app = document.getElementById('app');
const liveStatus = document.getElementById('live-status');
const dialog = document.getElementById('image-dialog');
let live = null;
let livePage = null; // { runs(data), run(data) } handlers of the page on screen

// ---------- small helpers ----------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

async function api(path, init) {
  const res = await fetch(path, { credentials: 'same-origin', ...init });
  if (res.status === 401) {
    location.href = `/login?next=${encodeURIComponent(location.pathname + location.hash)}`;
    throw new Error('not signed in');
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.message || `${res.status} ${res.statusText}`);
  return body;
}

/** Fetch once, share the answer (vocabulary, colormaps). */
const cached = new Map();
function once(path) {
  if (!cached.has(path)) {
    const p = api(path);
    p.catch(() => cached.delete(path));
    cached.set(path, p);
  }
  return cached.get(path);
}
/** The per-image metrics (name, label, range) and flag kinds, from the server's one table. */
const vocabulary = () => once('/api/audit/vocabulary');
/** A colormap as 256 CSS colours, the table the overlays were drawn with. */
const colormapColors = (name) => once(`/api/colormaps/${encodeURIComponent(name || 'viridis')}`).then((c) => c.colors);
/** matplotlib's quantisation of a value in [0, 1] to one of 256 entries (as the workers colour). */
function colorOf(colors, v) {
  const i = !(v > 0) ? 0 : v >= 1 ? 255 : Math.min(255, Math.floor(v * 256));
  return colors[i];
}

// ---------- locations ----------

/** The fragment as a path and its query: `#/runs/r1?sort=entropy` → { path: '/runs/r1', params }. */
function currentLocation() {
  const hash = location.hash || '#/';
  const q = hash.indexOf('?');
  return { path: q < 0 ? hash.slice(1) : hash.slice(1, q), params: new URLSearchParams(q < 0 ? '' : hash.slice(q + 1)) };
}

function hrefOf(path, params) {
  const q = params && [...params.keys()].length ? `?${params}` : '';
  return `#${path}${q}`;
}

/**
 * Put a page's state in the URL without rebuilding the page: `push` adds a history entry (opening
 * an image, so Back closes it), otherwise the entry is replaced (filters, paging, previous/next).
 */
function setLocation(path, params, { push = false, state = null } = {}) {
  const url = hrefOf(path, params);
  if (url === (location.hash || '#/')) return;
  if (push) history.pushState(state, '', url);
  else history.replaceState(state, '', url);
  routed = url;
}

const fmt = {
  int: (n) => Number(n || 0).toLocaleString('en-US'),
  rate: (n) => (n > 0 ? `${n >= 10 ? n.toFixed(0) : n.toFixed(1)} img/s` : '–'),
  pct: (p) => `${(p * 100).toFixed(1)}%`,
  prob: (p) => (p === undefined || p === null ? '–' : `${(p * 100).toFixed(1)}%`),
  eta(sec, state, totalFinal) {
    if (state === 'completed') return 'done';
    if ((sec === null || sec === undefined) && totalFinal === false) return 'listing…';
    if (sec === null || sec === undefined) return '–';
    if (sec < 1) return '< 1 s';
    if (sec < 90) return `${Math.round(sec)} s`;
    if (sec < 5400) return `${Math.round(sec / 60)} min`;
    return `${(sec / 3600).toFixed(1)} h`;
  },
  time(iso) {
    if (!iso) return '–';
    const d = new Date(iso);
    return d.toLocaleString('en-GB', { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
  },
  duration(sec) {
    if (sec < 90) return `${sec.toFixed(sec < 10 ? 1 : 0)} s`;
    if (sec < 5400) return `${(sec / 60).toFixed(1)} min`;
    return `${(sec / 3600).toFixed(1)} h`;
  },
  ago(sec) {
    if (sec < 1) return 'just now';
    if (sec < 90) return `${Math.round(sec)} s ago`;
    return `${Math.round(sec / 60)} min ago`;
  },
};

function badge(text, cls) {
  return h('span', { class: `badge ${cls || text}`, text });
}

function progressBlock(run) {
  const finished = run.done + run.failed;
  return h(
    'div',
    { class: 'progress-cell' },
    h('progress', {
      max: Math.max(run.total, 1),
      value: finished,
      'data-run': run.id,
      'aria-label': `Progress of run ${run.id}`,
      'aria-valuetext': `${finished} of ${run.total} images`,
    }),
    h(
      'div',
      { class: 'progress-text' },
      h('span', {}, `${fmt.int(run.done)} ok`, run.failed ? h('span', { class: 'failed', text: ` · ${fmt.int(run.failed)} failed` }) : null, ` / ${fmt.int(run.total)}`),
      h('span', { text: fmt.pct(run.progress) }),
    ),
  );
}

/** Update a progress block made by progressBlock() in place. */
function updateProgress(block, run) {
  const bar = block.querySelector('progress');
  bar.max = Math.max(run.total, 1);
  bar.value = run.done + run.failed;
  bar.setAttribute('aria-valuetext', `${run.done + run.failed} of ${run.total} images`);
  const fresh = progressBlock(run).querySelector('.progress-text');
  block.querySelector('.progress-text').replaceWith(fresh);
}

function updateRunRow(row, run) {
  const state = row.querySelector('td.state');
  if (state.dataset.state !== run.state) {
    state.dataset.state = run.state;
    state.replaceChildren(badge(run.state));
  }
  updateProgress(row.querySelector('.progress-cell'), run);
  row.querySelector('td.speed').textContent = fmt.rate(run.imagesPerSecond);
  row.querySelector('td.eta').textContent = fmt.eta(run.etaSeconds, run.state, run.totalFinal);
}

// ---------- live stream ----------

function connectLive(runId) {
  if (live) live.close();
  live = new EventSource(runId ? `/api/events?run=${encodeURIComponent(runId)}` : '/api/events');
  live.addEventListener('open', () => {
    liveStatus.textContent = 'live';
    liveStatus.className = 'live on';
  });
  live.addEventListener('error', () => {
    liveStatus.textContent = 'reconnecting…';
    liveStatus.className = 'live off';
  });
  live.addEventListener('runs', (e) => livePage && livePage.runs && livePage.runs(JSON.parse(e.data)));
  live.addEventListener('run', (e) => livePage && livePage.run && livePage.run(JSON.parse(e.data)));
}

// ---------- pages ----------

function setNav(name) {
  for (const a of document.querySelectorAll('.topbar nav a')) a.classList.toggle('active', a.dataset.nav === name);
}

function runsPage() {
  setNav('runs');
  const tbody = h('tbody');
  const table = h(
    'table',
    { class: 'data', id: 'runs-table' },
    h('thead', {}, h('tr', {}, h('th', { text: 'Run' }), h('th', { text: 'Source' }), h('th', { text: 'State' }), h('th', { text: 'Progress' }), h('th', { class: 'num', text: 'Speed' }), h('th', { class: 'num', text: 'ETA' }), h('th', { text: 'Created' }))),
    tbody,
  );
  app.replaceChildren(h('div', { class: 'page-head' }, h('div', {}, h('h1', { text: 'Audit runs' }), h('div', { class: 'muted', text: 'Every run in this Redis namespace, newest first. Updates live.' }))), h('div', { class: 'panel' }, table));

  // Rows are created once per run and updated in place: replacing them every second would swallow
  // clicks that land between mousedown and mouseup.
  const render = ({ runs }) => {
    if (runs.length === 0) {
      tbody.replaceChildren(h('tr', {}, h('td', { colspan: 7, class: 'empty', text: 'No runs yet. Start one with: gradcam-audit enqueue s3://BUCKET/PREFIX' })));
      return;
    }
    const rows = new Map([...tbody.querySelectorAll('tr[data-run]')].map((r) => [r.dataset.run, r]));
    const ordered = runs.map((run) => {
      let row = rows.get(run.id);
      if (!row) {
        row = h(
          'tr',
          { 'data-run': run.id },
          h('td', {}, h('a', { href: `#/runs/${encodeURIComponent(run.id)}`, class: 'mono', text: run.id })),
          h('td', { class: 'mono', text: run.source }),
          h('td', { class: 'state' }),
          h('td', {}, progressBlock(run)),
          h('td', { class: 'num speed' }),
          h('td', { class: 'num eta' }),
          h('td', { class: 'muted', text: fmt.time(run.createdAt) }),
        );
      }
      updateRunRow(row, run);
      return row;
    });
    // Re-append only when the order changed (a new run arrived), keeping existing nodes.
    const current = [...tbody.children];
    if (current.length !== ordered.length || ordered.some((r, i) => current[i] !== r)) tbody.replaceChildren(...ordered);
  };
  livePage = { runs: render };
  connectLive(null);
  api('/api/runs').then(render, showError);
}

function workersPage() {
  setNav('workers');
  const tbody = h('tbody');
  app.replaceChildren(
    h('div', { class: 'page-head' }, h('div', {}, h('h1', { text: 'Workers' }), h('div', { class: 'muted', text: 'Workers with a heartbeat in the last 30 seconds.' }))),
    h(
      'div',
      { class: 'panel' },
      h(
        'table',
        { class: 'data', id: 'workers-table' },
        h('thead', {}, h('tr', {}, ...['Worker', 'Host', 'Status', 'Engine / backend', 'Device', 'Batch', 'Speed', 'Processed', 'Failed', 'Last seen'].map((t, i) => h('th', { class: i >= 5 && i <= 8 ? 'num' : undefined, text: t })))),
        tbody,
      ),
    ),
  );
  const load = () =>
    api('/api/workers').then(({ workers }) => {
      if (workers.length === 0) {
        tbody.replaceChildren(h('tr', {}, h('td', { colspan: 10, class: 'empty', text: 'No worker online. Start one with: gradcam-audit worker' })));
        return;
      }
      tbody.replaceChildren(
        ...workers.map((w) =>
          h(
            'tr',
            { 'data-worker': w.workerId },
            h('td', { class: 'mono', text: w.workerId }),
            h('td', { text: `${w.host} (pid ${w.pid})` }),
            h('td', {}, badge(w.status, w.status === 'running' ? 'running-worker' : w.status)),
            h('td', { text: `${w.engine} / ${w.backend}` }),
            h('td', { text: w.device }),
            h('td', { class: 'num', text: w.batchSize }),
            h('td', { class: 'num', text: fmt.rate(w.imagesPerSecond) }),
            h('td', { class: 'num', text: fmt.int(w.processed) }),
            h('td', { class: 'num', text: fmt.int(w.failed) }),
            h('td', { class: 'muted', text: fmt.ago(w.lastSeenSecondsAgo) }),
          ),
        ),
      );
    }, showError);
  load();
  livePage = { runs: () => load() };
  connectLive(null);
}

function runPage(runId, params) {
  setNav('runs');
  const stats = h('div', { class: 'stats', id: 'run-stats' });
  const head = h('div', { class: 'page-head' });
  const progress = h('div', { class: 'panel', id: 'run-progress' });
  const tputPanel = h('div', { class: 'panel' }, h('h2', { text: 'Throughput' }), h('div', { id: 'throughput-chart' }));
  const histPanel = h('div', { class: 'panel' }, h('h2', { text: 'Top-1 classes' }), h('div', { id: 'class-histogram' }));
  const failuresPanel = h('div', { class: 'panel', id: 'failures' });
  const galleryPanel = h('div', { class: 'panel', id: 'gallery-panel' });
  app.replaceChildren(head, stats, progress, h('div', { class: 'grid-2' }, tputPanel, histPanel), failuresPanel, galleryPanel);

  let lastStamp = '';
  let lastState = '';
  // Stats change every tick (rate, ETA); links, charts, failures and classes only when the run's
  // counters or state move, so they are redrawn only then and stay clickable in between.
  const render = (detail) => {
    const run = detail.run;
    const a = detail.analytics;
    stats.replaceChildren(
      stat('Images', fmt.int(run.total)),
      stat('Done', fmt.int(run.done)),
      stat('Failed', fmt.int(run.failed), run.failed ? 'bad' : ''),
      stat('Degenerate maps', fmt.int(a.degenerate), a.degenerate ? 'warn' : '', 'degenerate-count'),
      // One throughput definition (docs/architecture.md): the last minute while running, the whole run once done.
      stat(run.rateWindow === 'run' ? 'Throughput' : 'Speed (last min)', fmt.rate(run.imagesPerSecond), '', 'run-speed'),
      stat('ETA', fmt.eta(run.etaSeconds, run.state, run.totalFinal)),
    );
    const block = progress.querySelector('.progress-cell');
    if (block) updateProgress(block, run);
    else progress.replaceChildren(h('h2', { text: 'Progress' }), progressBlock(run), provenanceLine(run));

    const stamp = `${run.done}/${run.failed}/${run.total}`;
    if (run.state !== lastState) {
      lastState = run.state;
      head.replaceChildren(
        h('div', {}, h('div', { class: 'muted small' }, h('a', { href: '#/', text: 'Runs' }), ' / ', run.id), h('h1', {}, `Run ${run.id} `, badge(run.state)), h('div', { class: 'muted mono', text: `${run.source}  →  ${run.output}` }), runTabs(run.id, 'overview')),
        h('div', { class: 'links' }, h('a', { class: 'btn', href: `/api/runs/${encodeURIComponent(run.id)}/manifest.jsonl`, target: '_blank', id: 'link-manifest', text: 'manifest.jsonl' }), h('a', { class: 'btn', href: `/api/runs/${encodeURIComponent(run.id)}/summary.json`, target: '_blank', id: 'link-summary', text: 'summary.json' }), h('a', { class: 'btn', href: `/api/runs/${encodeURIComponent(run.id)}/report.html`, target: '_blank', id: 'link-report', text: 'audit report' }), h('a', { class: 'btn', href: `/api/runs/${encodeURIComponent(run.id)}/audit.json`, target: '_blank', id: 'link-audit', text: 'audit.json' }), h('a', { class: 'btn', href: `/api/runs/${encodeURIComponent(run.id)}/metrics.parquet`, id: 'link-parquet', text: 'metrics.parquet' })),
      );
    }
    if (stamp !== lastStamp) {
      throughputChart(document.getElementById('throughput-chart'), detail.throughput);
      histogramChart(document.getElementById('class-histogram'), a.classHistogram);
      if (lastStamp === '') gallery.init();
      gallery.updateClasses(a.classHistogram);
      lastStamp = stamp;
      loadFailures();
    }
  };

  const loadFailures = () =>
    api(`/api/runs/${encodeURIComponent(runId)}/failures?limit=100`).then((f) => renderFailures(failuresPanel, runId, f, loadFailures), showError);

  const gallery = makeGallery(galleryPanel, runId, params);
  livePage = { run: render };
  connectLive(runId);
  if (params.get('image')) openImage(runId, params.get('image'), params);
  api(`/api/runs/${encodeURIComponent(runId)}`).then(render, (err) => {
    // An unknown or malformed run id: say so instead of leaving empty panels behind.
    if (live) live.close();
    livePage = null;
    app.replaceChildren(h('div', { class: 'panel empty', id: 'run-missing' }, h('h2', { text: `Run ${runId} is not available` }), h('p', { class: 'muted', text: err.message }), h('a', { class: 'btn', href: '#/', text: 'Back to runs' })));
  });
  // Back/forward within the page: the gallery follows the URL's filters, the detail its image.
  return (next) => {
    gallery.follow(next);
    const image = next.get('image');
    if (image) openImage(runId, image, next);
    else if (dialog.open) dialog.close();
  };
}

/** Overview / Audit tabs of a run. */
function runTabs(runId, active) {
  const id = encodeURIComponent(runId);
  return h(
    'nav',
    { class: 'tabs', 'aria-label': 'Run views' },
    h('a', { href: `#/runs/${id}`, id: 'tab-overview', class: active === 'overview' ? 'active' : undefined, text: 'Overview' }),
    h('a', { href: `#/runs/${id}/audit`, id: 'tab-audit', class: active === 'audit' ? 'active' : undefined, text: 'Audit' }),
    h('a', { href: `#/compare?b=${id}`, id: 'tab-compare', text: 'Compare with…' }),
  );
}

function stat(label, value, cls, id) {
  return h('div', { class: 'stat' }, h('div', { class: 'label', text: label }), h('div', { class: `value ${cls || ''}`, id, text: value }));
}

function provenanceLine(run) {
  const p = run.provenance;
  const o = run.options || {};
  const parts = [`method ${o.method || '–'}`, `score ${o.score || '–'}`, `resize ${o.resize || '–'}`];
  if (p) parts.unshift(`${p.modelName || run.model || 'model'} · ${p.engine || ''}/${p.backend || ''} on ${p.device || '?'}`);
  return h('div', { class: 'muted small', text: parts.join(' · ') });
}

// ---------- charts (inline SVG) ----------

// The chart covers the run's processing span (first image taken → completion, or now) in bins the
// server chose (GET /api/runs/:id → throughput). Each bar's rate counts only the part of its bin
// inside the span, so the bars average to the run's throughput, drawn as the dashed line: the same
// number as the Throughput tile, `gradcam-audit status` and summary.json.
function throughputChart(container, chart) {
  const W = 640;
  const H = 220;
  const pad = { l: 44, r: 10, t: 24, b: 28 };
  if (!chart || !chart.bars.length || chart.to <= chart.from) {
    container.replaceChildren(h('div', { class: 'empty', text: 'No image finished yet.' }));
    return;
  }
  const span = chart.to - chart.from;
  const max = Math.max(...chart.bars.map((b) => b.imagesPerSecond), chart.imagesPerSecond, 0.1) * 1.1;
  const iw = W - pad.l - pad.r;
  const ih = H - pad.t - pad.b;
  const x = (t) => pad.l + ((t - chart.from) / span) * iw;
  const y = (rate) => pad.t + ih - (rate / max) * ih;
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'Images per second over the run' });
  for (let i = 0; i <= 4; i++) {
    const gy = pad.t + ih - (ih * i) / 4;
    svg.append(s('line', { class: 'grid', x1: pad.l, x2: W - pad.r, y1: gy, y2: gy }));
    svg.append(s('text', { x: pad.l - 6, y: gy + 4, 'text-anchor': 'end' }, ((max * i) / 4).toFixed(max < 4 ? 1 : 0)));
  }
  const clock = (t) => new Date(t * 1000).toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  for (const b of chart.bars) {
    const x0 = x(Math.max(b.t, chart.from));
    const x1 = x(Math.min(b.t + chart.binSeconds, chart.to));
    const rect = s('rect', { class: 'bar', x: x0 + 0.5, y: y(b.imagesPerSecond), width: Math.max(1, x1 - x0 - 1), height: pad.t + ih - y(b.imagesPerSecond), 'data-rate': b.imagesPerSecond });
    rect.append(s('title', {}, `${clock(Math.max(b.t, chart.from))}: ${b.count} images in ${b.seconds.toFixed(1)} s = ${b.imagesPerSecond.toFixed(2)} img/s`));
    svg.append(rect);
  }
  const ay = y(chart.imagesPerSecond);
  svg.append(s('line', { class: 'average', x1: pad.l, x2: W - pad.r, y1: ay, y2: ay, 'data-rate': chart.imagesPerSecond }));
  svg.append(s('text', { class: 'average-label', x: W - pad.r, y: ay - 4, 'text-anchor': 'end' }, `run average ${chart.imagesPerSecond.toFixed(2)} img/s`));
  svg.append(s('line', { class: 'axis', x1: pad.l, x2: W - pad.r, y1: pad.t + ih, y2: pad.t + ih }));
  for (let i = 0; i <= 4; i++) {
    const t = chart.from + (span * i) / 4;
    svg.append(s('text', { x: x(t), y: H - 8, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, clock(t)));
  }
  svg.append(s('text', { x: pad.l, y: 12 }, `images per second, ${chart.binSeconds} s bins, over the run (${fmt.duration(span)})`));
  container.replaceChildren(svg);
}

function histogramChart(container, hist) {
  if (!hist.length) {
    container.replaceChildren(h('div', { class: 'empty', text: 'No predictions yet.' }));
    return;
  }
  const top = hist.slice(0, 12);
  const W = 480;
  const row = 20;
  const labelW = 170;
  const H = top.length * row + 8;
  const max = Math.max(...top.map((c) => c.count));
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'Top-1 class histogram' });
  top.forEach((c, i) => {
    const y = 4 + i * row;
    const name = c.label ? `${c.label}` : `class ${c.index}`;
    svg.append(s('text', { class: 'label', x: labelW - 8, y: y + 13, 'text-anchor': 'end' }, name.length > 24 ? `${name.slice(0, 23)}…` : name));
    const w = ((W - labelW - 50) * c.count) / max;
    const rect = s('rect', { class: 'bar', x: labelW, y: y + 3, width: Math.max(2, w), height: row - 7, rx: 2 });
    rect.append(s('title', {}, `${name} (#${c.index}): ${c.count}`));
    svg.append(rect);
    svg.append(s('text', { x: labelW + w + 6, y: y + 13 }, String(c.count)));
  });
  const more = hist.length > top.length ? h('div', { class: 'muted small', text: `+ ${hist.length - top.length} more classes` }) : null;
  container.replaceChildren(svg, more || '');
}

// ---------- failures ----------

function renderFailures(panel, runId, data, reload) {
  const retryable = data.items.filter((f) => f.retryable);
  const retry = async (body, btn) => {
    btn.disabled = true;
    try {
      const out = await api(`/api/runs/${encodeURIComponent(runId)}/retry`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      btn.textContent = `Queued ${out.retried.length}`;
      setTimeout(reload, 800);
    } catch (err) {
      btn.disabled = false;
      showError(err);
    }
  };
  const headRow = h(
    'div',
    { class: 'page-head' },
    h('h2', { text: `Failures (${fmt.int(data.total)})` }),
    retryable.length ? h('button', { class: 'btn primary small', id: 'retry-all', type: 'button', onclick: (e) => retry({ all: true }, e.currentTarget) }, `Retry ${retryable.length} retryable`) : null,
  );
  if (data.total === 0) {
    panel.replaceChildren(headRow, h('div', { class: 'empty', text: 'No failed images.' }));
    return;
  }
  const rows = data.items.map((f) =>
    h(
      'tr',
      { 'data-key': f.key },
      h('td', { class: 'mono', text: f.key }),
      h('td', { text: f.error }),
      h('td', { class: 'num', text: f.jobState === 'missing' ? '–' : f.attemptsMade }),
      h('td', {}, f.retryable ? badge('retryable', 'queued') : badge(f.jobState === 'failed' ? 'permanent' : f.jobState === 'missing' ? 'expired' : f.jobState, f.jobState === 'failed' ? 'permanent' : 'queued')),
      h(
        'td',
        {},
        f.retryable
          ? h('button', { class: 'btn small', type: 'button', onclick: (e) => retry({ keys: [f.key] }, e.currentTarget) }, 'Retry')
          : h('span', { class: 'muted small', text: f.notRetryableReason || '' }),
      ),
    ),
  );
  panel.replaceChildren(
    headRow,
    h('table', { class: 'data', id: 'failures-table' }, h('thead', {}, h('tr', {}, h('th', { text: 'Source key' }), h('th', { text: 'Reason' }), h('th', { class: 'num', text: 'Attempts' }), h('th', { text: 'Kind' }), h('th', { text: 'Action' }))), h('tbody', {}, rows)),
    data.total > data.items.length ? h('div', { class: 'muted small', text: `Showing ${data.items.length} of ${data.total}; retry all covers every retryable failure.` }) : '',
  );
}

// ---------- gallery ----------

/** The gallery's query parameters, as the URL and the images API both name them. */
const LISTING_PARAMS = ['class', 'minProb', 'maxProb', 'status', 'degenerate', 'q', 'sort', 'order'];

/** Only the listing's parameters of a location's query (what previous/next must follow). */
function listingOf(params) {
  const out = new URLSearchParams();
  for (const k of LISTING_PARAMS) if (params.get(k)) out.set(k, params.get(k));
  return out;
}

function makeGallery(panel, runId, initial) {
  const PAGE = 24;
  let offset = Number(initial.get('offset')) || 0;
  const classSel = h('select', { id: 'filter-class' }, h('option', { value: '', text: 'All classes' }));
  const minIn = h('input', { id: 'filter-min', type: 'number', min: 0, max: 1, step: 0.05, placeholder: '0' });
  const maxIn = h('input', { id: 'filter-max', type: 'number', min: 0, max: 1, step: 0.05, placeholder: '1' });
  const statusSel = h('select', { id: 'filter-status' }, h('option', { value: 'all', text: 'All' }), h('option', { value: 'ok', text: 'OK' }), h('option', { value: 'failed', text: 'Failed' }));
  const degSel = h('select', { id: 'filter-degenerate' }, h('option', { value: '', text: 'Any' }), h('option', { value: 'true', text: 'Degenerate only' }), h('option', { value: 'false', text: 'Non-degenerate' }));
  const search = h('input', { id: 'filter-key', type: 'search', placeholder: 'key contains…' });
  const sortSel = h('select', { id: 'filter-sort' }, h('option', { value: '', text: 'Key' }));
  const orderSel = h('select', { id: 'filter-order' }, h('option', { value: 'asc', text: 'Ascending' }), h('option', { value: 'desc', text: 'Descending' }));
  const grid = h('div', { class: 'gallery', id: 'gallery' });
  const info = h('span', { class: 'muted small', id: 'gallery-info' });
  const prev = h('button', { class: 'btn small', type: 'button', onclick: () => go(Math.max(0, offset - PAGE)) }, '‹ Prev');
  const next = h('button', { class: 'btn small', type: 'button', onclick: () => go(offset + PAGE) }, 'Next ›');
  const apply = h('button', { class: 'btn primary', id: 'filter-apply', type: 'submit' }, 'Apply');
  const form = h(
    'form',
    { class: 'filters', id: 'gallery-filters', onsubmit: (e) => (e.preventDefault(), go(0)) },
    h('label', {}, 'Class', classSel),
    h('label', {}, 'Min prob.', minIn),
    h('label', {}, 'Max prob.', maxIn),
    h('label', {}, 'Status', statusSel),
    h('label', {}, 'CAM', degSel),
    h('label', {}, 'Key', search),
    h('label', {}, 'Sort by', sortSel),
    h('label', {}, 'Order', orderSel),
    apply,
  );
  panel.replaceChildren(h('div', { class: 'page-head' }, h('h2', { text: 'Gallery' }), h('button', { class: 'btn small', type: 'button', onclick: () => load() }, 'Refresh')), form, grid, h('div', { class: 'pager' }, info, prev, next));

  // Sort by any per-image metric the server knows (confidence and entropy first).
  vocabulary().then((v) => {
    const first = ['top1Prob', 'entropy', 'margin'];
    const metrics = [...v.metrics].sort((a, b) => (first.indexOf(b.name) >= 0) - (first.indexOf(a.name) >= 0));
    sortSel.append(...metrics.map((m) => h('option', { value: m.name, text: m.name === 'top1Prob' ? 'confidence (top-1 probability)' : m.label })));
    sortSel.value = wanted.sort || '';
  }, showError);

  // The URL's values for the controls; the class list arrives later, so its value waits for it.
  let wanted = {};
  function fromParams(params) {
    wanted = Object.fromEntries(LISTING_PARAMS.map((k) => [k, params.get(k) || '']));
    classSel.value = wanted.class;
    minIn.value = wanted.minProb;
    maxIn.value = wanted.maxProb;
    statusSel.value = wanted.status || 'all';
    degSel.value = wanted.degenerate;
    search.value = wanted.q;
    sortSel.value = wanted.sort;
    orderSel.value = wanted.order || 'asc';
  }

  /** The listing's parameters as the controls show them (defaults left out, so URLs stay short). */
  function controls() {
    const q = new URLSearchParams();
    const put = (k, v) => v !== '' && v !== undefined && q.set(k, v);
    put('class', classSel.value || (classSel.options.length > 1 ? '' : wanted.class));
    put('minProb', minIn.value);
    put('maxProb', maxIn.value);
    if (statusSel.value !== 'all') put('status', statusSel.value);
    put('degenerate', degSel.value);
    put('q', search.value);
    put('sort', sortSel.value || (sortSel.options.length > 1 ? '' : wanted.sort));
    if (orderSel.value !== 'asc') put('order', orderSel.value);
    return q;
  }

  /** Apply the controls: the URL records them (and the page), then the grid follows. */
  function go(newOffset) {
    offset = newOffset;
    const { path, params } = currentLocation();
    const q = controls();
    if (offset > 0) q.set('offset', String(offset));
    if (params.get('image')) q.set('image', params.get('image'));
    setLocation(path, q);
    load();
  }

  // Only the latest request draws: an earlier, slower answer (the first page, before the filters
  // were applied) must not overwrite a newer one.
  let loads = 0;
  async function load() {
    const mine = ++loads;
    const q = controls();
    q.set('offset', String(offset));
    q.set('limit', String(PAGE));
    let page;
    try {
      page = await api(`/api/runs/${encodeURIComponent(runId)}/images?${q}`);
    } catch (err) {
      if (mine === loads) showError(err);
      return;
    }
    if (mine !== loads) return;
    grid.replaceChildren(...(page.items.length ? page.items.map(card) : [h('div', { class: 'empty', text: 'No image matches these filters.' })]));
    info.textContent = page.total ? `${offset + 1}–${Math.min(offset + page.items.length, page.total)} of ${fmt.int(page.total)}` : '0 images';
    grid.dataset.total = String(page.total);
    prev.disabled = offset === 0;
    next.disabled = offset + PAGE >= page.total;
  }

  function card(item) {
    const label = item.status === 'ok' ? (item.top1 && (item.top1.label || `class ${item.top1.index}`)) || '–' : 'failed';
    const thumb = item.urls.thumbnail
      ? h('img', { class: 'thumb', src: item.urls.thumbnail, alt: `Grad-CAM overlay of ${item.key}`, loading: 'lazy' })
      : h('div', { class: 'thumb placeholder', text: item.error || 'failed' });
    const sortName = sortSel.value;
    const sortValue = sortName && item.metrics && typeof item.metrics[sortName] === 'number' ? ` · ${sortSel.selectedOptions[0].textContent.split(' (')[0]} ${item.metrics[sortName].toFixed(3)}` : '';
    return h(
      'button',
      { class: 'card', type: 'button', 'data-key': item.key, 'data-status': item.status, onclick: () => showImage(runId, item.key) },
      thumb,
      h('div', { class: 'meta' }, h('span', { class: 'cls', text: label }), h('span', { class: 'prob', text: item.top1 ? `p = ${fmt.prob(item.top1.probability)}${item.degenerate ? ' · degenerate map' : ''}${sortValue}` : '' }), h('span', { class: 'key', title: item.key, text: item.key })),
    );
  }

  fromParams(initial);
  return {
    init: () => load(),
    /** Back/forward: reload only when the listing itself changed. */
    follow(params) {
      const before = `${listingOf(currentParamsOfControls())}|${offset}`;
      const after = `${listingOf(params)}|${Number(params.get('offset')) || 0}`;
      if (before === after) return;
      fromParams(params);
      offset = Number(params.get('offset')) || 0;
      load();
    },
    updateClasses(classes) {
      const current = classSel.value || wanted.class;
      classSel.replaceChildren(h('option', { value: '', text: 'All classes' }), ...classes.map((c) => h('option', { value: String(c.index), text: `${c.label || `class ${c.index}`} (${c.count})` })));
      classSel.value = current;
    },
  };

  function currentParamsOfControls() {
    return controls();
  }
}

// ---------- image detail ----------

/** Open an image from the gallery: a new history entry, so Back closes it and the link is shareable. */
function showImage(runId, key) {
  const { path, params } = currentLocation();
  params.set('image', key);
  setLocation(path, params, { push: true, state: { opened: key } });
  openImage(runId, key, params);
}

let detailToken = 0;
/** The image on screen and its neighbours in the gallery's order (for the arrow keys); null while one loads. */
let detailNav = null;
/** Steps asked for while an image loads (arrow keys held down), taken one by one as each arrives. */
let queuedSteps = 0;

async function openImage(runId, key, params) {
  const token = ++detailToken;
  detailNav = null;
  const body = document.getElementById('detail-body');
  document.getElementById('detail-title').textContent = key;
  const nav = document.getElementById('detail-nav');
  nav.replaceChildren();
  body.replaceChildren(h('div', { class: 'empty', text: 'Loading…' }));
  if (!dialog.open) dialog.showModal();
  const listing = listingOf(params);
  listing.set('key', key);
  let d;
  let pos;
  try {
    [d, pos] = await Promise.all([
      api(`/api/runs/${encodeURIComponent(runId)}/image?key=${encodeURIComponent(key)}`),
      api(`/api/runs/${encodeURIComponent(runId)}/images/position?${listing}`).catch(() => null),
    ]);
  } catch (err) {
    if (token === detailToken) body.replaceChildren(h('div', { class: 'empty error', text: err.message }));
    return;
  }
  if (token !== detailToken) return;
  detailNav = { runId, key, prev: pos && pos.prev, next: pos && pos.next };
  if (queuedSteps !== 0) {
    const dir = Math.sign(queuedSteps);
    queuedSteps -= dir;
    stepImage(dir);
    return;
  }
  nav.replaceChildren(
    h('button', { class: 'btn small', type: 'button', id: 'detail-prev', disabled: !detailNav.prev, title: 'Previous image (←)', onclick: () => stepImage(-1) }, '‹ Prev'),
    h('span', { class: 'muted small', id: 'detail-position', text: pos && pos.index !== null ? `${fmt.int(pos.index + 1)} of ${fmt.int(pos.total)}` : '' }),
    h('button', { class: 'btn small', type: 'button', id: 'detail-next', disabled: !detailNav.next, title: 'Next image (→)', onclick: () => stepImage(1) }, 'Next ›'),
  );
  const m = d.prediction;
  const figures = h(
    'div',
    { class: 'side-by-side' },
    d.urls.overlay ? h('figure', {}, h('img', { id: 'detail-overlay', src: d.urls.overlay, alt: 'Grad-CAM overlay' }), h('figcaption', { text: 'Grad-CAM overlay' })) : h('figure', {}, h('div', { class: 'empty error', text: d.line.error || 'no overlay' })),
    h('figure', {}, h('img', { id: 'detail-original', src: d.urls.original, alt: 'Original image' }), h('figcaption', { text: 'Original' })),
  );
  const colors = await colormapColors(d.colormap).catch(() => null);
  if (token !== detailToken) return;
  const preds = (m && m.predictions) || [];
  const top5 = h(
    'ol',
    { class: 'top5', id: 'detail-top5' },
    preds.slice(0, 5).map((p) => {
      const fill = h('span');
      fill.style.width = `${(p.probability * 100).toFixed(1)}%`;
      return h('li', {}, h('span', {}, h('strong', { text: p.label || `class ${p.index}` }), h('span', { class: 'muted small', text: `  #${p.index}${p.wnid ? ` · ${p.wnid}` : ''}` })), h('span', { class: 'p', text: fmt.prob(p.probability) }), h('div', { class: 'bar' }, fill));
    }),
  );
  const target = m && m.targets && m.targets[0];
  let cam = h('div', { class: 'muted', text: 'No CAM recorded.' });
  if (target && colors) {
    const rows = [];
    for (let y = 0; y < target.gridHeight; y++) {
      const tr = h('tr');
      for (let x = 0; x < target.gridWidth; x++) {
        const v = target.grid[y * target.gridWidth + x];
        const td = h('td', { title: `(${y}, ${x}) = ${v.toFixed(4)}` });
        td.style.background = colorOf(colors, v);
        tr.append(td);
      }
      rows.push(tr);
    }
    cam = h(
      'div',
      {},
      h('table', { class: 'cam', id: 'detail-cam', 'aria-label': `Raw ${target.gridHeight}x${target.gridWidth} CAM grid` }, h('tbody', {}, rows)),
      h('div', { class: 'muted small', text: `${target.gridHeight}×${target.gridWidth} grid for ${target.label || `class ${target.classIndex}`} · raw max ${target.rawMax.toPrecision(3)} · raw mean ${target.rawMean.toPrecision(3)}${target.degenerate ? ` · degenerate: ${target.degenerate}` : ''}` }),
    );
  }
  const kv = h('dl', { class: 'kv' });
  const addKv = (k, v) => v !== undefined && v !== null && v !== '' && kv.append(h('dt', { text: k }), h('dd', { text: String(v) }));
  addKv('Status', d.line.status);
  addKv('Error', d.line.error);
  if (d.line.truth) addKv('Truth', `${d.line.truth.label}${d.line.truth.index === null ? ' (matches no model class)' : ` (#${d.line.truth.index})`}${d.line.truth.boxes ? `, ${d.line.truth.boxes} box${d.line.truth.boxes > 1 ? 'es' : ''}` : ''}`);
  if (m) {
    addKv('Source', m.source.uri);
    addKv('Size', `${m.source.width}×${m.source.height} ${m.source.format}`);
    addKv('Model', `${m.provenance.modelName} (${m.provenance.weightsHash.slice(0, 12)})`);
    addKv('CAM', `${m.provenance.method} on ${m.provenance.layer}, score ${m.provenance.score}`);
    addKv('Engine', `${m.provenance.engine}/${m.provenance.backend} on ${m.provenance.device}`);
    addKv('Worker', m.run && m.run.workerId);
  }
  body.replaceChildren(
    figures,
    colors ? legend(colors, d.colormap) : '',
    downloads(d),
    h(
      'div',
      { class: 'detail-grid' },
      h('div', {}, h('h2', { text: 'Top-5 predictions' }), preds.length ? top5 : h('div', { class: 'muted', text: 'No predictions (the image failed).' }), h('h2', { class: 'spaced', text: 'Details' }), kv, await metricsList(d.line.metrics)),
      h('div', {}, h('h2', { text: 'Raw CAM grid' }), cam),
    ),
  );
}

/** The colour bar: what the overlay's and the grid's colours mean. */
function legend(colors, name) {
  const canvas = h('canvas', { width: 256, height: 1, class: 'legend-bar', 'aria-hidden': 'true' });
  const ctx = canvas.getContext('2d');
  colors.forEach((c, i) => {
    ctx.fillStyle = c;
    ctx.fillRect(i, 0, 1, 1);
  });
  return h(
    'div',
    { class: 'legend', id: 'detail-legend', 'data-colormap': name || 'viridis', role: 'img', 'aria-label': `Colour scale (${name || 'viridis'}): low relevance to high relevance` },
    h('span', { class: 'legend-title', text: `Grad-CAM relevance (${name || 'viridis'}), normalised per image` }),
    canvas,
    h('div', { class: 'legend-ticks' }, h('span', { text: '0 · low' }), h('span', { text: '0.5' }), h('span', { text: '1 · high' })),
  );
}

/** Download links for the image's outputs, named after the stored objects. */
function downloads(d) {
  const name = (uri, fallback) => (uri ? decodeURIComponent(String(uri).split('/').pop()) : fallback);
  const base = d.line.key.split('/').pop();
  const outputs = d.line.outputs || {};
  const links = [
    ['overlay', d.urls.overlay, name(outputs.overlay, `${base}.overlay.jpg`), 'Overlay'],
    ['heatmap', d.urls.heatmap, name(outputs.heatmap, `${base}.heatmap.png`), 'Heatmap PNG'],
    ['prediction', d.urls.prediction, name(outputs.prediction, `${base}.json`), 'Prediction JSON'],
  ].filter(([, url]) => url);
  if (!links.length) return '';
  return h('div', { class: 'downloads', id: 'detail-downloads' }, h('span', { class: 'muted small', text: 'Download:' }), ...links.map(([role, url, file, text]) => h('a', { class: 'btn small', id: `download-${role}`, href: url, download: file, text })));
}

/** The image's audit metrics, labelled from the server's metric table. */
async function metricsList(metrics) {
  if (!metrics) return '';
  const v = await vocabulary().catch(() => ({ metrics: [] }));
  const dl = h('dl', { class: 'kv', id: 'detail-metrics' });
  for (const c of v.metrics) {
    const x = metrics[c.name];
    if (x === undefined || x === null) continue;
    dl.append(h('dt', { text: c.label }), h('dd', { 'data-metric': c.name, text: typeof x === 'number' ? (c.kind === 'integer' ? String(x) : x.toFixed(3)) : String(x) }));
  }
  return dl.children.length ? h('div', {}, h('h2', { class: 'spaced', text: 'Audit metrics' }), dl) : '';
}

/** Previous (-1) or next (+1) image in the gallery's order; the URL follows. */
function stepImage(dir) {
  if (detailNav === null) {
    if (dialog.open) queuedSteps += dir;
    return;
  }
  const n = detailNav;
  const key = n && (dir < 0 ? n.prev : n.next);
  if (!key) return;
  const { path, params } = currentLocation();
  params.set('image', key);
  setLocation(path, params, { state: history.state });
  openImage(n.runId, key, params);
}

document.getElementById('detail-close').addEventListener('click', () => dialog.close());
dialog.addEventListener('click', (e) => e.target === dialog && dialog.close());
// The arrow keys page through the listing while the detail is open, wherever the focus is (the
// previous/next buttons are replaced on every step, and a removed button takes the focus with it).
document.addEventListener('keydown', (e) => {
  if (!dialog.open || e.altKey || e.ctrlKey || e.metaKey) return;
  if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') {
    e.preventDefault();
    stepImage(e.key === 'ArrowLeft' ? -1 : 1);
  }
});
// Closing the detail takes the image out of the URL: back to the entry that opened it, if any.
// (A page change closes it too; by the time the event arrives a new image may be open.)
dialog.addEventListener('close', () => {
  if (dialog.open) return;
  detailToken++;
  detailNav = null;
  queuedSteps = 0;
  const { path, params } = currentLocation();
  if (!params.get('image')) return;
  if (history.state && history.state.opened) history.back();
  else {
    params.delete('image');
    setLocation(path, params);
  }
});

// ---------- errors and routing ----------

function showError(err) {
  const box = h('div', { class: 'panel error', role: 'alert', text: `Error: ${err.message}` });
  app.prepend(box);
  setTimeout(() => box.remove(), 8000);
}

/** The page on screen: its path, and how it follows a new query of the same path. */
let currentPage = null;
/** The fragment last routed (or set by the page itself), so one navigation is handled once. */
let routed = null;

function route() {
  const url = location.hash || '#/';
  if (url === routed) return;
  routed = url;
  const { path, params } = currentLocation();
  if (currentPage && currentPage.path === path && currentPage.follow) {
    currentPage.follow(params);
    return;
  }
  if (dialog.open) dialog.close();
  livePage = null;
  let follow = null;
  const run = /^\/runs\/([^/]+)(\/audit)?$/.exec(path);
  if (run && run[2]) follow = auditPage(decodeURIComponent(run[1]), params);
  else if (run) follow = runPage(decodeURIComponent(run[1]), params);
  else if (path.startsWith('/compare')) follow = comparePage(params);
  else if (path.startsWith('/workers')) workersPage();
  else runsPage();
  currentPage = { path, follow };
}

// Fragment links fire both events; `routed` makes the second a no-op.
window.addEventListener('hashchange', route);
window.addEventListener('popstate', route);
route();
