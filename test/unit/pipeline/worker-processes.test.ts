/**
 * `worker --processes`: the rules (auto count, slot from the environment, ids and ports) and the
 * supervisor itself over real child processes (a stand-in worker script: test/fixtures/processes).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/shared/logger.js';
import { autoProcesses, parseProcesses, processCores, processSlot, slottedWorkerId, superviseWorkers, type SupervisorOptions } from '../../../src/worker/pipeline/worker-processes.js';

const CHILD = fileURLToPath(new URL('../../fixtures/processes/child.mjs', import.meta.url));

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('worker process rules', () => {
  it('auto: one process per two cores beyond the first with a GPU, one without', () => {
    expect(autoProcesses(16, 1)).toBe(7);
    expect(autoProcesses(2, 1)).toBe(1);
    expect(autoProcesses(3, 1)).toBe(1);
    expect(autoProcesses(5, 1)).toBe(2);
    expect(autoProcesses(128, 8)).toBe(16);
    expect(autoProcesses(64, 0)).toBe(1);
  });

  it('parses --processes: a count, auto, or a clear refusal', async () => {
    const machine = async () => ({ cores: 9, gpus: 1 });
    await expect(parseProcesses(undefined, machine)).resolves.toBe(1);
    await expect(parseProcesses(' 3 ', machine)).resolves.toBe(3);
    await expect(parseProcesses('auto', machine)).resolves.toBe(4);
    await expect(parseProcesses('0', machine)).rejects.toThrow(/--processes: expected an integer from 1 to 64, got 0/);
    await expect(parseProcesses('many', machine)).rejects.toThrow(/--processes/);
  });

  it('reads its slot from the environment and refuses a malformed one', () => {
    expect(processSlot({})).toBeNull();
    expect(processSlot({ GRADCAM_AUDIT_PROCESS_INDEX: '2', GRADCAM_AUDIT_PROCESS_COUNT: '4' })).toEqual({ index: 2, count: 4 });
    expect(() => processSlot({ GRADCAM_AUDIT_PROCESS_INDEX: '4', GRADCAM_AUDIT_PROCESS_COUNT: '4' })).toThrow(/GRADCAM_AUDIT_PROCESS_INDEX/);
    expect(() => processSlot({ GRADCAM_AUDIT_PROCESS_INDEX: 'x', GRADCAM_AUDIT_PROCESS_COUNT: '2' })).toThrow(/GRADCAM_AUDIT_PROCESS_INDEX/);
  });

  it('gives each process its id and share of the cores', () => {
    const slot = { index: 2, count: 4 };
    expect(slottedWorkerId(slot, 'gpu-a')).toBe('gpu-a-2');
    expect(slottedWorkerId(slot, undefined)).toBeUndefined();
    expect(slottedWorkerId(null, 'gpu-a')).toBe('gpu-a');
    expect(processCores(slot, 16)).toBe(4);
    expect(processCores(slot, 3)).toBe(1);
    expect(processCores(null, 16)).toBe(16);
  });
});

describe('superviseWorkers (real child processes)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gca-processes-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const events = async (): Promise<Array<Record<string, unknown>>> =>
    (await readFile(join(dir, 'events.jsonl'), 'utf8').catch(() => ''))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const run = (behaviour: string, processes: number, extra: Partial<SupervisorOptions> = {}): Promise<number> =>
    superviseWorkers({
      processes,
      command: { file: process.execPath, args: [CHILD] },
      env: { PATH: process.env.PATH, CHILD_BEHAVIOUR: behaviour, CHILD_STATE_DIR: dir },
      stopGraceMs: 5_000,
      restart: { firstMs: 50, maxMs: 200 },
      logger: silentLogger(),
      handleSignals: false,
      ...extra,
    });
  const waitFor = async (pred: (e: Array<Record<string, unknown>>) => boolean): Promise<Array<Record<string, unknown>>> => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const e = await events();
      if (pred(e)) return e;
      if (Date.now() > deadline) throw new Error(`condition not met; events: ${JSON.stringify(e)}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  it('starts every process with its slot, and drains them all on stop (exit 0)', async () => {
    const stop = new AbortController();
    const exit = run('serve', 3, { stop: stop.signal });
    const started = await waitFor((e) => e.filter((x) => 'started' in x).length === 3);
    expect(started.map((e) => e.started).sort()).toEqual([0, 1, 2]);
    expect(started.every((e) => e.count === '3')).toBe(true);
    stop.abort();
    await expect(exit).resolves.toBe(0);
    const after = await events();
    expect(after.filter((e) => 'drained' in e).map((e) => e.drained).sort()).toEqual([0, 1, 2]);
  });

  it('serves the group metrics on one port: counters summed, the queue depth its maximum', async () => {
    const stop = new AbortController();
    const logs: Array<Record<string, unknown>> = [];
    const logger = { info: (o: Record<string, unknown>, msg: string) => logs.push({ ...o, msg }), warn: () => undefined, error: () => undefined } as unknown as SupervisorOptions['logger'];
    const exit = run('serve', 3, { stop: stop.signal, metrics: { host: '127.0.0.1', port: 0 }, logger });
    await waitFor((e) => e.filter((x) => 'started' in x).length === 3);
    const url = String(logs.find((l) => l.msg === 'metrics server listening')?.url);
    let text = '';
    // A child answers once it has set up its channel: poll until all three are in the sum.
    await expect
      .poll(async () => {
        text = await (await fetch(url)).text();
        return /gradcam_audit_images_processed_total\{outcome="ok"\} (\d+)/.exec(text)?.[1];
      }, { timeout: 20_000, interval: 100 })
      .toBe('6');
    expect(text).toMatch(/^gradcam_audit_queue_depth 12$/m);
    stop.abort();
    await expect(exit).resolves.toBe(0);
    await expect(fetch(url)).rejects.toThrow();
  });

  it('a stop that reaches a process still starting (no SIGTERM handler yet) is a clean stop (exit 0)', async () => {
    const stop = new AbortController();
    const logs: Array<Record<string, unknown>> = [];
    const logger = { info: (o: Record<string, unknown>, msg: string) => logs.push({ ...o, msg }), warn: () => undefined, error: () => undefined } as unknown as SupervisorOptions['logger'];
    const exit = run('slow-start', 1, { stop: stop.signal, logger });
    await waitFor((e) => e.some((x) => 'booting' in x));
    stop.abort();
    await expect(exit).resolves.toBe(0);
    expect(logs.find((l) => String(l.msg).endsWith('stopped'))).toMatchObject({ code: null, signal: 'SIGTERM' });
  });

  it('starts a process that exits unexpectedly again, and the others keep serving', async () => {
    const stop = new AbortController();
    const exit = run('serve,crash-once', 2, { stop: stop.signal });
    const e = await waitFor((x) => x.filter((y) => y.started === 1).length === 2);
    const ones = e.filter((y) => y.started === 1);
    expect(ones[0]?.pid).not.toBe(ones[1]?.pid);
    expect(e.filter((y) => y.started === 0)).toHaveLength(1);
    stop.abort();
    await expect(exit).resolves.toBe(0);
    expect((await events()).filter((y) => 'drained' in y).map((y) => y.drained).sort()).toEqual([0, 1]);
  });

  it('stops the group with exit code 2 when a process refuses its configuration, without restarting it', async () => {
    await expect(run('serve,usage', 2)).resolves.toBe(2);
    const e = await events();
    expect(e.filter((y) => y.started === 1)).toHaveLength(1);
    // The other process was stopped too: drained, or (when the stop reached it while it was still
    // starting) ended by the signal. Either way none is left running, and none was started again.
    expect(e.filter((y) => y.started === 0).length).toBeLessThanOrEqual(1);
    for (const { pid } of e.filter((y) => 'started' in y)) expect(isRunning(Number(pid))).toBe(false);
  });

  it('stops the group with exit code 1 on a crash loop', async () => {
    await expect(run('serve,crash', 2, { maxCrashes: 3, crashWindowMs: 60_000 })).resolves.toBe(1);
    const e = await events();
    expect(e.filter((y) => y.started === 1)).toHaveLength(4); // the first start and three restarts
    // The serving process was stopped with the group (drained, unless still starting) and not left running.
    for (const { pid } of e.filter((y) => 'started' in y)) expect(isRunning(Number(pid))).toBe(false);
  });

  it('kills a process that does not drain within the grace period', async () => {
    const stop = new AbortController();
    const exit = run('serve,stubborn', 2, { stop: stop.signal, stopGraceMs: 300 });
    await waitFor((x) => x.filter((y) => 'started' in y).length === 2);
    const t0 = Date.now();
    stop.abort();
    await expect(exit).resolves.toBe(1);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });
});
