/**
 * Which Redis a deployment talks to, as one URL: `redis://` / `rediss://` for one server, or
 * `redis+cluster://[user:password@]host:port,host:port,...` (`rediss+cluster://` with TLS) for a
 * Redis Cluster, named by some of its nodes (the client discovers the rest). The configuration
 * turns `REDIS_CLUSTER_NODES` into that URL, so every command connects, and decides its key
 * layout (shared/queue/keys.ts), from the one string.
 */
import { ConfigError } from './errors.js';

export interface ClusterTarget {
  nodes: Array<{ host: string; port: number }>;
  username?: string;
  password?: string;
  tls: boolean;
}

// The userinfo runs to the last '@' (a password may hold '@', '/', '?', '#'); the node list after it
// holds none of those, so no part of a password can be read as a host.
const CLUSTER_URL_RE = /^(rediss?)\+cluster:\/\/(?:(.*)@)?([^/?#@]+)\/?$/;

/**
 * `text` (a URL, or a message or log line that quotes URLs) with every URL's credentials hidden: all
 * between `://` and the last '@' before the next whitespace or quote, the user name aside (kept when
 * it stands before a ':'). Works on text, not on parsed URLs, because the URLs that need it most are
 * the ones no parser accepts: a `redis+cluster://` node list, a password holding '@' or '/'.
 */
export function redact(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)([^\s"'<>]*)@/gi, (_all, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    const user = colon < 0 ? '' : userinfo.slice(0, colon);
    return colon < 0 || /[@/?#]/.test(user) ? `${scheme}***@` : `${scheme}${user}:***@`;
  });
}

export function isClusterUrl(url: string): boolean {
  return /^rediss?\+cluster:\/\//.test(url);
}

/** Parse `host:port,host:port` (the seed nodes of a cluster); `what` names the setting in errors. */
export function parseClusterNodes(value: string, what: string): ClusterTarget['nodes'] {
  const nodes = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => {
      // No '@' or '/' in a host: what holds one is part of a URL's credentials, never a node (and
      // is not quoted back).
      if (/[@/]/.test(s)) throw new ConfigError(what, 'a node is host:port, without "@" or "/"; a password goes in REDIS_URL (redis+cluster://user:password@host:port,...)');
      const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s[\]@/]+):(\d{1,5})$/.exec(s);
      const port = m ? Number(m[2]) : NaN;
      if (!m || port < 1 || port > 65535) throw new ConfigError(what, `expected host:port entries separated by commas, such as 10.0.0.1:6379,10.0.0.2:6379; got "${s}"`);
      return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port };
    });
  if (nodes.length === 0) throw new ConfigError(what, 'expected at least one host:port of the cluster, such as 10.0.0.1:6379');
  return nodes;
}

/** Parse a `redis+cluster://` URL; `what` names the setting in errors. */
export function parseClusterUrl(url: string, what = 'REDIS_URL'): ClusterTarget {
  const m = CLUSTER_URL_RE.exec(url);
  if (!m) throw new ConfigError(what, `expected redis+cluster://[user:password@]host:port,host:port,..., got "${redact(url)}"`);
  const [, scheme, userinfo, hosts] = m as unknown as [string, string, string | undefined, string];
  const target: ClusterTarget = { nodes: parseClusterNodes(hosts, what), tls: scheme === 'rediss' };
  if (userinfo) {
    const colon = userinfo.indexOf(':');
    const user = decodeURIComponent(colon < 0 ? userinfo : userinfo.slice(0, colon));
    if (user) target.username = user;
    if (colon >= 0) target.password = decodeURIComponent(userinfo.slice(colon + 1));
  }
  return target;
}

/**
 * The cluster URL for `REDIS_CLUSTER_NODES`, taking credentials and TLS from `REDIS_URL` when that
 * is set too (its host is then ignored): a deployment that already passes its password in REDIS_URL
 * only adds the node list.
 */
export function clusterUrlFromNodes(nodes: string, credentialsFrom: string | undefined): string {
  const list = parseClusterNodes(nodes, 'REDIS_CLUSTER_NODES')
    .map((n) => (n.host.includes(':') ? `[${n.host}]:${n.port}` : `${n.host}:${n.port}`))
    .join(',');
  let scheme = 'redis';
  let userinfo = '';
  if (credentialsFrom) {
    if (isClusterUrl(credentialsFrom)) {
      const c = parseClusterUrl(credentialsFrom);
      scheme = c.tls ? 'rediss' : 'redis';
      if (c.username || c.password) userinfo = `${encodeURIComponent(c.username ?? '')}${c.password !== undefined ? `:${encodeURIComponent(c.password)}` : ''}@`;
    } else {
      const u = new URL(credentialsFrom);
      scheme = u.protocol === 'rediss:' ? 'rediss' : 'redis';
      if (u.username || u.password) userinfo = `${u.username}${u.password ? `:${u.password}` : ''}@`;
    }
  }
  return `${scheme}+cluster://${userinfo}${list}`;
}
