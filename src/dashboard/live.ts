/**
 * Server-sent events for the live pages: every `intervalMs` each open stream receives a `runs`
 * event (the overview) and, when it asked for one run (`?run=ID`), a `run` event with that run.
 * Streams bypass Fastify's reply pipeline, so they set their own headers; they are ended on
 * shutdown, because an open stream would otherwise keep `close()` waiting forever.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import { object, RUN_ID } from './schemas.js';
import { UI_CSP } from './security-headers.js';

export interface LiveSource {
  snapshot(runId: string | undefined): Promise<Array<{ event: string; data: unknown }>>;
}

export function installLiveStream(app: FastifyInstance, source: LiveSource, intervalMs: number): void {
  const open = new Set<ServerResponse>();
  app.addHook('preClose', async () => {
    for (const res of open) res.end();
    open.clear();
  });

  app.get('/api/events', { schema: { querystring: object({ run: RUN_ID }) } }, async (request: FastifyRequest<{ Querystring: { run?: string } }>, reply: FastifyReply) => {
    const runId = typeof request.query.run === 'string' && request.query.run !== '' ? request.query.run : undefined;
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
    const tick = async (): Promise<void> => {
      if (busy || res.writableEnded) return;
      busy = true;
      try {
        for (const { event, data } of await source.snapshot(runId)) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      } catch (err) {
        res.write(`event: problem\ndata: ${JSON.stringify({ message: (err as Error).message })}\n\n`);
      } finally {
        busy = false;
      }
    };
    // Tell the browser how soon to reconnect if the stream drops (e.g. a dashboard restart).
    res.write(`retry: ${Math.max(1000, intervalMs)}\n\n`);
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
