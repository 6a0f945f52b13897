import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/shared/errors.js';
import { THROTTLE_DEFAULTS } from '../../../src/dashboard/failure-throttle.js';
import { resolveDashboardOptions } from '../../../src/dashboard/options.js';
import { CLI_BIN } from '../../helpers/cluster.js';
import { serviceEnv } from '../../helpers/services.js';
import { startHarness, type DashboardHarness } from './harness.js';
import { seedRun } from './seed.js';

const TOKEN = 'test-token-0123456789abcdef';

function runCli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

describe('binding rules', () => {
  it('refuses a non-loopback address without credentials, and accepts one with them', () => {
    for (const host of ['0.0.0.0', '::', '10.1.2.3', 'dashboard.internal']) {
      expect(() => resolveDashboardOptions({ host }, {})).toThrow(ConfigError);
    }
    expect(() => resolveDashboardOptions({ host: '0.0.0.0' }, {})).toThrow(/DASHBOARD_TOKEN/);
    for (const host of ['127.0.0.1', '::1', 'localhost', '127.0.0.2']) expect(resolveDashboardOptions({ host }, {}).auth.kind).toBe('none');
    expect(resolveDashboardOptions({ host: '0.0.0.0' }, { DASHBOARD_TOKEN: TOKEN }).auth).toEqual({ kind: 'token', token: TOKEN });
    expect(resolveDashboardOptions({ host: '0.0.0.0', token: TOKEN }, {}).auth.kind).toBe('token');
    expect(resolveDashboardOptions({ host: '0.0.0.0' }, { DASHBOARD_USER: 'ops', DASHBOARD_PASSWORD: 'long-password' }).auth.kind).toBe('basic');
    expect(() => resolveDashboardOptions({}, { DASHBOARD_TOKEN: 'short' })).toThrow(/at least 16 characters/);
    expect(() => resolveDashboardOptions({}, { DASHBOARD_USER: 'ops' })).toThrow(/DASHBOARD_PASSWORD/);
    expect(() => resolveDashboardOptions({ port: '70000' }, {})).toThrow(/--port/);
  });

  it('the real CLI exits with a clear configuration error and opens nothing', async () => {
    const [{ code, stderr }, short] = await Promise.all([
      runCli(['dashboard', '--host', '0.0.0.0', '--port', '0'], serviceEnv({ DASHBOARD_TOKEN: '', DASHBOARD_USER: '', DASHBOARD_PASSWORD: '' })),
      runCli(['dashboard', '--token', 'abc'], serviceEnv()),
    ]);
    expect(code).toBe(2);
    expect(stderr).toContain('refusing to serve the dashboard on non-loopback address "0.0.0.0" without credentials');
    expect(short.code).toBe(2);
    expect(short.stderr).toContain('--token: expected at least 16 characters');
  });
});

describe('token auth on every route', () => {
  let h: DashboardHarness;
  let base: string;
  beforeAll(async () => {
    h = await startHarness({ auth: { kind: 'token', token: TOKEN } });
    await seedRun(h.seed, 'run-auth', [{ name: 'a.png', status: 'ok', cls: 0 }]);
    base = await h.app.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(async () => {
    await h?.close();
  });

  const PROTECTED = ['/api/runs', '/api/runs/run-auth', '/api/workers', '/api/runs/run-auth/images', '/api/runs/run-auth/objects/original?key=photos%2Frun-auth%2Fa.png', '/queues/', '/queues/api/queues', '/', '/static/app.js'];

  it('refuses requests without or with wrong credentials', async () => {
    for (const path of PROTECTED) {
      const none = await fetch(base + path, { redirect: 'manual' });
      expect([401, 303], path).toContain(none.status);
      const wrong = await fetch(base + path, { redirect: 'manual', headers: { authorization: `Bearer ${TOKEN}x` } });
      expect([401, 303], path).toContain(wrong.status);
    }
    const api = await fetch(`${base}/api/runs`);
    expect(api.status).toBe(401);
    expect(((await api.json()) as { message: string }).message).toContain('Authorization: Bearer');
    const page = await fetch(`${base}/`, { redirect: 'manual', headers: { accept: 'text/html' } });
    expect(page.status).toBe(303);
    expect(page.headers.get('location')).toBe('/login?next=%2F');
    const sse = await fetch(`${base}/api/events`);
    expect(sse.status).toBe(401);
    const retry = await fetch(`${base}/api/runs/run-auth/retry`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"all":true}' });
    expect(retry.status).toBe(401);
  });

  it('accepts the bearer token everywhere, and the login form sets a cookie that works for pages, SSE and bull-board', async () => {
    for (const path of PROTECTED) {
      const ok = await fetch(base + path, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(ok.status, path).toBe(200);
    }
    const bad = await fetch(`${base}/login`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'token=nope' });
    expect(bad.status).toBe(303);
    expect(bad.headers.get('location')).toBe('/login?failed=1');
    expect(bad.headers.get('set-cookie')).toBeNull();

    const login = await fetch(`${base}/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: TOKEN, next: '/#/runs/run-auth' }).toString(),
    });
    expect(login.status).toBe(303);
    expect(login.headers.get('location')).toBe('/#/runs/run-auth');
    const setCookie = login.headers.get('set-cookie') ?? '';
    expect(setCookie).toMatch(/HttpOnly; SameSite=Strict/);
    expect(setCookie).not.toContain(TOKEN);
    const cookie = setCookie.split(';')[0]!;
    for (const path of PROTECTED) expect((await fetch(base + path, { headers: { cookie } })).status, path).toBe(200);

    const controller = new AbortController();
    const sse = await fetch(`${base}/api/events`, { headers: { cookie }, signal: controller.signal });
    expect(sse.status).toBe(200);
    expect(sse.headers.get('content-type')).toContain('text/event-stream');
    controller.abort();

    // A forged or tampered cookie is refused.
    const [name, value] = cookie.split('=') as [string, string];
    const tampered = `${name}=${value.replace(/^\d+/, (expiry) => String(Number(expiry) + 1000))}`;
    expect((await fetch(`${base}/api/runs`, { headers: { cookie: tampered } })).status).toBe(401);

    // The login form never redirects off-site.
    const offsite = await fetch(`${base}/login`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token: TOKEN, next: '//evil.example/' }).toString() });
    expect(offsite.headers.get('location')).toBe('/');
  });

  it('ends the session on logout: a copy of the cookie taken before is refused after it, other sessions stay', async () => {
    const signIn = async (): Promise<string> => {
      const login = await fetch(`${base}/login`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${TOKEN}` });
      return (login.headers.get('set-cookie') ?? '').split(';')[0]!;
    };
    const copied = await signIn();
    const other = await signIn();
    expect(copied).not.toBe(other);
    expect((await fetch(`${base}/api/runs`, { headers: { cookie: copied } })).status).toBe(200);
    const logout = await fetch(`${base}/logout`, { method: 'POST', redirect: 'manual', headers: { cookie: copied } });
    expect(logout.status).toBe(303);
    expect(logout.headers.get('set-cookie')).toContain('Max-Age=0');
    expect((await fetch(`${base}/api/runs`, { headers: { cookie: copied } })).status).toBe(401);
    expect((await fetch(`${base}/api/events`, { headers: { cookie: copied } })).status).toBe(401);
    expect((await fetch(`${base}/api/runs`, { headers: { cookie: other } })).status).toBe(200);
  });

  it('keeps the login form and liveness probe public, with security headers everywhere', async () => {
    const login = await fetch(`${base}/login`);
    expect(login.status).toBe(200);
    expect(login.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(login.headers.get('content-security-policy')).not.toContain('unsafe-inline');
    expect(login.headers.get('x-content-type-options')).toBe('nosniff');
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  });
});

describe('guessing credentials', () => {
  // Small delays keep the test fast; the rule is the same as with the defaults (10 free, 250 ms doubling to 5 s).
  const throttle = { ...THROTTLE_DEFAULTS, freeFailures: 3, windowMs: 60_000, baseDelayMs: 200, maxDelayMs: 800 };
  const timed = async <T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> => {
    const t0 = performance.now();
    const value = await fn();
    return { value, ms: performance.now() - t0 };
  };

  it('slows failed attempts per address but never refuses correct credentials; /healthz, sessions and other addresses stay fast', async () => {
    const h = await startHarness({ auth: { kind: 'token', token: TOKEN }, throttle });
    try {
      const login = await h.app.inject({ method: 'POST', url: '/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `token=${TOKEN}` });
      const cookie = String(login.headers['set-cookie']).split(';')[0]!;
      for (let i = 0; i < 3; i++) {
        expect((await h.app.inject({ method: 'GET', url: '/api/runs', headers: { authorization: `Bearer guess-${i}` } })).statusCode).toBe(401);
      }
      // Past the free failures every attempt waits before it is checked, wrong or right alike.
      const wrong = await timed(() => h.app.inject({ method: 'GET', url: '/api/runs', headers: { authorization: 'Bearer guess-4' } }));
      expect(wrong.value.statusCode).toBe(401);
      expect(wrong.ms).toBeGreaterThanOrEqual(190);
      // Two more failures (waits 400 and 800 ms) reach the bound; more would only cost test time.
      for (let i = 0; i < 2; i++) {
        const form = await h.app.inject({ method: 'POST', url: '/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `token=guess-${i}` });
        expect(form.headers.location).toBe('/login?failed=1');
      }
      // 6 failures: the wait has reached its 800 ms bound, and the right token still gets in.
      const right = await timed(() => h.app.inject({ method: 'GET', url: '/api/runs', headers: { authorization: `Bearer ${TOKEN}` } }));
      expect(right.value.statusCode).toBe(200);
      expect(right.ms).toBeGreaterThanOrEqual(790);
      const form = await timed(() => h.app.inject({ method: 'POST', url: '/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `token=${TOKEN}` }));
      expect(form.value.statusCode).toBe(303);
      expect(form.value.headers['set-cookie']).toBeDefined();
      expect(form.ms).toBeGreaterThanOrEqual(790);
      // Not throttled at all: the liveness probe, a valid session, a visit without credentials, another address.
      const quick = [
        await timed(() => h.app.inject({ method: 'GET', url: '/healthz' })),
        await timed(() => h.app.inject({ method: 'GET', url: '/api/runs', headers: { cookie } })),
        await timed(() => h.app.inject({ method: 'GET', url: '/api/runs' })),
        await timed(() => h.app.inject({ method: 'GET', url: '/api/runs', remoteAddress: '10.9.8.7', headers: { authorization: `Bearer ${TOKEN}` } })),
      ];
      expect(quick.map((q) => q.value.statusCode)).toEqual([200, 200, 401, 200]);
      for (const q of quick) expect(q.ms).toBeLessThan(600);
      // An expired or forged cookie (say, after a restart) is not a guess and costs nothing.
      const stale = await timed(() => h.app.inject({ method: 'GET', url: '/api/runs', remoteAddress: '10.9.8.8', headers: { cookie: 'gca_session=1.forged' } }));
      expect(stale.value.statusCode).toBe(401);
      for (let i = 0; i < 30; i++) await h.app.inject({ method: 'GET', url: '/api/runs', remoteAddress: '10.9.8.8', headers: { cookie: `gca_session=${i}.forged` } });
      const after = await timed(() => h.app.inject({ method: 'GET', url: '/api/runs', remoteAddress: '10.9.8.8', headers: { authorization: `Bearer ${TOKEN}` } }));
      expect(after.value.statusCode).toBe(200);
      expect(after.ms).toBeLessThan(600);
    } finally {
      await h.close();
    }
  });

  it('counts failures per real client behind a trusted proxy (--trust-proxy), and per proxy otherwise', async () => {
    const behind = await startHarness({ auth: { kind: 'token', token: TOKEN }, throttle, trustProxy: ['127.0.0.1'] });
    const plain = await startHarness({ auth: { kind: 'token', token: TOKEN }, throttle });
    try {
      const guess = (h: DashboardHarness, client: string) =>
        h.app.inject({ method: 'GET', url: '/api/runs', remoteAddress: '127.0.0.1', headers: { authorization: 'Bearer nope', 'x-forwarded-for': client } });
      // The two servers throttle independently, so their guesses wait side by side.
      for (let i = 0; i < 6; i++) await Promise.all([guess(behind, '203.0.113.7'), guess(plain, '203.0.113.7')]);
      const other = (h: DashboardHarness) =>
        timed(() => h.app.inject({ method: 'GET', url: '/api/runs', remoteAddress: '127.0.0.1', headers: { authorization: `Bearer ${TOKEN}`, 'x-forwarded-for': '198.51.100.9' } }));
      const trusted = await other(behind);
      const untrusted = await other(plain);
      expect([trusted.value.statusCode, untrusted.value.statusCode]).toEqual([200, 200]);
      // Behind a trusted proxy, another user is another address; without it, everyone is the proxy.
      expect(trusted.ms).toBeLessThan(600);
      expect(untrusted.ms).toBeGreaterThanOrEqual(790);
      // A forwarded address from a peer that is not the trusted proxy is ignored.
      const spoofed = await timed(() => behind.app.inject({ method: 'GET', url: '/api/runs', remoteAddress: '203.0.113.7', headers: { authorization: `Bearer ${TOKEN}`, 'x-forwarded-for': '192.0.2.1' } }));
      expect(spoofed.value.statusCode).toBe(200);
    } finally {
      await behind.close();
      await plain.close();
    }
  });

  const bearer = (h: DashboardHarness, remoteAddress: string, token: string) => h.app.inject({ method: 'GET', url: '/api/runs', remoteAddress, headers: { authorization: `Bearer ${token}` } });

  it('counts an IPv6 /64 as one client and an IPv4-mapped address as the IPv4 client it maps', async () => {
    const h = await startHarness({ auth: { kind: 'token', token: TOKEN }, throttle: { ...throttle, baseDelayMs: 100, maxDelayMs: 400 } });
    try {
      // Four failures, each from another address of one /64 (a host can use all 2^64 of them).
      for (const a of ['2001:db8:1:2::1', '2001:db8:1:2::2', '2001:db8:1:2:ab::3', '2001:DB8:1:2:0:0:0:4']) expect((await bearer(h, a, 'nope')).statusCode).toBe(401);
      const samePrefix = await timed(() => bearer(h, '2001:db8:1:2:ffff:ffff:ffff:9', TOKEN));
      expect(samePrefix.value.statusCode).toBe(200);
      expect(samePrefix.ms).toBeGreaterThanOrEqual(190);
      const otherPrefix = await timed(() => bearer(h, '2001:db8:1:3::1', TOKEN));
      expect(otherPrefix.value.statusCode).toBe(200);
      expect(otherPrefix.ms).toBeLessThan(150);
      // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; both spellings are one client.
      for (const a of ['::ffff:192.0.2.5', '192.0.2.5', '::FFFF:192.0.2.5', '192.0.2.5']) expect((await bearer(h, a, 'nope')).statusCode).toBe(401);
      const mapped = await timed(() => bearer(h, '::ffff:192.0.2.5', TOKEN));
      expect(mapped.value.statusCode).toBe(200);
      expect(mapped.ms).toBeGreaterThanOrEqual(190);
    } finally {
      await h.close();
    }
  });

  it('lets one client have one credential check in flight: concurrent guesses queue and pay each wait in turn', async () => {
    const h = await startHarness({ auth: { kind: 'token', token: TOKEN }, throttle: { ...throttle, freeFailures: 1, baseDelayMs: 100, maxDelayMs: 400 } });
    try {
      expect((await bearer(h, '203.0.113.20', 'nope')).statusCode).toBe(401);
      // Waits 100, 200, 400 ms one after another; checked side by side they would all take 100 ms.
      const burst = await timed(() => Promise.all([0, 1, 2].map((i) => bearer(h, '203.0.113.20', `nope-${i}`))));
      expect(burst.value.map((r) => r.statusCode)).toEqual([401, 401, 401]);
      expect(burst.ms).toBeGreaterThanOrEqual(680);
    } finally {
      await h.close();
    }
  });

  it('refuses every credential check with 429 once all clients together spent the failure budget; sessions keep working', async () => {
    const h = await startHarness({ auth: { kind: 'token', token: TOKEN }, throttle: { ...throttle, globalFailures: 4 } });
    try {
      const login = await h.app.inject({ method: 'POST', url: '/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `token=${TOKEN}` });
      const cookie = String(login.headers['set-cookie']).split(';')[0]!;
      // One failure from each of four prefixes: no client is past its free failures.
      for (let i = 1; i <= 4; i++) expect((await bearer(h, `198.51.100.${i}`, 'nope')).statusCode).toBe(401);
      const busy = await bearer(h, '198.51.100.50', TOKEN);
      expect(busy.statusCode).toBe(429);
      expect(Number(busy.headers['retry-after'])).toBeGreaterThan(0);
      const form = await h.app.inject({ method: 'POST', url: '/login', remoteAddress: '198.51.100.51', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `token=${TOKEN}` });
      expect(form.statusCode).toBe(429);
      expect((await h.app.inject({ method: 'GET', url: '/api/runs', remoteAddress: '198.51.100.50', headers: { cookie } })).statusCode).toBe(200);
    } finally {
      await h.close();
    }
  });

  it('drops the oldest client window when too many are tracked, keeping the others', async () => {
    const h = await startHarness({ auth: { kind: 'token', token: TOKEN }, throttle: { ...throttle, freeFailures: 1, baseDelayMs: 100, maxDelayMs: 100, maxTrackedClients: 3 } });
    try {
      expect((await bearer(h, '192.0.2.1', 'nope')).statusCode).toBe(401);
      expect((await bearer(h, '192.0.2.2', 'nope')).statusCode).toBe(401);
      expect((await bearer(h, '192.0.2.3', 'nope')).statusCode).toBe(401);
      // A fourth client: only the oldest window (192.0.2.1) goes.
      expect((await bearer(h, '192.0.2.4', 'nope')).statusCode).toBe(401);
      const kept = await timed(() => bearer(h, '192.0.2.2', TOKEN));
      expect(kept.value.statusCode).toBe(200);
      expect(kept.ms).toBeGreaterThanOrEqual(90);
      const dropped = await timed(() => bearer(h, '192.0.2.1', TOKEN));
      expect(dropped.ms).toBeLessThan(60);
    } finally {
      await h.close();
    }
  });
});

describe('where the login form redirects', () => {
  let h: DashboardHarness;
  beforeAll(async () => {
    h = await startHarness({ auth: { kind: 'token', token: TOKEN } });
  });
  afterAll(async () => {
    await h?.close();
  });

  it.each([
    ['/#/runs/r1', '/#/runs/r1'],
    ['/\t/evil.example/x', '/'],
    ['//evil.example/', '/'],
    ['/\\evil.example/', '/'],
    ['https://evil.example/', '/'],
    ['/a\r\nSet-Cookie: pwned=1', '/aSet-Cookie:%20pwned=1'],
    ['/%0d%0aSet-Cookie:%20pwned=1', '/%0d%0aSet-Cookie:%20pwned=1'],
  ])('next=%j -> Location %j', async (next, location) => {
    const body = new URLSearchParams({ token: TOKEN, next }).toString();
    const res = await h.app.inject({ method: 'POST', url: '/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: body });
    expect(res.statusCode).toBe(303);
    expect(res.headers.location).toBe(location);
    expect(String(res.headers['set-cookie'])).not.toContain('pwned');
  });

  it('answers the reported payloads without a server error', async () => {
    for (const payload of [`token=${TOKEN}&next=/%09/evil.example/x`, `token=${TOKEN}&next=/%0d%0aX-Injected:%201`, `token=${TOKEN}&next=%0d%0a`]) {
      const res = await h.app.inject({ method: 'POST', url: '/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload });
      expect(res.statusCode, payload).toBe(303);
      expect(res.headers.location, payload).toMatch(/^\/(?![/\\])/);
      expect(res.headers.location, payload).not.toMatch(/[\r\n\t]/);
      expect(res.headers['x-injected']).toBeUndefined();
    }
  });
});

describe('basic auth', () => {
  let h: DashboardHarness;
  beforeAll(async () => {
    h = await startHarness({ auth: { kind: 'basic', user: 'ops', password: 'correct horse battery' } });
  });
  afterAll(async () => {
    await h?.close();
  });
  const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

  it('challenges, refuses wrong credentials and accepts right ones', async () => {
    const none = await h.app.inject({ method: 'GET', url: '/api/runs' });
    expect(none.statusCode).toBe(401);
    expect(none.headers['www-authenticate']).toContain('Basic realm="gradcam-audit"');
    expect((await h.app.inject({ method: 'GET', url: '/api/runs', headers: { authorization: basic('ops', 'wrong password') } })).statusCode).toBe(401);
    expect((await h.app.inject({ method: 'GET', url: '/api/runs', headers: { authorization: basic('root', 'correct horse battery') } })).statusCode).toBe(401);
    expect((await h.app.inject({ method: 'GET', url: '/api/runs', headers: { authorization: basic('ops', 'correct horse battery') } })).statusCode).toBe(200);
    expect((await h.app.inject({ method: 'GET', url: '/queues/', headers: { authorization: basic('ops', 'correct horse battery') } })).statusCode).toBe(200);
    const login = await h.app.inject({ method: 'POST', url: '/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'user=ops&password=correct+horse+battery' });
    expect(login.headers['set-cookie']).toBeDefined();
  });
});
