import { hostname, networkInterfaces } from 'node:os';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/shared/errors.js';
import { hostPolicyFor, parseAllowedHost, parseHostHeader } from '../../../src/dashboard/host-policy.js';
import { sameOriginPath } from '../../../src/dashboard/same-origin-path.js';

describe('host policy (DNS rebinding)', () => {
  it('bound to loopback: answers to loopback names on any port, nothing else', () => {
    const p = hostPolicyFor('127.0.0.1');
    for (const h of ['127.0.0.1:3000', 'localhost:3000', 'LOCALHOST:8080', 'localhost.:3000', '[::1]:3000', '[0:0:0:0:0:0:0:1]:3000', 'localhost']) expect(p.allows(h), h).toBe(true);
    for (const h of ['evil.example:3000', 'evil.example', '127.0.0.1.evil.example:3000', 'localhost.evil.example', '10.0.0.1:3000', '', 'local host', 'localhost:99999', 'a@localhost:3000']) expect(p.allows(h), h).toBe(false);
  });

  it('bound to a specific address or name: that one only (plus --allowed-host entries, with or without a port)', () => {
    const p = hostPolicyFor('10.1.2.3', [parseAllowedHost('dash.example.com'), parseAllowedHost('ALIAS.example:8443')]);
    expect(p.allows('10.1.2.3:3000')).toBe(true);
    expect(p.allows('localhost:3000')).toBe(false);
    expect(p.allows('dash.example.com')).toBe(true);
    expect(p.allows('dash.example.com:9999')).toBe(true);
    expect(p.allows('alias.example:8443')).toBe(true);
    expect(p.allows('alias.example:8444')).toBe(false);
    expect(p.allows('alias.example')).toBe(false);
    expect(hostPolicyFor('dashboard.internal').allows('dashboard.internal:3000')).toBe(true);
    expect(hostPolicyFor('::1').allows('[::1]:3000')).toBe(true);
  });

  it('bound to a wildcard: loopback, this machine\'s addresses and host name', () => {
    const p = hostPolicyFor('0.0.0.0');
    expect(p.allows('localhost:3000')).toBe(true);
    expect(p.allows(`${hostname()}:3000`)).toBe(true);
    const v4 = Object.values(networkInterfaces()).flat().find((a) => a?.family === 'IPv4');
    if (v4) expect(p.allows(`${v4.address}:3000`)).toBe(true);
    expect(p.allows('evil.example:3000')).toBe(false);
  });

  it('parses Host values and refuses malformed --allowed-host entries with a ConfigError', () => {
    expect(parseHostHeader('Example.COM:8080')).toEqual({ name: 'example.com', port: 8080 });
    expect(parseHostHeader('[::1]')).toEqual({ name: '[::1]', port: undefined });
    for (const bad of ['', 'http://x', 'a/b', 'x:', 'x:abc', 'a b']) {
      expect(() => parseAllowedHost(bad), bad).toThrow(ConfigError);
    }
  });
});

describe('sameOriginPath (login redirect target)', () => {
  const origin = 'http://127.0.0.1:3000';
  it.each([
    ['/#/runs/r1', '/#/runs/r1'],
    ['/queues/?x=1', '/queues/?x=1'],
    ['/\t/evil.example/x', '/'],
    ['/\n/evil.example/x', '/'],
    ['//evil.example/', '/'],
    ['/\\evil.example/', '/'],
    ['\\/evil.example/', '/'],
    ['https://evil.example/', '/'],
    ['http://127.0.0.1:3001/', '/'],
    ['javascript:alert(1)', '/'],
    ['/a\r\nSet-Cookie: x=1', '/aSet-Cookie:%20x=1'],
    ['/ü?q=ä', '/%C3%BC?q=%C3%A4'],
    ['http://127.0.0.1:3000/ok', '/ok'],
    ['', '/'],
    [undefined, '/'],
    [['/a', '/b'], '/'],
  ])('%j -> %j', (next, expected) => {
    const out = sameOriginPath(next, origin);
    expect(out).toBe(expected);
    expect(out).not.toMatch(/[\u0000-\u001f\u007f]/);
  });
});
