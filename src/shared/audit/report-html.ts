/**
 * `report.html`: the audit as one self-contained page (inline CSS and SVG, thumbnails as data
 * URIs, no script, no external request), so it opens offline from S3 or from disk. Links to the full
 * overlays and predictions are relative to the run's output prefix, so they work wherever the
 * output folder is copied.
 */
import { VIRIDIS_RGB } from '../colormap-tables.js';
import type { HistogramSnapshot } from './histogram.js';
import { METRIC_COLUMNS } from './metric-table.js';
import { FLAG_KINDS, type AuditFlag, type AuditReport, type ClassRef, type ClassReport, type FlagKind } from './types.js';

export interface ReportOptions {
  /** The run's output prefix (`s3://bucket/prefix/`): output URIs under it become relative links. */
  outputUri?: string;
  /** Image key → thumbnail data URI (`data:image/jpeg;base64,…`) for flagged images. */
  thumbnails?: ReadonlyMap<string, string>;
  /** Extra lines for the header, e.g. the model and method. */
  about?: Record<string, string>;
  /** Confusion matrices with more classes are listed as their largest off-diagonal cells. Default 30. */
  maxMatrixClasses?: number;
}

const KIND_TITLES: Record<FlagKind, string> = {
  'corner-shortcut': 'Corner shortcuts',
  'border-shortcut': 'Border shortcuts',
  'background-shortcut': 'Background shortcuts',
  'right-for-wrong-reasons': 'Right for the wrong reasons',
  'label-suspect': 'Label suspects',
  'out-of-distribution': 'Out of distribution',
  'degenerate-map': 'Degenerate maps',
};

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

function className(c: ClassRef): string {
  return c.label !== undefined ? `${c.label} (#${c.index})` : `#${c.index}`;
}

/** An output URI as a link from report.html, relative when it lies under the output prefix. */
export function relativeHref(uri: string, outputUri: string | undefined): string {
  if (outputUri !== undefined) {
    const base = outputUri.endsWith('/') ? outputUri : `${outputUri}/`;
    if (uri.startsWith(base)) return uri.slice(base.length).split('/').map(encodeURIComponent).join('/');
  }
  return uri;
}

function viridis(v: number): string {
  const i = Math.max(0, Math.min(255, Math.round(v * 255))) * 3;
  return `rgb(${VIRIDIS_RGB[i]},${VIRIDIS_RGB[i + 1]},${VIRIDIS_RGB[i + 2]})`;
}

/** A square heatmap of `size x size` values in [0, 1] as SVG rects. */
export function atlasSvg(values: readonly number[], size: number, px = 96): string {
  const cell = px / size;
  let max = 0;
  for (const v of values) max = Math.max(max, v);
  const scale = max > 0 ? 1 / max : 0;
  const rects = values.map((v, i) => `<rect x="${((i % size) * cell).toFixed(2)}" y="${(Math.floor(i / size) * cell).toFixed(2)}" width="${(cell + 0.05).toFixed(2)}" height="${(cell + 0.05).toFixed(2)}" fill="${viridis(v * scale)}"/>`);
  return `<svg class="atlas" width="${px}" height="${px}" viewBox="0 0 ${px} ${px}" role="img" aria-label="mean map">${rects.join('')}</svg>`;
}

function histogramSvg(h: HistogramSnapshot, w = 220, height = 60): string {
  const max = Math.max(1, ...h.counts);
  const bw = w / h.counts.length;
  const bars = h.counts.map((c, i) => {
    const bh = (c / max) * (height - 12);
    return `<rect x="${(i * bw).toFixed(1)}" y="${(height - 12 - bh).toFixed(1)}" width="${(bw - 1).toFixed(1)}" height="${bh.toFixed(1)}"><title>${fmt(h.lo + ((h.hi - h.lo) * i) / h.counts.length)}–${fmt(h.lo + ((h.hi - h.lo) * (i + 1)) / h.counts.length)}: ${c}</title></rect>`;
  });
  return `<svg class="hist" width="${w}" height="${height}" viewBox="0 0 ${w} ${height}">${bars.join('')}<text x="0" y="${height - 1}">${fmt(h.lo)}</text><text x="${w}" y="${height - 1}" text-anchor="end">${fmt(h.hi)}</text></svg>`;
}

function fmt(x: number | null | undefined, digits = 3): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '–';
  return Number.isInteger(x) ? String(x) : x.toFixed(digits);
}

function pct(x: number | null | undefined): string {
  return x === null || x === undefined ? '–' : `${(x * 100).toFixed(1)}%`;
}

function evidenceText(e: AuditFlag['evidence'] | AuditFlag['threshold']): string {
  return Object.entries(e)
    .map(([k, v]) => `${escapeHtml(k)} ${escapeHtml(typeof v === 'number' ? fmt(v) : String(v))}`)
    .join(' · ');
}

function flagRow(f: AuditFlag, o: ReportOptions): string {
  const s = f.subject;
  let who: string;
  let thumb = '';
  if (s.type === 'class') who = `class <b>${escapeHtml(className(s.class))}</b> <span class="muted">(${s.role})</span>`;
  else {
    const href = s.overlay !== undefined ? relativeHref(s.overlay, o.outputUri) : undefined;
    const img = o.thumbnails?.get(s.key);
    thumb = img !== undefined ? `<img src="${escapeHtml(img)}" alt="" width="72">` : '<span class="nothumb"></span>';
    if (href !== undefined) thumb = `<a href="${escapeHtml(href)}">${thumb}</a>`;
    const pred = s.prediction !== undefined ? ` <a class="muted" href="${escapeHtml(relativeHref(s.prediction, o.outputUri))}">json</a>` : '';
    who = `<code>${escapeHtml(s.key)}</code>${pred}<br><span class="muted">predicted ${s.predicted ? escapeHtml(className(s.predicted)) : '–'}${s.truth ? `, labelled ${escapeHtml(className(s.truth))}` : ''}</span>`;
  }
  return `<tr><td class="num">${fmt(f.severity)}</td><td class="thumb">${thumb}</td><td>${who}<div>${escapeHtml(f.message)}</div><div class="muted small">evidence: ${evidenceText(f.evidence)}${Object.keys(f.threshold).length > 0 ? `<br>threshold: ${evidenceText(f.threshold)}` : ''}</div></td></tr>`;
}

function flagsSection(a: AuditReport, o: ReportOptions): string {
  const parts: string[] = [];
  for (const kind of FLAG_KINDS) {
    const list = a.flags.filter((f) => f.kind === kind);
    const total = a.flagCounts[kind];
    if (total === 0) continue;
    const more = total > list.length ? ` <span class="muted">(the ${list.length} most severe of ${total})</span>` : '';
    parts.push(`<h3 id="flags-${kind}">${KIND_TITLES[kind]}: ${total}${more}</h3><table class="flags"><thead><tr><th>severity</th><th></th><th>subject</th></tr></thead><tbody>${list.map((f) => flagRow(f, o)).join('')}</tbody></table>`);
  }
  if (parts.length === 0) return '<p class="ok">No flags: no class stands out by its border, corners or background, and no image is a label suspect, out of distribution, right for the wrong reasons or degenerate.</p>';
  return parts.join('');
}

function classCard(c: ClassReport, size: number): string {
  const m = c.metrics;
  const corners = ['cornerTopLeft', 'cornerTopRight', 'cornerBottomLeft', 'cornerBottomRight'].map((k) => m[k]?.mean ?? 0);
  return `<figure class="card">${c.atlas ? atlasSvg(c.atlas, size) : '<div class="noatlas">no maps</div>'}<figcaption><b>${escapeHtml(className(c.class))}</b><br>${c.count} images${c.accuracy !== null ? ` · accuracy ${pct(c.accuracy)}` : ''}<br><span class="muted small">border ${pct(m.borderShare?.mean)} · max corner ${pct(Math.max(...corners))}${m.boxEnergy ? ` · in boxes ${pct(m.boxEnergy.mean)}` : ''}</span></figcaption></figure>`;
}

function confusionSection(a: AuditReport, o: ReportOptions): string {
  const conf = a.confusion;
  if (conf === null) return '<p class="muted">No ground truth was given for this run (enqueue --truth or --truth-from-path).</p>';
  const max = o.maxMatrixClasses ?? 30;
  const cells = new Map(conf.cells.map(([t, p, n]) => [`${t},${p}`, n]));
  if (conf.classes.length > max) {
    const off = conf.cells.filter(([t, p]) => t !== p).sort((x, y) => y[2] - x[2]).slice(0, 50);
    const name = new Map(conf.classes.map((c) => [c.index, className(c)]));
    return `<p>${conf.classes.length} classes: the 50 most frequent confusions.</p><table><thead><tr><th>labelled</th><th>predicted</th><th>images</th></tr></thead><tbody>${off.map(([t, p, n]) => `<tr><td>${escapeHtml(name.get(t) ?? `#${t}`)}</td><td>${escapeHtml(name.get(p) ?? `#${p}`)}</td><td class="num">${n}</td></tr>`).join('')}</tbody></table>`;
  }
  const rowMax = Math.max(1, ...conf.cells.map((c) => c[2]));
  const head = conf.classes.map((c) => `<th class="rot"><span>${escapeHtml(className(c))}</span></th>`).join('');
  const rows = conf.classes
    .map((t) => {
      const tds = conf.classes.map((p) => {
        const n = cells.get(`${t.index},${p.index}`) ?? 0;
        const alpha = n === 0 ? 0 : 0.15 + 0.85 * (n / rowMax);
        const cls = t.index === p.index ? 'diag' : n > 0 ? 'off' : '';
        return `<td class="num ${cls}" style="--a:${alpha.toFixed(3)}">${n || ''}</td>`;
      });
      return `<tr><th>${escapeHtml(className(t))}</th>${tds.join('')}</tr>`;
    })
    .join('');
  return `<table class="confusion"><thead><tr><th>labelled ↓ / predicted →</th>${head}</tr></thead><tbody>${rows}</tbody></table>`;
}

function histogramsSection(a: AuditReport): string {
  const items = METRIC_COLUMNS.filter((c) => a.histograms[c.name] !== undefined).map((c) => {
    const s = a.metrics[c.name];
    // Quantiles of a yes/no rate say nothing its mean does not.
    const q = c.kind === 'rate' ? null : s?.quantiles;
    return `<figure class="histfig"><figcaption><b>${escapeHtml(c.label)}</b> <code>${c.name}</code><br><span class="muted small">n ${s?.n ?? 0} · mean ${fmt(s?.mean)}${q ? ` · median ${fmt(q.p50)} · p05–p95 ${fmt(q.p05)}–${fmt(q.p95)}` : ''}</span></figcaption>${histogramSvg(a.histograms[c.name] as HistogramSnapshot)}</figure>`;
  });
  return `<div class="grid">${items.join('')}</div>`;
}

export const REPORT_CSS = `
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:16px 24px;color:#1d1d1f;background:#fafafa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
.muted{color:#666}.small{font-size:12px}.ok{background:#e8f5e9;padding:8px 12px;border-radius:6px}
table{border-collapse:collapse;background:#fff}td,th{padding:4px 8px;border:1px solid #e3e3e3;vertical-align:top;text-align:left}.num{text-align:right;font-variant-numeric:tabular-nums}
.flags td.thumb{width:76px}.flags img{display:block;border-radius:3px}.nothumb{display:inline-block;width:72px;height:48px;background:#eee}
.grid{display:flex;flex-wrap:wrap;gap:12px}.card{margin:0;background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:8px;width:200px}.card svg{display:block;margin-bottom:4px}
.noatlas{width:96px;height:96px;background:#eee}.histfig{margin:0;background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:8px}
.hist rect{fill:#3b528b}.hist text{font-size:10px;fill:#666}
.confusion td{min-width:28px;background:rgba(59,82,139,var(--a))}.confusion td.off{background:rgba(200,60,60,var(--a))}.rot{height:110px;white-space:nowrap;vertical-align:bottom}.rot span{display:inline-block;transform:rotate(-60deg);transform-origin:left bottom;width:24px}
nav a{margin-right:12px}code{font-size:12px}
`;

export function renderReportHtml(a: AuditReport, o: ReportOptions = {}): string {
  const c = a.counts;
  const flagTotal = Object.values(a.flagCounts).reduce((s, n) => s + n, 0);
  const about = Object.entries(o.about ?? {})
    .map(([k, v]) => `<span>${escapeHtml(k)}: <b>${escapeHtml(v)}</b></span>`)
    .join(' · ');
  const unmatched = a.unmatchedLabels.length > 0 ? `<h3>Truth labels that match no model class</h3><p>${a.unmatchedLabels.map((u) => `<code>${escapeHtml(u.label)}</code> ×${u.count}`).join(', ')}${a.unmatchedLabelsTruncated > 0 ? ` and ${a.unmatchedLabelsTruncated} more images with other labels` : ''}</p>` : '';
  const trueAtlas = a.classes.true.length > 0 ? `<h3>By true class</h3><div class="grid">${a.classes.true.map((k) => classCard(k, a.atlasSize)).join('')}</div>` : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline'">
<title>Audit of ${escapeHtml(a.runId)}</title><style>${REPORT_CSS}</style></head>
<body>
<h1>Audit of run <code>${escapeHtml(a.runId)}</code></h1>
<p class="muted">${about}${about ? '<br>' : ''}${c.images} images (${c.ok} explained, ${c.failed} failed) · ${c.withTruth} with ground truth (${c.matchedTruth} matched a class, ${c.withBoxes} with boxes) · ${c.degenerate} degenerate maps · <b>${flagTotal} flags</b> · written ${escapeHtml(a.createdAt)}</p>
<nav><a href="#flags">Flags</a><a href="#atlas">Class atlas</a><a href="#confusion">Confusion matrix</a><a href="#metrics">Metrics</a></nav>
<h2 id="flags">Flags</h2>${flagsSection(a, o)}
<h2 id="atlas">Class atlas</h2><p class="muted">Mean normalised map per class, in image coordinates (${a.atlasSize}×${a.atlasSize} grid): where the model looks when it predicts that class.</p>
<div class="grid">${a.atlas ? `<figure class="card">${atlasSvg(a.atlas, a.atlasSize)}<figcaption><b>whole run</b><br>${c.withMetrics} images</figcaption></figure>` : ''}${a.classes.predicted.map((k) => classCard(k, a.atlasSize)).join('')}</div>
${trueAtlas}
<h2 id="confusion">Confusion matrix</h2>${confusionSection(a, o)}${unmatched}
<h2 id="metrics">Metrics</h2><p class="muted">Definitions: docs/audit-metrics.md in gradcam-audit.</p>${histogramsSection(a)}
</body></html>
`;
}
