// gradcam-audit dashboard front end: plain browser JavaScript, no build step.
// Pages are chosen by the URL fragment (#/, #/runs/ID, #/workers). Live numbers arrive over
// server-sent events (/api/events). Every piece of data is inserted with textContent, never as
// HTML, because keys and labels come from arbitrary buckets.
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

function runPage(runId) {
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
        h('div', {}, h('div', { class: 'muted small' }, h('a', { href: '#/', text: 'Runs' }), ' / ', run.id), h('h1', {}, `Run ${run.id} `, badge(run.state)), h('div', { class: 'muted mono', text: `${run.source}  →  ${run.output}` })),
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

  const gallery = makeGallery(galleryPanel, runId);
  livePage = { run: render };
  connectLive(runId);
  api(`/api/runs/${encodeURIComponent(runId)}`).then(render, (err) => {
    // An unknown or malformed run id: say so instead of leaving empty panels behind.
    if (live) live.close();
    livePage = null;
    app.replaceChildren(h('div', { class: 'panel empty', id: 'run-missing' }, h('h2', { text: `Run ${runId} is not available` }), h('p', { class: 'muted', text: err.message }), h('a', { class: 'btn', href: '#/', text: 'Back to runs' })));
  });
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

function makeGallery(panel, runId) {
  const PAGE = 24;
  let offset = 0;
  const classSel = h('select', { id: 'filter-class' }, h('option', { value: '', text: 'All classes' }));
  const minIn = h('input', { id: 'filter-min', type: 'number', min: 0, max: 1, step: 0.05, placeholder: '0' });
  const maxIn = h('input', { id: 'filter-max', type: 'number', min: 0, max: 1, step: 0.05, placeholder: '1' });
  const statusSel = h('select', { id: 'filter-status' }, h('option', { value: 'all', text: 'All' }), h('option', { value: 'ok', text: 'OK' }), h('option', { value: 'failed', text: 'Failed' }));
  const degSel = h('select', { id: 'filter-degenerate' }, h('option', { value: '', text: 'Any' }), h('option', { value: 'true', text: 'Degenerate only' }), h('option', { value: 'false', text: 'Non-degenerate' }));
  const search = h('input', { id: 'filter-key', type: 'search', placeholder: 'key contains…' });
  const grid = h('div', { class: 'gallery', id: 'gallery' });
  const info = h('span', { class: 'muted small', id: 'gallery-info' });
  const prev = h('button', { class: 'btn small', type: 'button', onclick: () => load(Math.max(0, offset - PAGE)) }, '‹ Prev');
  const next = h('button', { class: 'btn small', type: 'button', onclick: () => load(offset + PAGE) }, 'Next ›');
  const apply = h('button', { class: 'btn primary', id: 'filter-apply', type: 'submit' }, 'Apply');
  const form = h(
    'form',
    { class: 'filters', id: 'gallery-filters', onsubmit: (e) => (e.preventDefault(), load(0)) },
    h('label', {}, 'Class', classSel),
    h('label', {}, 'Min prob.', minIn),
    h('label', {}, 'Max prob.', maxIn),
    h('label', {}, 'Status', statusSel),
    h('label', {}, 'CAM', degSel),
    h('label', {}, 'Key', search),
    apply,
  );
  panel.replaceChildren(h('div', { class: 'page-head' }, h('h2', { text: 'Gallery' }), h('button', { class: 'btn small', type: 'button', onclick: () => load(offset) }, 'Refresh')), form, grid, h('div', { class: 'pager' }, info, prev, next));

  async function load(newOffset) {
    offset = newOffset;
    const q = new URLSearchParams({ offset: String(offset), limit: String(PAGE), status: statusSel.value });
    if (classSel.value !== '') q.set('class', classSel.value);
    if (minIn.value !== '') q.set('minProb', minIn.value);
    if (maxIn.value !== '') q.set('maxProb', maxIn.value);
    if (degSel.value !== '') q.set('degenerate', degSel.value);
    if (search.value) q.set('q', search.value);
    let page;
    try {
      page = await api(`/api/runs/${encodeURIComponent(runId)}/images?${q}`);
    } catch (err) {
      showError(err);
      return;
    }
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
    return h(
      'button',
      { class: 'card', type: 'button', 'data-key': item.key, 'data-status': item.status, onclick: () => openImage(runId, item.key) },
      thumb,
      h('div', { class: 'meta' }, h('span', { class: 'cls', text: label }), h('span', { class: 'prob', text: item.top1 ? `p = ${fmt.prob(item.top1.probability)}${item.degenerate ? ' · degenerate map' : ''}` : '' }), h('span', { class: 'key', title: item.key, text: item.key })),
    );
  }

  return {
    init: () => load(0),
    updateClasses(classes) {
      const current = classSel.value;
      classSel.replaceChildren(h('option', { value: '', text: 'All classes' }), ...classes.map((c) => h('option', { value: String(c.index), text: `${c.label || `class ${c.index}`} (${c.count})` })));
      classSel.value = current;
    },
  };
}

// ---------- image detail ----------

const VIRIDIS = [
  [68, 1, 84],
  [59, 82, 139],
  [33, 145, 140],
  [94, 201, 98],
  [253, 231, 37],
];
function viridis(v) {
  const x = Math.min(1, Math.max(0, v)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const c = VIRIDIS[i].map((a, k) => Math.round(a + (VIRIDIS[i + 1][k] - a) * f));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

async function openImage(runId, key) {
  const body = document.getElementById('detail-body');
  document.getElementById('detail-title').textContent = key;
  body.replaceChildren(h('div', { class: 'empty', text: 'Loading…' }));
  if (!dialog.open) dialog.showModal();
  let d;
  try {
    d = await api(`/api/runs/${encodeURIComponent(runId)}/image?key=${encodeURIComponent(key)}`);
  } catch (err) {
    body.replaceChildren(h('div', { class: 'empty error', text: err.message }));
    return;
  }
  const m = d.prediction;
  const figures = h(
    'div',
    { class: 'side-by-side' },
    d.urls.overlay ? h('figure', {}, h('img', { id: 'detail-overlay', src: d.urls.overlay, alt: 'Grad-CAM overlay' }), h('figcaption', { text: 'Grad-CAM overlay' })) : h('figure', {}, h('div', { class: 'empty error', text: d.line.error || 'no overlay' })),
    h('figure', {}, h('img', { id: 'detail-original', src: d.urls.original, alt: 'Original image' }), h('figcaption', { text: 'Original' })),
  );
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
  if (target) {
    const rows = [];
    for (let y = 0; y < target.gridHeight; y++) {
      const tr = h('tr');
      for (let x = 0; x < target.gridWidth; x++) {
        const v = target.grid[y * target.gridWidth + x];
        const td = h('td', { title: `(${y}, ${x}) = ${v.toFixed(4)}` });
        td.style.background = viridis(v);
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
    h('div', { class: 'detail-grid' }, h('div', {}, h('h2', { text: 'Top-5 predictions' }), preds.length ? top5 : h('div', { class: 'muted', text: 'No predictions (the image failed).' }), h('h2', { class: 'spaced', text: 'Details' }), kv), h('div', {}, h('h2', { text: 'Raw CAM grid' }), cam)),
  );
}

document.getElementById('detail-close').addEventListener('click', () => dialog.close());
dialog.addEventListener('click', (e) => e.target === dialog && dialog.close());

// ---------- errors and routing ----------

function showError(err) {
  const box = h('div', { class: 'panel error', role: 'alert', text: `Error: ${err.message}` });
  app.prepend(box);
  setTimeout(() => box.remove(), 8000);
}

function route() {
  if (dialog.open) dialog.close();
  livePage = null;
  const hash = location.hash || '#/';
  const run = /^#\/runs\/([^/?]+)/.exec(hash);
  if (run) runPage(decodeURIComponent(run[1]));
  else if (hash.startsWith('#/workers')) workersPage();
  else runsPage();
}

window.addEventListener('hashchange', route);
route();
