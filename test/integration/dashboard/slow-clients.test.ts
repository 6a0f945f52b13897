/**
 * Clients that hold the dashboard's resources without using them: a sign-in body trickled byte by
 * byte (the form is public), more connections than the server takes, a body bigger than a sign-in
 * needs, a live event stream that is never read, more live streams than the server serves. Real
 * sockets against the listening server; the timeouts are shrunk so the test is quick, and the live
 * event stream, whose response outlives the request timeout, must keep flowing.
 */
import net from 'node:net';
import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../../src/shared/explain-options.js';
import { startHarness, type DashboardHarness } from './harness.js';

const REQUEST_TIMEOUT_MS = 400;
const MAX_CONNECTIONS = 6;

describe('dashboard against slow and greedy clients', () => {
  let h: DashboardHarness;
  let port: number;

  beforeAll(async () => {
    h = await startHarness({ requestTimeoutMs: REQUEST_TIMEOUT_MS, maxConnections: MAX_CONNECTIONS, liveIntervalMs: 50 });
    await h.app.listen({ port: 0, host: '127.0.0.1' });
    port = (h.app.server.address() as net.AddressInfo).port;
  });

  afterAll(async () => {
    await h?.close();
  });

  const connect = (): Promise<net.Socket> => connectTo(port);

  it('cuts off a sign-in body that never finishes, while a live stream runs on past the same timeout', async () => {
    const sse = await connect();
    let events = '';
    sse.on('data', (d) => (events += d.toString('utf8')));
    sse.write(`GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    const stalled = await connect();
    stalled.write(`POST /login HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ntoken=a`);
    const t0 = Date.now();
    const answer = await closedWithin(stalled, REQUEST_TIMEOUT_MS * 5);
    expect(answer, 'the stalled request is still open').not.toBeNull();
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(Date.now() - t0).toBeLessThan(REQUEST_TIMEOUT_MS * 2.5);
    // The stream was opened before the stalled request and is older than the timeout by now.
    const before = (events.match(/event: runs/g) ?? []).length;
    await new Promise((r) => setTimeout(r, REQUEST_TIMEOUT_MS));
    expect(sse.destroyed).toBe(false);
    expect((events.match(/event: runs/g) ?? []).length).toBeGreaterThan(before);
    sse.destroy();
  });

  it('answers 413 to a sign-in body bigger than a sign-in needs', async () => {
    const res = await h.app.inject({ method: 'POST', url: '/login', headers: { host: '127.0.0.1', 'content-type': 'application/x-www-form-urlencoded' }, payload: `token=${'a'.repeat(20 * 1024)}` });
    expect(res.statusCode).toBe(413);
  });

  it('refuses connections beyond maxConnections and takes new ones once they close', async () => {
    const held = await Promise.all(Array.from({ length: MAX_CONNECTIONS }, () => connect()));
    // Each holds an unfinished request, so the server counts it until the request timeout.
    for (const s of held) s.write(`GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`);
    await new Promise((r) => setTimeout(r, 50));
    const extra = await connect();
    expect(await closedWithin(extra, REQUEST_TIMEOUT_MS / 2), 'the connection over the cap was kept').toBe('');
    for (const s of held) s.destroy();
    await new Promise((r) => setTimeout(r, 50));
    const res = await fetch(`http://127.0.0.1:${port}/api/runs`);
    expect(res.status).toBe(200);
  });
});

/** A raw connection; resolves once connected. */
function connectTo(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
  });
}

/** Resolves with what the server sent before it closed the connection, or null if still open after `ms`. */
function closedWithin(s: net.Socket, ms: number): Promise<string | null> {
  return new Promise((resolve) => {
    let got = '';
    s.on('data', (d) => (got += d.toString('latin1')));
    const timer = setTimeout(() => resolve(null), ms);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}

describe('live event streams against clients that do not read', () => {
  const MAX_STREAMS = 3;
  let h: DashboardHarness;
  let port: number;
  const streams: ServerResponse[] = [];

  beforeAll(async () => {
    h = await startHarness({ liveIntervalMs: 10, maxLiveStreams: MAX_STREAMS });
    // Big overview events (100 runs with long URIs, some 200 KB a tick), so an unread stream
    // outgrows the kernel's socket buffers within a second when nothing holds it back.
    const long = 'z'.repeat(900);
    await Promise.all(Array.from({ length: 100 }, (_, i) => h.deps.runs.createRun({ id: `run-${i}`, source: `s3://src/${long}/${i}/`, output: `s3://out/${long}/${i}/`, options: { ...DEFAULT_EXPLAIN_OPTIONS } })));
    h.app.server.on('request', (req, res) => {
      if (req.url?.startsWith('/api/events')) streams.push(res);
    });
    await h.app.listen({ port: 0, host: '127.0.0.1' });
    port = (h.app.server.address() as net.AddressInfo).port;
  });

  afterAll(async () => {
    await h?.close();
  });

  it('holds at most about one tick for a client that stopped reading, and sends again once it reads', async () => {
    const s = await connectTo(port);
    let received = 0;
    s.on('data', (d: Buffer) => (received += d.length));
    s.write(`GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    await new Promise((r) => setTimeout(r, 100));
    expect(received).toBeGreaterThan(0);
    s.pause();
    const res = streams.at(-1)!;
    let peak = 0;
    for (let i = 0; i < 30; i++) {
      await new Promise((r) => setTimeout(r, 50));
      peak = Math.max(peak, res.writableLength);
    }
    expect(peak, 'bytes the server buffered for the unread stream').toBeLessThan(1024 * 1024);
    const before = received;
    s.resume();
    await new Promise((r) => setTimeout(r, 500));
    expect(received - before).toBeGreaterThan(peak); // what was buffered arrived, and new ticks after it
    s.destroy();
  });

  it('answers 503 to a stream beyond maxLiveStreams and serves again once one closes', async () => {
    const open = await Promise.all(Array.from({ length: MAX_STREAMS }, () => connectTo(port)));
    for (const s of open) s.write(`GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    await new Promise((r) => setTimeout(r, 100));
    const over = await fetch(`http://127.0.0.1:${port}/api/events`);
    expect(over.status).toBe(503);
    await over.body?.cancel();
    open[0]!.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const controller = new AbortController();
    const again = await fetch(`http://127.0.0.1:${port}/api/events`, { signal: controller.signal });
    expect(again.status).toBe(200);
    controller.abort();
    for (const s of open) s.destroy();
  });
});
