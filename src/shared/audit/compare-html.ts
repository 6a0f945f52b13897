/**
 * `compare.html`: a run comparison as one offline page, drawn with the report's styles: the
 * classes whose attention moved most, with both mean maps side by side, and the images that changed
 * most, linked to their overlays in each run.
 */
import type { CompareReport, ImageChange } from './compare.js';
import { atlasSvg, escapeHtml, REPORT_CSS } from './report-html.js';
import type { ClassRef } from './types.js';

function name(c: ClassRef | undefined): string {
  return c === undefined ? '–' : c.label !== undefined ? `${c.label} (#${c.index})` : `#${c.index}`;
}

function num(x: number | null | undefined, digits = 3): string {
  return x === null || x === undefined ? '–' : x.toFixed(digits);
}

function imageRow(i: ImageChange): string {
  const link = (uri: string | undefined, text: string) => (uri === undefined ? text : `<a href="${escapeHtml(uri)}">${text}</a>`);
  return `<tr><td><code>${escapeHtml(i.key)}</code></td><td>${link(i.a.overlay, escapeHtml(name(i.a.top1)))} ${num(i.a.top1Prob)}</td><td>${link(i.b.overlay, escapeHtml(name(i.b.top1)))} ${num(i.b.top1Prob)}</td><td class="num">${num(i.rankCorrelation)}</td><td class="num">${num(i.topIou)}</td><td class="num">${num(i.change)}</td></tr>`;
}

export function renderCompareHtml(r: CompareReport): string {
  const size = r.atlasSize;
  const classes = r.classes
    .map((c) => {
      const metrics = Object.entries(c.metrics)
        .map(([k, v]) => `${escapeHtml(k)} ${num(v.a)} → ${num(v.b)}`)
        .join(' · ');
      return `<tr><td><b>${escapeHtml(name(c.class))}</b><br><span class="muted small">${c.images} images · same top-1 ${(c.agreement * 100).toFixed(1)}%</span></td><td>${c.atlasA ? atlasSvg(c.atlasA, size, 72) : ''}</td><td>${c.atlasB ? atlasSvg(c.atlasB, size, 72) : ''}</td><td class="num">${num(c.movement)}</td><td class="num">${num(c.rankCorrelation)}</td><td class="num">${num(c.topIou)}</td><td class="small">${metrics}</td></tr>`;
    })
    .join('');
  const s = r.similarity;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline'">
<title>Compare ${escapeHtml(r.runs.a)} and ${escapeHtml(r.runs.b)}</title><style>${REPORT_CSS}</style></head><body>
<h1>Run <code>${escapeHtml(r.runs.a)}</code> (A) against <code>${escapeHtml(r.runs.b)}</code> (B)</h1>
<p class="muted">${r.counts.both} images in both runs (${r.counts.onlyA} only in A, ${r.counts.onlyB} only in B) · same top-1 class: <b>${r.agreement === null ? '–' : `${(r.agreement * 100).toFixed(1)}%`}</b> · map rank correlation mean ${num(s.rankCorrelation.mean)} (median ${num(s.rankCorrelation.quantiles?.p50)}) · top-20% IoU mean ${num(s.topIou.mean)} · written ${escapeHtml(r.createdAt)}</p>
<h2>Classes, most moved attention first</h2>
<table><thead><tr><th>class</th><th>mean map A</th><th>mean map B</th><th>moved (1 − ρ)</th><th>ρ</th><th>top-20% IoU</th><th>class means A → B</th></tr></thead><tbody>${classes}</tbody></table>
<h2>Images that changed most</h2>
<table><thead><tr><th>key</th><th>A: top-1</th><th>B: top-1</th><th>ρ</th><th>IoU</th><th>change</th></tr></thead><tbody>${r.images.map(imageRow).join('')}</tbody></table>
</body></html>
`;
}
