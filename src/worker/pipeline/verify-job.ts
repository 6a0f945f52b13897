/**
 * A job is only as trustworthy as whoever could write to the queue: bull-board's "add job", or any
 * client with Redis access. Before a worker reads anything, each job is checked against the record
 * of the run it names: the run must exist, the image must lie inside the run's source prefix and
 * have been enqueued into the run, and the output, options and model must be the run's own. A job
 * that fails a check is not the run's: it fails permanently and the run never hears of it.
 *
 * A job that is the run's but needs another model than this worker serves is a different matter:
 * `ModelMismatchError`, and the job is left for a worker that serves the run's model.
 */
import { ForeignJobError, InvalidInputError, ModelMismatchError, NotPendingJobError } from '../../shared/errors.js';
import { modelMismatch, type ModelIdentity } from '../../shared/model-setup.js';
import { PAYLOAD_VERSION, type AuditJobPayload } from '../../shared/queue/contract.js';
import type { RunRecord, RunStore } from '../../shared/queue/run-store.js';
import { stableHash, stableStringify } from '../../shared/stable-json.js';
import { isWithinPrefix } from '../../shared/storage/output-keys.js';
import { formatS3Uri, parseS3Uri } from '../../shared/storage/uri.js';

/** What a worker logs (warn) for each job it rejects as not its run's. */
export const FOREIGN_JOB_MESSAGE = 'job rejected: it does not belong to the run it names';

/**
 * What keeps a job's payload from being checked against its run (a missing or mistyped field the
 * check reads), or null. A malformed payload never heals, and says nothing trustworthy about the run
 * it names.
 */
export function payloadProblem(p: unknown): string | null {
  if (!p || typeof p !== 'object') return 'is not an object';
  const q = p as Partial<AuditJobPayload>;
  if (typeof q.runId !== 'string' || q.runId === '') return 'has no runId';
  if (!q.source || typeof q.source.bucket !== 'string' || typeof q.source.key !== 'string') return 'has no source bucket/key';
  if (!q.output || typeof q.output.bucket !== 'string' || typeof q.output.prefix !== 'string') return 'has no output bucket/prefix';
  if (!q.options || typeof q.options !== 'object') return 'has no options';
  return null;
}

/** Throws InvalidInputError BAD_PAYLOAD naming the field `payloadProblem` finds. */
export function validatePayload(p: unknown): asserts p is AuditJobPayload {
  const problem = payloadProblem(p);
  if (problem !== null) throw badPayload(problem);
}

/**
 * Throws InvalidInputError BAD_PAYLOAD for a payload of another version. Checked after the job was
 * verified, so a job that is its run's in every field (enqueued by another gradcam-audit version)
 * fails with its result recorded, and its run can still complete.
 */
export function assertPayloadVersion(p: AuditJobPayload): void {
  if (p.v !== PAYLOAD_VERSION) throw badPayload(`has version ${String(p.v)}, this worker reads version ${PAYLOAD_VERSION}`);
}

function badPayload(problem: string): InvalidInputError {
  return new InvalidInputError('BAD_PAYLOAD', `job payload ${problem}; was it enqueued by a different gradcam-audit version?`);
}

/** Throws ForeignJobError naming the first check `payload` fails against `run` (null: no such run). */
export function verifyJobAgainstRun(payload: AuditJobPayload, run: RunRecord | null): asserts run is RunRecord {
  if (!run) throw new ForeignJobError('UNKNOWN_RUN', `job names run "${payload.runId}", which does not exist (never created, deleted, or lost with Redis data); re-enqueue the source to process it`);
  const source = parseS3Uri(run.source, `source of run ${run.id}`);
  const uri = formatS3Uri({ bucket: payload.source.bucket, key: payload.source.key });
  if (payload.source.bucket !== source.bucket || !isWithinPrefix(source.key, payload.source.key)) {
    throw new ForeignJobError('NOT_IN_RUN', `job source ${uri} is outside run ${run.id}'s source ${run.source}`);
  }
  const output = formatS3Uri({ bucket: payload.output.bucket, key: payload.output.prefix });
  if (output !== run.output) throw new ForeignJobError('NOT_IN_RUN', `job output ${output} is not run ${run.id}'s output ${run.output}`);
  if (stableHash(payload.options) !== run.optionsHash) throw new ForeignJobError('NOT_IN_RUN', `job options differ from run ${run.id}'s options`);
  if (stableStringify(payload.model ?? null) !== stableStringify(run.modelIdentity ?? null)) throw new ForeignJobError('NOT_IN_RUN', `job's model differs from the model run ${run.id} recorded`);
}

/**
 * Throws ModelMismatchError when the run names a model (`enqueue --weights`) that `served` is not.
 * Runs enqueued without a model are served by any worker; their provenance says which model ran.
 */
export function verifyServedModel(run: RunRecord, served: ModelIdentity | undefined): void {
  if (!run.modelIdentity || !served) return;
  const reason = modelMismatch(run.modelIdentity, served);
  if (reason !== null) throw new ModelMismatchError(`run ${run.id}: ${reason}`);
}

/** How long a worker trusts a run record it read (RunRecordCache). */
export const RUN_RECORD_CACHE_TTL_MS = 5_000;

/**
 * Run records for verification, cached briefly: every image of a batch names the same run, and what
 * is checked (source, output, options) never changes for a run. Unknown runs are not cached, so a
 * run created a moment later is seen at once. The one field that does change and that jobs read,
 * `outputsAtEnqueue` (a re-enqueue that finds outputs), is then seen up to the TTL late, which
 * costs at most images made again (image-job.ts, `looksForStoredOutputs`).
 */
export class RunRecordCache {
  private readonly entries = new Map<string, { at: number; run: RunRecord }>();

  constructor(
    private readonly runs: RunStore,
    private readonly ttlMs = RUN_RECORD_CACHE_TTL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  async get(runId: string): Promise<RunRecord | null> {
    const hit = this.entries.get(runId);
    if (hit && this.now() - hit.at < this.ttlMs) return hit.run;
    const run = await this.runs.getRun(runId);
    if (run) this.entries.set(runId, { at: this.now(), run });
    else this.entries.delete(runId);
    if (this.entries.size > 1_000) this.entries.delete(this.entries.keys().next().value as string);
    return run;
  }
}

/**
 * The whole check a worker runs before a job's first S3 request. With `served` (the identity of
 * the worker's model), a job of a run that needs another model throws ModelMismatchError. An
 * image that takes no result throws NotPendingJobError, which the worker turns into a skip when
 * the image's outputs are stored (a second delivery of a job whose result is counted).
 */
export async function verifyJob(payload: AuditJobPayload, deps: { cache: RunRecordCache; runs: RunStore; served?: ModelIdentity }): Promise<RunRecord> {
  const run = await deps.cache.get(payload.runId);
  verifyJobAgainstRun(payload, run);
  verifyServedModel(run, deps.served);
  if (!(await deps.runs.isEnqueued(run.id, payload.source.key))) {
    throw new NotPendingJobError(`${formatS3Uri({ bucket: payload.source.bucket, key: payload.source.key })} takes no result in run ${run.id}: never enqueued into it, and no outputs of this source version and options are stored`);
  }
  return run;
}
