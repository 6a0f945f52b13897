/**
 * The worker sizes the S3 client's socket pool to its own concurrency: with the SDK's default of 50,
 * a worker with large batches would queue its downloads inside the SDK. A local HTTP server that
 * answers HEAD slowly counts how many connections are open at once.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3ObjectStore } from '../../../src/shared/storage/s3-store.js';
import { PREFETCH_BATCHES, resolvePipelineOptions, s3SocketsFor } from '../../../src/worker/pipeline/options.js';

describe('S3 socket pool', () => {
  let server: Server;
  let endpoint: string;
  let open = 0;
  let peak = 0;

  beforeAll(async () => {
    server = createServer((req, res) => {
      // A HEAD answered after 150 ms, so concurrent requests overlap on the server.
      setTimeout(() => {
        res.writeHead(200, { 'content-length': '1', etag: '"e"', 'last-modified': new Date(0).toUTCString() });
        res.end();
      }, 150);
      void req;
    });
    server.on('connection', (socket) => {
      open++;
      peak = Math.max(peak, open);
      socket.on('close', () => open--);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  async function peakConnections(maxSockets: number | undefined, requests: number): Promise<number> {
    // Sockets of the previous client close asynchronously after destroy().
    for (let i = 0; open > 0 && i < 200; i++) await new Promise((r) => setTimeout(r, 10));
    peak = 0;
    const store = S3ObjectStore.fromConfig({
      region: 'us-east-1',
      endpoint,
      forcePathStyle: true,
      maxAttempts: 1,
      credentials: { accessKeyId: 'k', secretAccessKey: 's' },
      ...(maxSockets === undefined ? {} : { maxSockets }),
    });
    await Promise.all(Array.from({ length: requests }, (_, i) => store.head('b', `k${i}`)));
    store.destroy();
    return peak;
  }

  it('opens at most maxSockets connections, and the SDK default caps a large worker at 50', async () => {
    expect(await peakConnections(3, 12)).toBe(3);
    expect(await peakConnections(undefined, 60)).toBe(50);
    expect(await peakConnections(80, 60)).toBe(60);
  });

  it('a worker asks for one socket per job it holds and per upload', () => {
    // Default prefetch: PREFETCH_BATCHES batches beyond the one in the engine.
    expect(s3SocketsFor(resolvePipelineOptions({ batchSize: 64, uploadConcurrency: 8 }))).toBe(64 + PREFETCH_BATCHES * 64 + 8 + 4);
    expect(s3SocketsFor(resolvePipelineOptions({ batchSize: 8, prefetch: 0, uploadConcurrency: 2 }))).toBe(14);
  });
});
