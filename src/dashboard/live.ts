/**
 * Server-sent events for the live pages: every `intervalMs` each open stream receives a `runs`
 * event (the overview) and, when it asked for one run (`?run=ID`), a `run` event with that run.
 * Streams bypass Fastify's reply pipeline, so they set their own headers; they are ended on
 * shutdown, because an open stream would otherwise keep `close()` waiting forever.
 *
 * A client that stops reading (a suspended tab, a stalled proxy) must not grow the server's memory:
 * once a write reports a full buffer, the stream skips its ticks until the socket drains, so it
 * holds at most one tick beyond Node's buffer; the next tick after the drain sends the state of
 * then, which is all a live page needs. The number of open streams is capped too.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import { object, RUN_ID } from './schemas.js';
import { UI_CSP } from './security-headers.js';

export interface LiveSource {
  snapshot(runId: string | undefined): Promise<Array<{ event: string; data: unknown }>>;
}

export interface LiveStreamOptions {
  /** DashboardOptions.liveIntervalMs. */
  intervalMs: number;
  /** DashboardOptions.maxLiveStreams: streams open at once; more are answered 503. */
  maxStreams: number;
}

export function installLiveStream(app: FastifyInstance, source: LiveSource, { intervalMs, maxStreams }: LiveStreamOptions): void {
  const open = new Set<ServerResponse>();
  app.addHook('preClose', async () => {
    for (const res of open) res.end();
    open.clear();
  });

  app.get('/api/events', { schema: { querystring: object({ run: RUN_ID }) } }, async (request: FastifyRequest<{ Querystring: { run?: string } }>, reply: FastifyReply) => {
    const runId = typeof request.query.run === 'string' && request.query.run !== '' ? request.query.run : undefined;
    if (open.size >= maxStreams) {
      return reply.code(503).header('Retry-After', '5').send({ error: 'TRANSIENT', message: `${open.size} live streams are open, the most this dashboard serves; try again later` });
    }
    const res = reply.raw;
    reply.hijack();
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
      'X-Content-Type-Options': 'nosniff',
      'Content-Security-Policy': UI_CSP,
    });
    open.add(res);
    let busy = false;
    let full = false;
    const send = (text: string): void => {
      if (!res.write(text) && !full) {
        full = true;
        res.once('drain', () => (full = false));
      }
    };
    const tick = async (): Promise<void> => {
      if (busy || full || res.writableEnded) return;
      busy = true;
      try {
        send((await source.snapshot(runId)).map(({ event, data }) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`).join(''));
      } catch (err) {
        send(`event: problem\ndata: ${JSON.stringify({ message: (err as Error).message })}\n\n`);
      } finally {
        busy = false;
      }
    };
    // Tell the browser how soon to reconnect if the stream drops (e.g. a dashboard restart).
    send(`retry: ${Math.max(1000, intervalMs)}\n\n`);
    void tick();
    const timer = setInterval(() => void tick(), intervalMs);
    const stop = (): void => {
      clearInterval(timer);
      open.delete(res);
    };
    request.raw.on('close', stop);
    res.on('close', stop);
  });
}
