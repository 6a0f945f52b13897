/**
 * Polls a running dashboard's JSON API the way its pages do, throughout a chaos run, and records
 * every answer that is not a healthy one: a status other than 200, a body that is not the
 * endpoint's JSON shape, or no answer within the timeout. While Redis is known to be down, a 503
 * that says so is the documented answer and counts separately.
 */

export interface DashboardPollStats {
  requests: number;
  ok: number;
  /** 503 "Redis is unavailable" while Redis was down (or just coming back). */
  redisDown: number;
  /** Everything else: wrong status, bad JSON, timeouts. Each entry: `+<s since polling began> path: what`. */
  bad: string[];
  slowestMs: number;
}

export interface DashboardPoller {
  stats: DashboardPollStats;
  stop(): Promise<void>;
}

export interface DashboardPollOptions {
  baseUrl: string;
  runIds: () => readonly string[];
  /** Whether Redis is (or was a moment ago) down: then a 503 naming Redis is accepted. */
  redisDown: () => boolean;
  intervalMs: number;
  timeoutMs: number;
}

type Check = (body: unknown) => string | null;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const hasArray =
  (field: string): Check =>
  (b) =>
    isObject(b) && Array.isArray(b[field]) ? null : `no ${field} array`;

/** The endpoints the dashboard's pages call, with the shape each must answer. */
function endpoints(runId: string | undefined): Array<{ path: string; check: Check }> {
  const list: Array<{ path: string; check: Check }> = [
    { path: '/healthz', check: (b) => (isObject(b) && b.ok === true ? null : 'not {ok: true}') },
    { path: '/api/queue', check: (b) => (isObject(b) && typeof b.backlog === 'number' && isObject(b.counts) ? null : 'no backlog/counts') },
    { path: '/api/runs', check: hasArray('runs') },
    { path: '/api/workers', check: hasArray('workers') },
  ];
  if (runId !== undefined) {
    const id = encodeURIComponent(runId);
    list.push(
      { path: `/api/runs/${id}`, check: (b) => (isObject(b) && JSON.stringify(b).includes(runId) ? null : 'does not describe the run') },
      { path: `/api/runs/${id}/images?limit=24`, check: hasArray('items') },
      { path: `/api/runs/${id}/images?status=failed&limit=24`, check: hasArray('items') },
      { path: `/api/runs/${id}/failures?limit=50`, check: (b) => (isObject(b) && typeof b.offset === 'number' ? null : 'no page') },
    );
  }
  return list;
}

export function pollDashboard(options: DashboardPollOptions): DashboardPoller {
  const stats: DashboardPollStats = { requests: 0, ok: 0, redisDown: 0, bad: [], slowestMs: 0 };
  const began = Date.now();
  // When it happened, to line a bad answer up with the chaos log (kills, the Redis restart).
  const bad = (started: number, what: string): void => void stats.bad.push(`+${((started - began) / 1000).toFixed(1)} s ${what}`);
  let stopped = false;
  let wake: (() => void) | null = null;

  const probe = async (path: string, check: Check): Promise<void> => {
    const started = Date.now();
    stats.requests += 1;
    try {
      const res = await fetch(`${options.baseUrl}${path}`, { signal: AbortSignal.timeout(options.timeoutMs) });
      const text = await res.text();
      stats.slowestMs = Math.max(stats.slowestMs, Date.now() - started);
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        bad(started, `${path}: ${res.status} with a body that is not JSON: ${text.slice(0, 120)}`);
        return;
      }
      if (res.status === 503 && options.redisDown() && isObject(body) && String(body.message).includes('Redis is unavailable')) {
        stats.redisDown += 1;
        return;
      }
      if (res.status !== 200) {
        bad(started, `${path}: ${res.status} ${text.slice(0, 200)}`);
        return;
      }
      const problem = check(body);
      if (problem) bad(started, `${path}: ${problem}: ${text.slice(0, 200)}`);
      else stats.ok += 1;
    } catch (err) {
      stats.slowestMs = Math.max(stats.slowestMs, Date.now() - started);
      bad(started, `${path}: ${(err as Error).name === 'TimeoutError' ? `no answer within ${options.timeoutMs} ms` : (err as Error).message}`);
    }
  };

  const loop = (async () => {
    while (!stopped) {
      const ids = options.runIds();
      // One round of every endpoint for the newest run, one request at a time, as a page would.
      for (const e of endpoints(ids[ids.length - 1])) await probe(e.path, e.check);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, options.intervalMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  })();

  return {
    stats,
    async stop() {
      stopped = true;
      wake?.();
      await loop;
    },
  };
}
