/**
 * Which `Host` names the dashboard answers to. DNS rebinding points an attacker's name at
 * 127.0.0.1, after which the attacker's page is "same origin" with a loopback dashboard that has
 * no credentials; the only thing that still tells them apart is the `Host` header, which carries
 * the attacker's name. So the dashboard answers only to names it is bound to (and ones the
 * operator adds with `--allowed-host`), and refuses everything else with 421.
 *
 * Ports: bound names are accepted on any port, because port forwarding (kubectl port-forward,
 * docker -p, SSH tunnels) changes the port the browser sees while the name stays, and rebinding
 * is about the name, which the attacker controls, not the port. An `--allowed-host` entry with a
 * port accepts that port only. The Origin check (see request-guard.ts) compares host *and* port.
 */
import { isIP } from 'node:net';
import { hostname as osHostname, networkInterfaces } from 'node:os';
import { ConfigError } from '../shared/errors.js';

/** A name the dashboard answers to; `port` undefined means any port. */
export interface AllowedHost {
  name: string;
  port?: number;
}

export interface HostPolicy {
  /** True when the `Host` header value names this dashboard. */
  allows(hostHeader: string): boolean;
  /** The accepted names, for the operator's log line. */
  readonly names: readonly string[];
}

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];

/** Split `host[:port]` (IPv6 in brackets) and normalise the name; undefined when malformed. */
export function parseHostHeader(value: string): AllowedHost | undefined {
  const m = /^(\[[0-9a-f:.]+\]|[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?)\.?(?::(\d{1,5}))?$/i.exec(value.trim());
  if (!m) return undefined;
  const port = m[2] === undefined ? undefined : Number(m[2]);
  if (port !== undefined && port > 65535) return undefined;
  return { name: normaliseName(m[1] as string), port };
}

/** Parse one `--allowed-host` value: `name`, `name:port`, `[v6]` or `[v6]:port`. */
export function parseAllowedHost(value: string): AllowedHost {
  const parsed = parseHostHeader(value);
  if (!parsed) throw new ConfigError('--allowed-host', `expected a host name or address, optionally with :port (e.g. dashboard.example.com or 10.0.0.5:8080), got "${value}"`);
  return parsed;
}

/**
 * The names a dashboard bound to `bindHost` answers to: the bind address itself; loopback names
 * when bound to loopback; for a wildcard bind (0.0.0.0, ::) also every address of this machine
 * and its host name; plus the operator's `extra` entries.
 */
export function hostPolicyFor(bindHost: string, extra: readonly AllowedHost[] = []): HostPolicy {
  const entries: AllowedHost[] = [];
  const add = (name: string): void => void entries.push({ name: normaliseName(name) });
  const bind = bindHost.replace(/^\[|\]$/g, '');
  const wildcard = bind === '0.0.0.0' || bind === '::' || bind === '';
  if (!wildcard) add(isIP(bind) === 6 ? `[${bind}]` : bind);
  if (wildcard || isLoopback(bind)) for (const name of LOOPBACK_NAMES) add(name);
  if (wildcard) {
    add(osHostname());
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) add(a.family === 'IPv6' ? `[${a.address.replace(/%.*$/, '')}]` : a.address);
    }
  }
  entries.push(...extra);
  const names = [...new Set(entries.map((e) => (e.port === undefined ? e.name : `${e.name}:${e.port}`)))];
  return {
    names,
    allows(hostHeader) {
      const h = parseHostHeader(hostHeader);
      if (!h) return false;
      // A Host without a port means the scheme's default port.
      return entries.some((e) => e.name === h.name && (e.port === undefined || e.port === h.port || (h.port === undefined && (e.port === 80 || e.port === 443))));
    },
  };
}

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(h);
  return false;
}

function normaliseName(name: string): string {
  const lower = name.toLowerCase().replace(/\.$/, '');
  if (lower.startsWith('[')) {
    // One spelling per IPv6 address: [0:0:0:0:0:0:0:1] and [::1] are the same host.
    try {
      return new URL(`http://${lower}/`).hostname;
    } catch {
      return lower;
    }
  }
  return lower;
}
