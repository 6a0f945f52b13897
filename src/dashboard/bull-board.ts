/**
 * bull-board (queue internals: waiting/active/failed jobs, payloads, stack traces) mounted under
 * `/queues`, behind the same access gate and request guard as the rest of the dashboard.
 *
 * Read-only by default. Its job adding and editing let anyone who can use the dashboard put an
 * arbitrary payload on the queue (another bucket as the source, other options), and its queue
 * actions (clean, obliterate, pause) can wipe a run's bookkeeping; the dashboard's own retry of
 * failed images covers what operators need day to day. `--queue-admin` turns them on for people
 * who must manage the queue by hand; workers still check every job against its run record.
 */
import { createBullBoard } from '@bull-board/api';
import type { IServerAdapter } from '@bull-board/api/typings/app';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { Queue } from 'bullmq';
import type { FastifyInstance } from 'fastify';

export const BULL_BOARD_BASE = '/queues';

export async function mountBullBoard(app: FastifyInstance, queues: Queue[], options: { readOnly: boolean }): Promise<void> {
  const adapter = new FastifyAdapter();
  adapter.setBasePath(BULL_BOARD_BASE);
  createBullBoard({
    // Queue shards share the queue's name; bull-board keys its routes by name, so each shard gets
    // its own (`shard0-gradcam-audit`, …) and says which shard it is.
    queues: queues.map((q, i) =>
      new BullMQAdapter(q, {
        readOnlyMode: options.readOnly,
        ...(queues.length > 1 ? { prefix: `shard${i}-`, displayName: `${q.name} (shard ${i + 1} of ${queues.length})` } : {}),
      }),
    ),
    // @bull-board/fastify 9.10.1 pins its own copy of @bull-board/api 9.10.1; the two copies differ
    // only in private fields, which TypeScript compares nominally. At runtime the adapter receives
    // the routes and UI path of the top-level api package, which is what we want.
    serverAdapter: adapter as unknown as IServerAdapter,
    options: { uiConfig: { boardTitle: 'gradcam-audit' } },
  });
  await app.register(adapter.registerPlugin(), { prefix: BULL_BOARD_BASE });
}
