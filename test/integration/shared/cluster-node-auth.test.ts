/**
 * A cluster URL's credentials reach both the `Cluster` client's node connections (`createRedis`)
 * and a check's own connection to one node (`createClusterNodeRedis`), decided in one place. A real
 * redis-server with an ACL user and no default user access stands for the node.
 */
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisServer, type LocalService } from '../../../src/dev/local-services.js';
import { createClusterNodeRedis, createRedis } from '../../../src/shared/queue/redis.js';

describe('cluster node credentials', () => {
  let server: LocalService;
  let node: { host: string; port: number };
  beforeAll(async () => {
    server = await startRedisServer();
    const admin = new Redis(server.url);
    try {
      await admin.call('ACL', 'SETUSER', 'auditor', 'on', '>s3cret:pw', '~*', '+@all');
      await admin.call('ACL', 'SETUSER', 'default', 'off');
    } finally {
      admin.disconnect();
    }
    const { hostname, port } = new URL(server.url);
    node = { host: hostname, port: Number(port) };
  });
  afterAll(async () => {
    await server?.stop();
  });

  /** PONG, or the server's refusal (ioredis reports it as an 'error' event and closes). */
  const ping = async (url: string): Promise<string> => {
    const one = createClusterNodeRedis(url, node, { connectTimeoutMs: 2_000 });
    const refusals: string[] = [];
    one.on('error', (err: Error) => refusals.push(err.message));
    try {
      await one.connect();
      return await one.ping();
    } catch (err) {
      return [...refusals, (err as Error).message].join('; ');
    } finally {
      one.disconnect();
    }
  };

  it("a node's own connection authenticates with the URL's user and password (decoded), and fails without them", async () => {
    const url = `redis+cluster://auditor:${encodeURIComponent('s3cret:pw')}@${node.host}:${node.port}`;
    expect(await ping(url)).toBe('PONG');
    expect(await ping(`redis+cluster://auditor:wrong@${node.host}:${node.port}`)).toMatch(/WRONGPASS/);
    expect(await ping(`redis+cluster://${node.host}:${node.port}`)).toMatch(/NOAUTH|NOPERM|disabled/i);
  });

  it("the Cluster client's node connections carry the same credentials and TLS", () => {
    const cluster = createRedis(`rediss+cluster://auditor:${encodeURIComponent('s3cret:pw')}@${node.host}:${node.port}`, { role: 'client', name: 'gca-test' });
    cluster.on('error', () => undefined);
    try {
      const direct = createClusterNodeRedis(`rediss+cluster://auditor:${encodeURIComponent('s3cret:pw')}@${node.host}:${node.port}`, node, { connectTimeoutMs: 1_000 });
      expect(cluster).toBeInstanceOf(Cluster);
      expect((cluster as Cluster).options.redisOptions).toMatchObject({ username: 'auditor', password: 's3cret:pw', tls: {} });
      expect(direct.options).toMatchObject({ username: 'auditor', password: 's3cret:pw', tls: {} });
      direct.disconnect();
    } finally {
      cluster.disconnect();
    }
  });
});
