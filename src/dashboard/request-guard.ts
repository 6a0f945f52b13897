/**
 * Checks every request passes before authentication, whatever the auth mode:
 *
 * 1. `Host` must name this dashboard (host-policy.ts): DNS rebinding turns an attacker's page into
 *    a same-origin client of a loopback dashboard, and only the Host header still shows it.
 * 2. State-changing requests (POST, PUT, PATCH, DELETE, on our routes and bull-board's) must come
 *    from the dashboard's own pages: `Sec-Fetch-Site` same-origin (or none: typed by the user) and
 *    `Origin` equal to the request's own origin (or an `--allowed-host`). A browser always sends at
 *    least one of them on such requests; a client sending neither is not a browser (curl, a
 *    script), cannot be driven by another site, and still needs credentials when auth is on.
 * 3. Their bodies must be JSON, except the login form's: a cross-site HTML form can only send
 *    urlencoded, multipart or text/plain bodies, and JSON from another origin needs a CORS
 *    preflight that this server never grants.
 *
 * Cookies alone cannot stop this: `SameSite=Strict` does not exist when auth is off, and basic
 * auth credentials are replayed by the browser on cross-site requests.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../shared/logger.js';
import { parseHostHeader, type AllowedHost, type HostPolicy } from './host-policy.js';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Paths whose body is a urlencoded HTML form rather than JSON. */
export const FORM_PATHS = new Set(['/login']);

/** Paths answered whatever the Host: liveness probes address pods by IP and learn nothing. */
const ANY_HOST_PATHS = new Set(['/healthz']);

export interface RequestGuardOptions {
  hosts: HostPolicy;
  /** `--allowed-host` entries, also accepted as an `Origin` (e.g. the public name behind a proxy). */
  extraOrigins: readonly AllowedHost[];
  logger: Logger;
}

export function installRequestGuard(app: FastifyInstance, options: RequestGuardOptions): void {
  const warned = new Set<string>();
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const path = request.url.split('?')[0] ?? '';
    if (ANY_HOST_PATHS.has(path)) return;

    // Check the Host the client sent, and the forwarded one when a trusted proxy supplied it.
    const raw = request.headers.host ?? '';
    for (const host of new Set([raw, request.host])) {
      if (options.hosts.allows(host)) continue;
      if (warned.size < 100 && !warned.has(host)) {
        warned.add(host);
        options.logger.warn({ host, accepted: options.hosts.names }, 'refused a request for a host name this dashboard does not serve; add it with --allowed-host if it is yours');
      }
      return reply.code(421).send({
        error: 'MISDIRECTED_REQUEST',
        message: `this dashboard does not answer to host "${host.slice(0, 200)}"; if you reach it under this name (a reverse proxy, a DNS alias), start it with --allowed-host ${host.slice(0, 200) || 'NAME'}`,
      });
    }

    if (SAFE_METHODS.has(request.method)) return;
    const refusal = crossSiteRefusal(request, options.extraOrigins);
    if (refusal) return reply.code(403).send({ error: 'CROSS_ORIGIN', message: refusal });
    if (!FORM_PATHS.has(path) && hasBody(request) && mediaType(request.headers['content-type']) !== 'application/json') {
      return reply.code(415).send({ error: 'UNSUPPORTED_MEDIA_TYPE', message: 'state-changing requests take a JSON body (Content-Type: application/json)' });
    }
  });
}

/** Why a state-changing request looks cross-site, or undefined when it does not. */
export function crossSiteRefusal(request: Pick<FastifyRequest, 'headers' | 'host' | 'protocol'>, extraOrigins: readonly AllowedHost[]): string | undefined {
  const site = header(request.headers['sec-fetch-site']);
  if (site !== undefined && site !== 'same-origin' && site !== 'none') {
    return `refused a ${site} request: actions must come from this dashboard's own pages (Sec-Fetch-Site: ${site})`;
  }
  const origin = header(request.headers.origin);
  if (origin === undefined) return undefined;
  if (!sameOrigin(origin, request, extraOrigins)) {
    return `refused a request from origin ${origin.slice(0, 200)}: actions must come from this dashboard's own pages (behind a reverse proxy, add its public name with --allowed-host and see --trust-proxy)`;
  }
  return undefined;
}

function sameOrigin(origin: string, request: Pick<FastifyRequest, 'host' | 'protocol'>, extraOrigins: readonly AllowedHost[]): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false; // includes "null": sandboxed frames, privacy-sensitive redirects
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== origin.toLowerCase().replace(/\/$/, '')) return false;
  // A page served over https must not be driven from plain http, even on the same name. The
  // reverse is fine: behind a TLS proxy without --trust-proxy the request looks like http.
  if (request.protocol === 'https' && url.protocol !== 'https:') return false;
  const self = hostOf(`${url.protocol}//${request.host}`);
  if (self !== undefined && self === url.host) return true;
  // Explicit operator entries: a proxy that rewrites Host keeps the public name only in Origin.
  const given = parseHostHeader(url.host);
  return given !== undefined && extraOrigins.some((e) => e.name === given.name && (e.port === undefined || e.port === Number(url.port || (url.protocol === 'https:' ? 443 : 80))));
}

/** `host[:port]` as URL serialises it (default port dropped, lowercase), or undefined. */
function hostOf(originLike: string): string | undefined {
  try {
    return new URL(originLike).host;
  } catch {
    return undefined;
  }
}

function hasBody(request: FastifyRequest): boolean {
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
