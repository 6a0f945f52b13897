/**
 * Ground truth for `enqueue`, looked up per listed key. Each job carries its own image's truth in its
 * payload, so Redis holds truth only for the jobs waiting in the queue, never a map over the whole
 * run; the index lives in the producer's memory for the duration of the enqueue (about 150 bytes
 * per image plus its label and boxes).
 *
 * Keys match on their longest common tail: a truth key may be the full S3 key, the key relative to
 * the audited prefix, an `s3://bucket/key` URI, or a COCO `file_name` such as `000123.jpg`.
 */
import type { JobTruth } from '../../shared/audit/types.js';
import { ConfigError } from '../../shared/errors.js';
import { TruthFileError, type TruthBox, type TruthRow } from './truth-parsers.js';

/** Where truth comes from: a file (local or s3://), or a segment of each key's path. */
export type TruthSpec = { kind: 'file'; uri: string; format: 'csv' | 'jsonl' | 'coco' } | { kind: 'path'; segment: number };

export interface TruthLookup {
  /** Truth for a listed key, or undefined when the source has none for it. */
  lookup(key: string): JobTruth | undefined;
  /** Truth entries no listed key has used so far (null when the source is not a file). */
  unused(): number | null;
  readonly size: number;
}

interface Entry {
  label: string;
  boxes: TruthBox[];
  line: number;
  used: boolean;
}

function normaliseKey(key: string): string {
  const m = /^s3:\/\/[^/]+\/(.*)$/.exec(key);
  return (m ? m[1] : key).replace(/^\/+/, '');
}

export class TruthIndex implements TruthLookup {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly file: string) {}

  /** Add a row; rows of one key (one per box) must agree on the label. */
  add(row: TruthRow): void {
    const key = normaliseKey(row.key);
    if (key === '') throw new TruthFileError(this.file, row.line, `key "${row.key}" names no object`);
    const e = this.entries.get(key);
    if (e === undefined) {
      this.entries.set(key, { label: row.label, boxes: [...row.boxes], line: row.line, used: false });
      return;
    }
    if (e.label !== row.label) {
      throw new TruthFileError(this.file, row.line, `key "${key}" is labelled "${row.label}" here but "${e.label}"${e.line > 0 ? ` on line ${e.line}` : ' earlier'}; one image has one label`);
    }
    e.boxes.push(...row.boxes);
  }

  get size(): number {
    return this.entries.size;
  }

  lookup(key: string): JobTruth | undefined {
    for (let tail = key; ; ) {
      const e = this.entries.get(tail);
      if (e !== undefined) {
        e.used = true;
        return e.boxes.length > 0 ? { label: e.label, boxes: e.boxes } : { label: e.label };
      }
      const slash = tail.indexOf('/');
      if (slash < 0) return undefined;
      tail = tail.slice(slash + 1);
    }
  }

  unused(): number {
    let n = 0;
    for (const e of this.entries.values()) if (!e.used) n++;
    return n;
  }
}

/** `--truth-from-path N`: the label is path segment N of the key (0 = first, −1 = file name, −2 = parent folder). */
export class PathTruth implements TruthLookup {
  readonly size = 0;
  constructor(private readonly segment: number) {
    if (!Number.isInteger(segment)) throw new ConfigError('--truth-from-path', `expected an integer segment index such as -2 (the parent folder), got ${segment}`);
  }

  lookup(key: string): JobTruth | undefined {
    const parts = key.split('/');
    const i = this.segment < 0 ? parts.length + this.segment : this.segment;
    const label = parts[i];
    return i >= 0 && i < parts.length && label !== undefined && label.trim() !== '' ? { label: label.trim() } : undefined;
  }

  unused(): null {
    return null;
  }
}
