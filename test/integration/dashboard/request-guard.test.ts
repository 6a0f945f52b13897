/**
 * Cross-site request forgery and DNS rebinding against a listening dashboard, with the headers a
 * browser sends (Origin, Sec-Fetch-Site, Host), over real HTTP: every state-changing route refuses
 * requests from other origins in every auth mode, bodies are JSON only (the login form aside), and
 * only the dashboard's own host names are answered.
 */
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOB_NAME, jobIdFor, jobOptionsFor, DEFAULT_JOB_POLICY } from '../../../src/shared/queue/contract.js';
import { parseAllowedHost } from '../../../src/dashboard/host-policy.js';
import type { DashboardOptions } from '../../../src/dashboard/options.js';
import { startHarness, type DashboardHarness } from './harness.js';
import { seedRun } from './seed.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTP request with exactly the headers given (fetch would not let us set Host). */
function send(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: url.hostname, port: url.port, method, path, headers: { ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}), ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const JSON_TYPE = { 'content-type': 'application/json' };
const ATTACKER = 'http://evil.example:8000';
const jobBody = JSON.stringify({ name: 'explain', data: { runId: 'x', source: { bucket: 'secret', key: 'k.jpg' } }, options: {} });

describe.each([
  ['no auth', {} as Partial<DashboardOptions>, {} as Record<string, string>],
  ['basic auth (browsers replay it cross-site)', { auth: { kind: 'basic', user: 'ops', password: 'correct horse battery' } } as Partial<DashboardOptions>, { authorization: `Basic ${Buffer.from('ops:correct horse battery').toString('base64')}` }],
])('cross-site requests, %s', (_mode, options, credentials) => {
  let h: DashboardHarness;
  let base: string;
  let self: string;
  beforeAll(async () => {
    h = await startHarness({ ...options, queueAdmin: true });
    await seedRun(h.seed, 'run-csrf', [{ name: 'bad.png', status: 'failed', error: 'TRANSIENT: S3 503' }]);
    base = await h.app.listen({ port: 0, host: '127.0.0.1' });
    self = base;
  });
  afterAll(async () => {
    await h?.close();
  });

  const addPath = () => `/queues/api/queues/${encodeURIComponent(h.queue.name)}/add`;

  it('refuses a cross-site HTML form post to bull-board (the attack: a page on another origin adding jobs)', async () => {
    const form = 'name=explain&data=%7B%22runId%22%3A%22x%22%7D';
    const attacks: Array<Record<string, string>> = [{ origin: ATTACKER }, { 'sec-fetch-site': 'cross-site' }, { origin: ATTACKER, 'sec-fetch-site': 'cross-site' }, { origin: 'null' }, { 'sec-fetch-site': 'same-site', origin: 'http://sub.127.0.0.1' }];
    for (const headers of attacks) {
      const res = await send(base, 'POST', addPath(), { ...credentials, ...FORM, ...headers }, form);
      expect(res.status, JSON.stringify(headers)).toBe(403);
      expect(JSON.parse(res.body)).toMatchObject({ error: 'CROSS_ORIGIN' });
    }
    // Even JSON (which a browser would preflight) from another origin is refused.
    expect((await send(base, 'POST', addPath(), { ...credentials, ...JSON_TYPE, origin: ATTACKER }, jobBody)).status).toBe(403);
    // And the other state-changing methods of bull-board.
    for (const [method, path] of [['PUT', `/queues/api/queues/${h.queue.name}/pause`], ['PUT', `/queues/api/queues/${h.queue.name}/obliterate`], ['PATCH', `/queues/api/queues/${h.queue.name}/x/update-data`], ['DELETE', '/queues/api/queues/x']]) {
      expect((await send(base, method!, path!, { ...credentials, origin: ATTACKER })).status, `${method} ${path}`).toBe(403);
    }
    expect(await h.queue.getJobCounts('waiting', 'delayed')).toEqual({ waiting: 0, delayed: 0 });
    expect(await h.queue.isPaused()).toBe(false);
  });

  it('takes JSON bodies only: forms and text/plain get 415 even without Origin headers', async () => {
    for (const type of ['application/x-www-form-urlencoded', 'text/plain', 'multipart/form-data; boundary=x']) {
      const res = await send(base, 'POST', addPath(), { ...credentials, 'content-type': type }, 'name=explain');
      expect(res.status, type).toBe(415);
    }
    const retry = await send(base, 'POST', '/api/runs/run-csrf/retry', { ...credentials, ...FORM }, 'all=true');
    expect(retry.status).toBe(415);
    expect(await h.queue.getJobCounts('waiting')).toEqual({ waiting: 0 });
  });

  it("accepts the dashboard's own same-origin JSON requests", async () => {
    const own = { ...credentials, ...JSON_TYPE, origin: self, 'sec-fetch-site': 'same-origin' };
    const retry = await send(base, 'POST', '/api/runs/run-csrf/retry', own, '{"all":true}');
    expect(retry.status, retry.body).toBe(200);
    const added = await send(base, 'POST', addPath(), own, jobBody);
    expect(added.status, added.body).toBe(200);
    expect(await h.queue.getJobCounts('waiting')).toEqual({ waiting: 1 });
    // With --queue-admin, bull-board's editing works from its own pages.
    const id = (JSON.parse(added.body) as { job: { id: string } }).job.id;
    const edited = await send(base, 'PATCH', `/queues/api/queues/${encodeURIComponent(h.queue.name)}/${id}/update-data`, own, '{"jobData":{"runId":"y"}}');
    expect(edited.status, edited.body).toBe(200);
    expect((await h.queue.getJob(id))?.data).toEqual({ runId: 'y' });
    // A script without browser headers (curl) is not a cross-site page; it still needs credentials.
    expect((await send(base, 'POST', '/api/runs/run-csrf/retry', { ...credentials, ...JSON_TYPE }, '{"all":true}')).status).toBe(200);
  });

  it('refuses a cross-site login post (login CSRF) and a cross-site logout', async () => {
    expect((await send(base, 'POST', '/login', { ...FORM, origin: ATTACKER }, 'user=ops&password=x')).status).toBe(403);
    expect((await send(base, 'POST', '/logout', { origin: ATTACKER })).status).toBe(403);
  });
});

describe('bull-board is read-only unless --queue-admin', () => {
  let h: DashboardHarness;
  let base: string;
  beforeAll(async () => {
    h = await startHarness();
    base = await h.app.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('refuses job adding, editing and queue actions even from its own pages, and still shows the queue', async () => {
    const own = { ...JSON_TYPE, origin: base, 'sec-fetch-site': 'same-origin' };
    const q = encodeURIComponent(h.queue.name);
    const job = await h.queue.add(JOB_NAME, { runId: 'r' }, jobOptionsFor('r', 'e1', 'k.jpg', DEFAULT_JOB_POLICY));
    expect(job.id).toBe(jobIdFor('r', 'e1', 'k.jpg'));
    const add = await send(base, 'POST', `/queues/api/queues/${q}/add`, own, jobBody);
    expect(add.status, add.body).toBe(405);
    expect((await send(base, 'PATCH', `/queues/api/queues/${q}/${job.id}/update-data`, own, '{"jobData":{"runId":"other"}}')).status).toBe(405);
    expect((await send(base, 'PUT', `/queues/api/queues/${q}/obliterate`, { origin: base })).status).toBe(405);
    expect((await h.queue.getJob(job.id!))?.data).toEqual({ runId: 'r' });
    expect(await h.queue.getJobCounts('waiting')).toEqual({ waiting: 1 });
    const board = JSON.parse((await send(base, 'GET', '/queues/api/queues')).body) as { queues: Array<{ name: string; readOnlyMode: boolean }> };
    expect(board.queues).toEqual([expect.objectContaining({ name: h.queue.name, readOnlyMode: true })]);
  });
});

describe('host names (DNS rebinding)', () => {
  let h: DashboardHarness;
  let base: string;
  let port: string;
  beforeAll(async () => {
    h = await startHarness({ allowedHosts: [parseAllowedHost('dash.example.com'), parseAllowedHost('alias.example:8443')] });
    base = await h.app.listen({ port: 0, host: '127.0.0.1' });
    port = new URL(base).port;
  });
  afterAll(async () => {
    await h?.close();
  });

  it('answers its own names and refuses any other Host with 421 and a clear message', async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, 'localhost:8080', 'dash.example.com', 'dash.example.com:443', 'alias.example:8443']) {
      expect((await send(base, 'GET', '/api/runs', { host })).status, host).toBe(200);
    }
    for (const host of [`evil.example:${port}`, 'evil.example', `127.0.0.1.nip.io:${port}`, 'alias.example:9000', 'alias.example']) {
      const res = await send(base, 'GET', '/api/runs', { host });
      expect(res.status, host).toBe(421);
      expect(JSON.parse(res.body)).toEqual({ error: 'MISDIRECTED_REQUEST', message: expect.stringContaining(`does not answer to host "${host}"`) });
      expect(JSON.parse(res.body).message).toContain('--allowed-host');
    }
    // Pages, the event stream and bull-board alike.
    for (const path of ['/', '/api/events', '/queues/', '/static/app.js']) expect((await send(base, 'GET', path, { host: 'evil.example' })).status, path).toBe(421);
    // The liveness probe answers whatever the Host (kubelet addresses pods by IP).
    expect((await send(base, 'GET', '/healthz', { host: 'evil.example' })).status).toBe(200);
  });

  it('compares Origin with host and port: another local port is another origin', async () => {
    const post = (origin: string, host = `127.0.0.1:${port}`) => send(base, 'POST', '/logout', { host, origin });
    expect((await post(`http://127.0.0.1:${port}`)).status).toBe(303);
    expect((await post(`http://localhost:${port}`, `localhost:${port}`)).status).toBe(303);
    expect((await post('http://127.0.0.1:8080')).status).toBe(403);
    expect((await post('http://localhost:5173')).status).toBe(403);
    // The public name of a proxy that rewrites Host (an explicit --allowed-host) is accepted.
    expect((await post('https://dash.example.com')).status).toBe(303);
    expect((await post('https://alias.example:8443')).status).toBe(303);
    expect((await post('https://alias.example')).status).toBe(403);
  });
});

describe('behind a reverse proxy (--trust-proxy, --allowed-host)', () => {
  let trusted: DashboardHarness;
  let untrusted: DashboardHarness;
  const TOKEN = 'proxy-test-token-0123456789';
  beforeAll(async () => {
    const options: Partial<DashboardOptions> = { auth: { kind: 'token', token: TOKEN }, allowedHosts: [parseAllowedHost('dash.example.com')] };
    trusted = await startHarness({ ...options, trustProxy: ['127.0.0.1'] });
    untrusted = await startHarness(options);
  });
  afterAll(async () => {
    await trusted?.close();
    await untrusted?.close();
  });

  // The proxy reaches the dashboard as 127.0.0.1 under its upstream name, forwarding the public one.
  const viaProxy = (h: DashboardHarness, forwardedHost: string, origin: string) =>
    h.app.inject({
      method: 'POST',
      url: '/login',
      remoteAddress: '127.0.0.1',
      headers: { host: 'dashboard:3000', 'x-forwarded-host': forwardedHost, 'x-forwarded-proto': 'https', origin, 'sec-fetch-site': 'same-origin', 'content-type': 'application/x-www-form-urlencoded' },
      payload: `token=${TOKEN}&next=/queues/`,
    });

  it('checks the forwarded host and origin from a trusted proxy, and ignores forwarded headers otherwise', async () => {
    // The upstream name is not one the dashboard knows, so it must be listed too.
    expect((await viaProxy(trusted, 'dash.example.com', 'https://dash.example.com')).statusCode).toBe(421);
    const withUpstream = await startHarness({ auth: { kind: 'token', token: TOKEN }, allowedHosts: ['dash.example.com', 'dashboard'].map(parseAllowedHost), trustProxy: ['127.0.0.1'] });
    try {
      const ok = await viaProxy(withUpstream, 'dash.example.com', 'https://dash.example.com');
      expect(ok.statusCode).toBe(303);
      expect(ok.headers.location).toBe('/queues/');
      // The public scheme reaches the cookie: https through the proxy means Secure.
      expect(String(ok.headers['set-cookie'])).toContain('; Secure');
      expect((await viaProxy(withUpstream, 'evil.example', 'https://evil.example')).statusCode).toBe(421);
      expect((await viaProxy(withUpstream, 'dash.example.com', 'https://evil.example')).statusCode).toBe(403);
    } finally {
      await withUpstream.close();
    }
    // Without --trust-proxy the forwarded headers count for nothing: Host is the upstream name.
    expect((await viaProxy(untrusted, 'dash.example.com', 'https://dash.example.com')).statusCode).toBe(421);
  });
});

