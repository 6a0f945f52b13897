import { describe, expect, it } from 'vitest';
import { createAuthGate, readCookie, safeEqual } from '../../../src/dashboard/auth.js';
import { isLoopback } from '../../../src/dashboard/host-policy.js';
import type { FastifyRequest } from 'fastify';

const req = (headers: Record<string, string>) => ({ headers }) as unknown as FastifyRequest;

describe('access helpers', () => {
  it('recognises loopback addresses only', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) expect(isLoopback(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '192.168.1.10', 'example.com', '128.0.0.1', '::ffff:10.0.0.1']) expect(isLoopback(h), h).toBe(false);
  });

  it('compares secrets exactly, whatever their lengths', () => {
    expect(safeEqual('secret-token-123456', 'secret-token-123456')).toBe(true);
    expect(safeEqual('secret-token-12345', 'secret-token-123456')).toBe(false);
    expect(safeEqual('', 'x')).toBe(false);
  });

  it('reads one cookie among several', () => {
    expect(readCookie('a=1; gca_session=abc.def; b=2', 'gca_session')).toBe('abc.def');
    expect(readCookie('gca_sessionx=1', 'gca_session')).toBeUndefined();
    expect(readCookie(undefined, 'gca_session')).toBeUndefined();
  });

  it('issues session cookies that expire and cannot be forged', () => {
    let now = 1_000_000;
    const gate = createAuthGate({ kind: 'token', token: 'a-long-enough-token' }, 60, () => now);
    expect(gate.login({ token: 'wrong' })).toBeNull();
    const cookie = gate.login({ token: 'a-long-enough-token' });
    expect(cookie).not.toBeNull();
    expect(cookie).not.toContain('a-long-enough-token');
    expect(gate.check(req({ cookie: `gca_session=${cookie}` }))).toBe(true);
    expect(gate.check(req({ authorization: 'Bearer a-long-enough-token' }))).toBe(true);
    expect(gate.check(req({ authorization: 'Basic YTpi' }))).toBe(false);
    // Another process (another key) did not issue it.
    const other = createAuthGate({ kind: 'token', token: 'a-long-enough-token' }, 60, () => now);
    expect(other.check(req({ cookie: `gca_session=${cookie}` }))).toBe(false);
    now += 61_000;
    expect(gate.check(req({ cookie: `gca_session=${cookie}` }))).toBe(false);
  });
});
