/**
 * The compare page's data: the stored comparison of two runs (`compare/<A>/compare.json` under run
 * B's output prefix, as `gradcam-audit compare A B` writes it), or a new one computed on request
 * with the same code and stored at the same place. Computing reads both manifests as streams; one
 * comparison runs at a time per dashboard, and a second request for the same pair waits for the
 * first instead of starting another.
 */
import type { CompareReport } from '../shared/audit/compare.js';
import { COMPARE_FILE } from '../shared/audit/files.js';
import { compareLocation, compareRunManifests, storeSink, writeCompare, type RunOutputRef } from '../shared/audit/s3-analysis.js';
import { NotFoundError } from '../shared/errors.js';
import type { RunRecord } from '../shared/queue/run-store.js';
import { Semaphore } from '../shared/semaphore.js';
import type { ObjectStore } from '../shared/storage/object-store.js';
import { joinKey, parseS3Prefix } from '../shared/storage/uri.js';

/** Largest compare.json read back (it holds bounded top-N lists, so a few MiB at most). */
const MAX_COMPARE_BYTES = 32 * 2 ** 20;

function refOf(run: RunRecord): RunOutputRef {
  return { runId: run.id, output: parseS3Prefix(run.output, `output of run ${run.id}`) };
}

export class RunComparisons {
  private readonly inFlight = new Map<string, Promise<CompareReport>>();
  private readonly slots = new Semaphore(1);

  constructor(private readonly store: ObjectStore) {}

  /** The stored comparison, or null when none was written yet. */
  async stored(a: RunRecord, b: RunRecord): Promise<CompareReport | null> {
    const loc = compareLocation(refOf(a), refOf(b));
    try {
      const object = await this.store.get(loc.bucket, joinKey(loc.key, COMPARE_FILE), { maxBytes: MAX_COMPARE_BYTES });
      return JSON.parse(object.body.toString('utf8')) as CompareReport;
    } catch (err) {
      if (err instanceof NotFoundError) return null;
      throw err;
    }
  }

  /** Compare the two runs' manifests now and store the result where `stored` finds it. */
  compute(a: RunRecord, b: RunRecord): Promise<CompareReport> {
    const id = `${a.id}\0${b.id}`;
    let pending = this.inFlight.get(id);
    if (pending === undefined) {
      pending = this.slots.run(async () => {
        const [ra, rb] = [refOf(a), refOf(b)];
        const report = await compareRunManifests(this.store, ra, rb);
        await writeCompare(storeSink(this.store, compareLocation(ra, rb)), report);
        return report;
      });
      this.inFlight.set(id, pending);
      const forget = (): void => void this.inFlight.delete(id);
      pending.then(forget, forget);
    }
    return pending;
  }
}
