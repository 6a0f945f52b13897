/**
 * Ground-truth files, row by row, with the line each row came from:
 * - CSV: `key,label[,x0,y0,x1,y1]`, one row per box (RFC 4180 quoting, so keys may hold commas,
 *   quotes or line breaks); an optional header row `key,label,...`;
 * - JSONL: `{"key": ..., "label": ..., "boxes": [[x0,y0,x1,y1], ...]}` per line;
 * - COCO JSON: `images` (id, file_name), `categories` (id, name), `annotations` (image_id,
 *   category_id, bbox [x, y, w, h]); an image's label is the category of its annotations.
 * Every malformed row is a `TruthFileError` naming the file and line.
 */
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { ConfigError } from '../../shared/errors.js';

export const TRUTH_FORMATS = ['csv', 'jsonl', 'coco'] as const;
export type TruthFormat = (typeof TRUTH_FORMATS)[number];

/** A box in image pixels, [x0, y0, x1, y1) after EXIF orientation. */
export type TruthBox = [number, number, number, number];

export interface TruthRow {
  key: string;
  label: string;
  boxes: TruthBox[];
  /** 1-based line in the file (for COCO, the line where the image's entry starts is not known: 0). */
  line: number;
}

/** A truth file is wrong: the message names the file and line, and nothing has been queued. */
export class TruthFileError extends ConfigError {
  constructor(file: string, line: number, message: string) {
    super('--truth', `${file}${line > 0 ? `:${line}` : ''}: ${message}`);
  }
}

/** The format from a file name: .csv, .jsonl/.ndjson, .json (COCO). */
export function formatFromName(name: string): TruthFormat | null {
  const lower = name.toLowerCase().replace(/\.gz$/, '');
  if (lower.endsWith('.csv')) return 'csv';
  if (lower.endsWith('.jsonl') || lower.endsWith('.ndjson')) return 'jsonl';
  if (lower.endsWith('.json')) return 'coco';
  return null;
}

export function parseBox(raw: unknown, file: string, line: number, what = 'box'): TruthBox {
  if (!Array.isArray(raw) || raw.length !== 4) throw new TruthFileError(file, line, `${what} must be 4 numbers [x0, y0, x1, y1], got ${JSON.stringify(raw)}`);
  const v = raw.map((x) => (typeof x === 'string' && x.trim() !== '' ? Number(x) : x));
  if (!v.every((x): x is number => typeof x === 'number' && Number.isFinite(x))) throw new TruthFileError(file, line, `${what} must be 4 finite numbers, got ${JSON.stringify(raw)}`);
  const [x0, y0, x1, y1] = v;
  if (x0 < 0 || y0 < 0) throw new TruthFileError(file, line, `${what} [${v.join(', ')}] starts left of or above the image (x0 and y0 must be ≥ 0)`);
  if (!(x1 > x0 && y1 > y0)) throw new TruthFileError(file, line, `${what} [${v.join(', ')}] is empty: need x1 > x0 and y1 > y0 (corners, not x, y, width, height)`);
  return [x0, y0, x1, y1];
}

function requireText(value: unknown, field: string, file: string, line: number): string {
  if (typeof value !== 'string' || value.trim() === '') throw new TruthFileError(file, line, `${field} must be a non-empty string, got ${JSON.stringify(value)}`);
  if (field === 'key') return value; // S3 keys may hold any character
  if (/[\u0000-\u001f]/.test(value)) throw new TruthFileError(file, line, `${field} holds control characters: ${JSON.stringify(value)}`);
  return value.trim();
}

/** RFC 4180 records from lines: a quoted field may span lines, `""` is a quote. */
async function* csvRecords(lines: AsyncIterable<string>, file: string): AsyncGenerator<{ fields: string[]; line: number }> {
  let lineNo = 0;
  let fields: string[] = [];
  let field = '';
  let inQuotes = false;
  let start = 0;
  for await (const text of lines) {
    lineNo++;
    if (!inQuotes) {
      start = lineNo;
      if (text.trim() === '') continue;
    } else field += '\n';
    for (let i = 0; i < text.length; i++) {
      const ch = text[i];
      if (inQuotes) {
        if (ch === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i++;
          } else inQuotes = false;
        } else field += ch;
      } else if (ch === '"') {
        if (field !== '') throw new TruthFileError(file, lineNo, `a quote inside an unquoted field at column ${i + 1}; quote the whole field`);
        inQuotes = true;
      } else if (ch === ',') {
        fields.push(field);
        field = '';
      } else field += ch;
    }
    if (inQuotes) continue;
    fields.push(field.replace(/\r$/, ''));
    yield { fields, line: start };
    fields = [];
    field = '';
  }
  if (inQuotes) throw new TruthFileError(file, start, 'a quoted field is never closed');
}

export async function* parseCsv(stream: Readable, file: string): AsyncGenerator<TruthRow> {
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  let first = true;
  for await (const { fields, line } of csvRecords(lines, file)) {
    const isHeader = first && fields[0]?.trim().toLowerCase() === 'key' && fields[1]?.trim().toLowerCase() === 'label';
    first = false;
    if (isHeader) continue;
    if (fields.length !== 2 && fields.length !== 6) {
      throw new TruthFileError(file, line, `expected key,label or key,label,x0,y0,x1,y1 (2 or 6 fields), got ${fields.length}`);
    }
    const key = requireText(fields[0], 'key', file, line);
    const label = requireText(fields[1], 'label', file, line);
    yield { key, label, boxes: fields.length === 6 ? [parseBox(fields.slice(2), file, line)] : [], line };
  }
}

export async function* parseJsonl(stream: Readable, file: string): AsyncGenerator<TruthRow> {
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  let line = 0;
  for await (const text of lines) {
    line++;
    if (text.trim() === '') continue;
    let row: unknown;
    try {
      row = JSON.parse(text);
    } catch (err) {
      throw new TruthFileError(file, line, `not JSON (${(err as Error).message})`);
    }
    if (row === null || typeof row !== 'object' || Array.isArray(row)) throw new TruthFileError(file, line, 'expected an object {"key", "label", "boxes"}');
    const r = row as Record<string, unknown>;
    const key = requireText(r.key, 'key', file, line);
    const label = requireText(typeof r.label === 'number' ? String(r.label) : r.label, 'label', file, line);
    if (r.boxes !== undefined && !Array.isArray(r.boxes)) throw new TruthFileError(file, line, `boxes must be a list of [x0, y0, x1, y1], got ${JSON.stringify(r.boxes)}`);
    const boxes = ((r.boxes as unknown[] | undefined) ?? []).map((b, i) => parseBox(b, file, line, `boxes[${i}]`));
    yield { key, label, boxes, line };
  }
}

/** COCO is one JSON document: it is read whole (COCO files of a few hundred MB parse in seconds). */
export function parseCoco(text: string, file: string): TruthRow[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new TruthFileError(file, 0, `not JSON (${(err as Error).message})`);
  }
  const d = doc as { images?: unknown; categories?: unknown; annotations?: unknown };
  if (!Array.isArray(d.images) || !Array.isArray(d.categories) || !Array.isArray(d.annotations)) {
    throw new TruthFileError(file, 0, 'not a COCO file: expected "images", "categories" and "annotations" lists');
  }
  const categories = new Map<number, string>();
  d.categories.forEach((c: { id?: unknown; name?: unknown }, i) => {
    if (typeof c?.id !== 'number' || typeof c.name !== 'string' || c.name.trim() === '') throw new TruthFileError(file, 0, `categories[${i}] needs a numeric id and a name, got ${JSON.stringify(c)}`);
    categories.set(c.id, c.name.trim());
  });
  const images = new Map<number, { key: string; labels: Set<string>; boxes: TruthBox[] }>();
  d.images.forEach((im: { id?: unknown; file_name?: unknown }, i) => {
    if (typeof im?.id !== 'number' || typeof im.file_name !== 'string' || im.file_name === '') throw new TruthFileError(file, 0, `images[${i}] needs a numeric id and a file_name, got ${JSON.stringify(im)}`);
    images.set(im.id, { key: im.file_name, labels: new Set(), boxes: [] });
  });
  d.annotations.forEach((a: { image_id?: unknown; category_id?: unknown; bbox?: unknown }, i) => {
    const where = `annotations[${i}]`;
    const image = typeof a?.image_id === 'number' ? images.get(a.image_id) : undefined;
    if (image === undefined) throw new TruthFileError(file, 0, `${where} refers to image_id ${JSON.stringify(a?.image_id)}, which is not in "images"`);
    const label = typeof a.category_id === 'number' ? categories.get(a.category_id) : undefined;
    if (label === undefined) throw new TruthFileError(file, 0, `${where} refers to category_id ${JSON.stringify(a.category_id)}, which is not in "categories"`);
    image.labels.add(label);
    if (a.bbox !== undefined) {
      const b = a.bbox;
      if (!Array.isArray(b) || b.length !== 4 || !b.every((x) => typeof x === 'number' && Number.isFinite(x))) throw new TruthFileError(file, 0, `${where}.bbox must be [x, y, width, height], got ${JSON.stringify(b)}`);
      const [x, y, w, h] = b as number[];
      image.boxes.push(parseBox([x, y, x + w, y + h], file, 0, `${where}.bbox`));
    }
  });
  const rows: TruthRow[] = [];
  for (const im of images.values()) {
    if (im.labels.size === 0) continue; // an image without annotations has no label to check
    if (im.labels.size > 1) throw new TruthFileError(file, 0, `image "${im.key}" has annotations of ${im.labels.size} categories (${[...im.labels].join(', ')}); a classifier audit needs one label per image`);
    rows.push({ key: im.key, label: [...im.labels][0], boxes: im.boxes, line: 0 });
  }
  return rows;
}
