/**
 * Run records in Redis: what a run is (source, output, options), how far it got (counters), and
 * one result line per source image. Counters move only inside Lua scripts that also record the
 * result, so a retried, recovered or duplicated job can never count an image twice.
 */
import type { Redis } from 'ioredis';
import type { ExplainOptions } from '../explain-options.js';
import type { Provenance, RunManifestLine } from '../manifest.js';
import { NotFoundError } from '../errors.js';
import { stableHash } from '../stable-json.js';
import { runKeys, runsIndexKey, type KeySpace } from './keys.js';

export type RunState = 'enqueuing' | 'queued' | 'running' | 'finalizing' | 'completed';

export interface RunRecord {
  id: string;
  /** s3:// URI of the source prefix. */
  source: string;
  /** s3:// URI of the output prefix (ends with `/`). */
  output: string;
  options: ExplainOptions;
  /** stableHash of `options`: what a job's options must hash to for the job to be the run's. */
  optionsHash: string;
  /** Free-form model label given at enqueue time (workers record the real provenance). */
  model: string;
  state: RunState;
  /** Images enqueued so far (final once `enqueueComplete`). */
  total: number;
  done: number;
  failed: number;
  degenerate: number;
  enqueueComplete: boolean;
  createdAt: string;
  startedAt?: string;
  enqueueFinishedAt?: string;
  finishedAt?: string;
  /** Provenance reported by the first worker that produced an output for this run. */
  provenance?: Partial<Provenance>;
}

export interface NewRun {
  id: string;
  source: string;
  output: string;
  options: ExplainOptions;
  model?: string;
}

export interface RecordOutcome {
  /** False when this image already had a result (a duplicate delivery): nothing was counted. */
  counted: boolean;
  /**
   * Set when nothing was written because the result is not the run's: the run does not exist (never
   * did, or Redis lost it), or the image was never enqueued into it.
   */
  rejected?: 'unknown-run' | 'not-in-run';
  done: number;
  failed: number;
  total: number;
  /** Every enqueued image has a result and enqueueing has finished. */
  complete: boolean;
}

// KEYS: record, results, throughput, finalizer, jobs. ARGV: sourceKey, lineJson, status,
// degenerate, nowIso, bucket. A result replaces an existing one only when it upgrades `failed` to
// `ok` (a manual retry); then a completed run reopens so its manifest is written again. Nothing is
// written for a run that does not exist (HINCRBY would otherwise create a headless record that a
// later enqueue resets while the orphaned result stays) or for an image the run never enqueued.
const RECORD_RESULT = `
if redis.call('HEXISTS', KEYS[1], 'id') == 0 then return {-1, 0, 0, 0, 0} end
if redis.call('HEXISTS', KEYS[5], ARGV[1]) == 0 then return {-2, 0, 0, 0, 0} end
local existing = redis.call('HGET', KEYS[2], ARGV[1])
local counted = 0
if not existing then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  if ARGV[3] == 'ok' then redis.call('HINCRBY', KEYS[1], 'done', 1) else redis.call('HINCRBY', KEYS[1], 'failed', 1) end
  if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[1], 'degenerate', 1) end
  redis.call('HINCRBY', KEYS[3], ARGV[6], 1)
  counted = 1
elseif ARGV[3] == 'ok' and cjson.decode(existing)['status'] == 'failed' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'failed', -1)
  redis.call('HINCRBY', KEYS[1], 'done', 1)
  if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[1], 'degenerate', 1) end
  redis.call('HINCRBY', KEYS[3], ARGV[6], 1)
  if redis.call('HGET', KEYS[1], 'state') == 'completed' then
    redis.call('HSET', KEYS[1], 'state', 'running')
    redis.call('HDEL', KEYS[1], 'finishedAt')
    redis.call('DEL', KEYS[4])
  end
  counted = 1
end
if counted == 1 then
  redis.call('HSETNX', KEYS[1], 'startedAt', ARGV[5])
  local st = redis.call('HGET', KEYS[1], 'state')
  if st == 'queued' or st == 'enqueuing' then
    if redis.call('HGET', KEYS[1], 'enqueueComplete') == '1' then redis.call('HSET', KEYS[1], 'state', 'running') end
  end
end
local v = redis.call('HMGET', KEYS[1], 'done', 'failed', 'total', 'enqueueComplete')
return {counted, tonumber(v[1] or '0'), tonumber(v[2] or '0'), tonumber(v[3] or '0'), v[4] == '1' and 1 or 0}
`;

// KEYS: record, jobs. ARGV: n, then n pairs (sourceKey, jobId). Returns the indices (0-based) of
// pairs that were new, and bumps `total` by that many. Re-enqueueing adds nothing twice.
const ADD_JOBS = `
local n = tonumber(ARGV[1])
local fresh = {}
for i = 0, n - 1 do
  if redis.call('HSETNX', KEYS[2], ARGV[2 + 2 * i], ARGV[3 + 2 * i]) == 1 then fresh[#fresh + 1] = i end
end
if #fresh > 0 then redis.call('HINCRBY', KEYS[1], 'total', #fresh) end
return fresh
`;

// KEYS: record. ARGV: 'nx' or 'set', then field/value pairs. Writes only into an existing run
// record: a plain HSET on a run Redis has lost would create a headless record.
const UPDATE_RUN = `
if redis.call('HEXISTS', KEYS[1], 'id') == 0 then return 0 end
for i = 2, #ARGV, 2 do
  if ARGV[1] == 'nx' then redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
`;

/** Width of a throughput bucket in seconds. */
export const THROUGHPUT_BUCKET_SECONDS = 10;

export class RunStore {
  constructor(
    private readonly redis: Redis,
    private readonly ks: KeySpace,
  ) {
    redis.defineCommand('gcaRecordResult', { numberOfKeys: 5, lua: RECORD_RESULT });
    redis.defineCommand('gcaAddJobs', { numberOfKeys: 2, lua: ADD_JOBS });
    redis.defineCommand('gcaUpdateRun', { numberOfKeys: 1, lua: UPDATE_RUN });
  }

  keys(runId: string): ReturnType<typeof runKeys> {
    return runKeys(this.ks, runId);
  }

  /** Create the run record, or return the existing one (idempotent re-enqueue). */
  async createRun(run: NewRun, now = new Date()): Promise<{ record: RunRecord; created: boolean }> {
    const k = this.keys(run.id);
    const key = k.record;
    const created = await this.redis.hsetnx(key, 'id', run.id);
    if (created === 1) {
      // A new record under an id whose state is still in Redis (the record alone was lost): start
      // from nothing, or stale results would never be counted again and the run would never end.
      await this.redis
        .multi()
        .del(k.jobs, k.results, k.throughput, k.finalizer)
        .hset(key, {
          source: run.source,
          output: run.output,
          options: JSON.stringify(run.options),
          optionsHash: stableHash(run.options),
          model: run.model ?? '',
          state: 'enqueuing',
          total: 0,
          done: 0,
          failed: 0,
          degenerate: 0,
          enqueueComplete: 0,
          createdAt: now.toISOString(),
        })
        .zadd(runsIndexKey(this.ks), now.getTime(), run.id)
        .exec();
    } else {
      // A re-enqueue reopens listing; counters and results stay.
      await this.updateRun(run.id, { enqueueComplete: '0' });
    }
    const record = await this.getRun(run.id);
    if (!record) throw new NotFoundError(`run ${run.id} vanished while being created`);
    return { record, created: created === 1 };
  }

  async getRun(runId: string): Promise<RunRecord | null> {
    const h = await this.redis.hgetall(this.keys(runId).record);
    if (!h.id) return null;
    return parseRun(h);
  }

  async requireRun(runId: string): Promise<RunRecord> {
    const run = await this.getRun(runId);
    if (!run) throw new NotFoundError(`no run "${runId}" in Redis (check the run id and REDIS_URL / GRADCAM_AUDIT_PREFIX)`);
    return run;
  }

  /** Newest first. */
  async listRunIds(limit = 100): Promise<string[]> {
    return this.redis.zrevrange(runsIndexKey(this.ks), 0, limit - 1);
  }

  async listRuns(limit = 100): Promise<RunRecord[]> {
    const ids = await this.listRunIds(limit);
    const runs = await Promise.all(ids.map((id) => this.getRun(id)));
    return runs.filter((r): r is RunRecord => r !== null);
  }

  /** Register source keys for a run; returns the indices of entries that were not known before. */
  async addJobs(runId: string, entries: Array<{ key: string; jobId: string }>): Promise<number[]> {
    if (entries.length === 0) return [];
    const k = this.keys(runId);
    const args: string[] = [String(entries.length)];
    for (const e of entries) args.push(e.key, e.jobId);
    const fresh = (await (this.redis as unknown as RunStoreCommands).gcaAddJobs(k.record, k.jobs, ...args)) as number[];
    return fresh;
  }

  /** Listing finished: `total` is final from now on. Returns the record after the update. */
  async finishEnqueue(runId: string, now = new Date()): Promise<RunRecord> {
    await this.updateRun(runId, { enqueueComplete: '1', enqueueFinishedAt: now.toISOString() });
    const run = await this.requireRun(runId);
    if (run.state === 'enqueuing') {
      const state: RunState = run.done + run.failed > 0 ? 'running' : 'queued';
      await this.updateRun(runId, { state });
      run.state = state;
    }
    return run;
  }

  /** Record one image's final result exactly once. */
  async recordResult(runId: string, line: RunManifestLine, now = new Date()): Promise<RecordOutcome> {
    const k = this.keys(runId);
    const bucket = String(Math.floor(now.getTime() / 1000 / THROUGHPUT_BUCKET_SECONDS) * THROUGHPUT_BUCKET_SECONDS);
    const out = (await (this.redis as unknown as RunStoreCommands).gcaRecordResult(
      k.record,
      k.results,
      k.throughput,
      k.finalizer,
      k.jobs,
      line.key,
      JSON.stringify(line),
      line.status,
      line.degenerate ? '1' : '0',
      now.toISOString(),
      bucket,
    )) as [number, number, number, number, number];
    const [counted, done, failed, total, enqueueComplete] = out;
    if (counted < 0) return { counted: false, rejected: counted === -1 ? 'unknown-run' : 'not-in-run', done, failed, total, complete: false };
    return { counted: counted === 1, done, failed, total, complete: enqueueComplete === 1 && done + failed >= total };
  }

  /** Whether `sourceKey` was enqueued into the run (its key registry has it). */
  async isEnqueued(runId: string, sourceKey: string): Promise<boolean> {
    return (await this.redis.hexists(this.keys(runId).jobs, sourceKey)) === 1;
  }

  async getResult(runId: string, sourceKey: string): Promise<RunManifestLine | null> {
    const v = await this.redis.hget(this.keys(runId).results, sourceKey);
    return v ? (JSON.parse(v) as RunManifestLine) : null;
  }

  /** Stream every result line (HSCAN: constant memory, arbitrary order). */
  async *scanResults(runId: string, count = 1000): AsyncIterable<RunManifestLine[]> {
    let cursor = '0';
    do {
      const [next, flat] = await this.redis.hscan(this.keys(runId).results, cursor, 'COUNT', count);
      cursor = next;
      const page: RunManifestLine[] = [];
      for (let i = 1; i < flat.length; i += 2) page.push(JSON.parse(flat[i] as string) as RunManifestLine);
      if (page.length > 0) yield page;
    } while (cursor !== '0');
  }

  /** Images per throughput bucket, oldest first. */
  async throughput(runId: string): Promise<Array<{ t: number; count: number }>> {
    const h = await this.redis.hgetall(this.keys(runId).throughput);
    return Object.entries(h)
      .map(([t, c]) => ({ t: Number(t), count: Number(c) }))
      .sort((a, b) => a.t - b.t);
  }

  /**
   * Record when a worker took the run's first image: the start of its processing span, from which
   * throughput is measured (shared/run-stats.ts). Only the first call counts, and a deleted run is
   * not recreated. Recording a result sets it too, for runs whose worker never called this.
   */
  async markStarted(runId: string, at = new Date()): Promise<void> {
    await this.updateRun(runId, { startedAt: at.toISOString() }, 'nx');
  }

  /** Record the first worker's provenance (model hash, engine, backend) on the run. */
  async setProvenanceOnce(runId: string, provenance: Partial<Provenance>): Promise<void> {
    await this.updateRun(runId, { provenance: JSON.stringify(provenance) }, 'nx');
  }

  /**
   * Try to become the one process that writes the run's manifest. The lock expires (`ttlMs`) so a
   * finalizer that dies mid-write does not block the run forever; a sweeper may claim it again.
   */
  async claimFinalizer(runId: string, owner: string, ttlMs = 10 * 60_000): Promise<boolean> {
    const ok = await this.redis.set(this.keys(runId).finalizer, owner, 'PX', ttlMs, 'NX');
    if (ok === 'OK') await this.updateRun(runId, { state: 'finalizing' });
    return ok === 'OK';
  }

  /** The manifest is written: the run is completed and the finalizer lock becomes permanent. */
  async markCompleted(runId: string, owner: string, now = new Date()): Promise<void> {
    const k = this.keys(runId);
    const holder = await this.redis.get(k.finalizer);
    if (holder !== owner) return; // someone else took over after our lock expired
    await this.redis.persist(k.finalizer);
    await this.updateRun(runId, { state: 'completed', finishedAt: now.toISOString() });
  }

  /** Set fields of an existing run record; false (and nothing written) when the run does not exist. */
  async updateRun(runId: string, fields: Record<string, string>, mode: 'set' | 'nx' = 'set'): Promise<boolean> {
    const args = Object.entries(fields).flat();
    return (await (this.redis as unknown as RunStoreCommands).gcaUpdateRun(this.keys(runId).record, mode, ...args)) === 1;
  }

  /** Runs that have every result but no manifest yet (their finalizer died, or none was triggered). */
  async findUnfinalized(limit = 100): Promise<RunRecord[]> {
    const runs = await this.listRuns(limit);
    const candidates = runs.filter((r) => r.state !== 'completed' && r.enqueueComplete && r.done + r.failed >= r.total);
    const out: RunRecord[] = [];
    for (const r of candidates) {
      if ((await this.redis.exists(this.keys(r.id).finalizer)) === 0) out.push(r);
    }
    return out;
  }

  /** Delete a run's Redis state (records, results); outputs in S3 are untouched. */
  async deleteRun(runId: string): Promise<void> {
    const k = this.keys(runId);
    await this.redis.multi().del(k.record, k.jobs, k.results, k.throughput, k.finalizer).zrem(runsIndexKey(this.ks), runId).exec();
  }
}

interface RunStoreCommands {
  gcaRecordResult(...args: string[]): Promise<unknown>;
  gcaAddJobs(...args: string[]): Promise<unknown>;
  gcaUpdateRun(...args: string[]): Promise<unknown>;
}

function parseRun(h: Record<string, string>): RunRecord {
  const num = (v: string | undefined): number => (v === undefined ? 0 : Number(v));
  const options = JSON.parse(h.options ?? '{}') as ExplainOptions;
  return {
    id: h.id as string,
    source: h.source ?? '',
    output: h.output ?? '',
    options,
    optionsHash: h.optionsHash ?? stableHash(options),
    model: h.model ?? '',
    state: (h.state ?? 'enqueuing') as RunState,
    total: num(h.total),
    done: num(h.done),
    failed: num(h.failed),
    degenerate: num(h.degenerate),
    enqueueComplete: h.enqueueComplete === '1',
    createdAt: h.createdAt ?? '',
    startedAt: h.startedAt,
    enqueueFinishedAt: h.enqueueFinishedAt,
    finishedAt: h.finishedAt,
    provenance: h.provenance ? (JSON.parse(h.provenance) as Partial<Provenance>) : undefined,
  };
}
