/**
 * A loopback reverse proxy in front of the S3 server that injects faults: S3-style 500/503 error
 * responses (with XML bodies, so the SDK classifies them as it would real ones), added latency and
 * connection resets. Counts what it forwarded and what it broke, so tests can assert that faults
 * really happened and were retried.
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { mulberry32 } from '../../src/worker/model/random-weights.js';

export interface FaultRule {
  /** Which requests the rule may hit. Default: all. */
  match?: (req: { method: string; path: string }) => boolean;
  /**
   * Fault kind. `reset` destroys the socket without a response; `hang` never forwards nor answers
   * (the request waits until its client gives up or dies, or the proxy closes). `stall` forwards
   * the request and sends the response's status, headers and first `afterBytes` body bytes, then
   * nothing more (a response that stops mid-body).
   */
  kind: 'status500' | 'status503' | 'reset' | 'delay' | 'hang' | 'stall';
  /** Probability of hitting a matching request (0..1). Default 1. */
  probability?: number;
  /** Hit at most this many requests in total. Default unlimited. */
  limit?: number;
  /** Added latency for `delay` (ms). */
  delayMs?: number;
  /** Body bytes a `stall` sends before it stops. Default 0. */
  afterBytes?: number;
}

export interface FaultProxy {
  url: string;
  stats: { forwarded: number; injected: number; byKind: Record<string, number> };
  setRules(rules: FaultRule[]): void;
  close(): Promise<void>;
}

export async function startFaultProxy(target: string, options: { rules?: FaultRule[]; seed?: number } = {}): Promise<FaultProxy> {
  const upstream = new URL(target);
  let rules: Array<FaultRule & { hits: number }> = (options.rules ?? []).map((r) => ({ ...r, hits: 0 }));
  // Seeded, so a failing run can be replayed with the same fault pattern.
  const random = mulberry32(options.seed ?? 1);
  const stats = { forwarded: 0, injected: 0, byKind: {} as Record<string, number> };
  const sockets = new Set<Socket>();

  /** Forward the request; with `stallAfter`, pass on only that many body bytes of the answer. */
  const forward = (req: IncomingMessage, res: ServerResponse, stallAfter?: number): void => {
    stats.forwarded += 1;
    const out = request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        if (stallAfter === undefined) return void up.pipe(res);
        let left = stallAfter;
        up.on('data', (chunk: Buffer) => {
          if (left > 0) res.write(chunk.subarray(0, left));
          left -= Math.min(left, chunk.length);
        });
      },
    );
    out.on('error', () => res.destroy());
    req.pipe(out);
  };

  const server: Server = createServer((req, res) => {
    const info = { method: req.method ?? 'GET', path: req.url ?? '/' };
    const rule = rules.find(
      (r) => (r.limit === undefined || r.hits < r.limit) && (r.match?.(info) ?? true) && random() < (r.probability ?? 1),
    );
    if (!rule) return forward(req, res);
    rule.hits += 1;
    stats.injected += 1;
    stats.byKind[rule.kind] = (stats.byKind[rule.kind] ?? 0) + 1;
    switch (rule.kind) {
      case 'delay':
        setTimeout(() => forward(req, res), rule.delayMs ?? 200);
        return;
      case 'reset':
        req.socket.destroy();
        return;
      case 'hang':
        return;
      case 'stall':
        forward(req, res, rule.afterBytes ?? 0);
        return;
      case 'status500':
      case 'status503': {
        // Drain the body first so the client sees a clean response rather than EPIPE.
        req.resume();
        req.on('end', () => {
          const status = rule.kind === 'status500' ? 500 : 503;
          const code = status === 500 ? 'InternalError' : 'SlowDown';
          const body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected fault</Message><RequestId>fault</RequestId></Error>`;
          res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
          res.end(body);
        });
        return;
      }
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stats,
    setRules(next) {
      rules = next.map((r) => ({ ...r, hits: 0 }));
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
