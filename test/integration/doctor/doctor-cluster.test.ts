/**
 * `gradcam-audit doctor`'s Redis check on a real three-master Redis Cluster (redis-server in cluster
 * mode, joined with redis-cli --cluster create), configured as a deployment is: REDIS_CLUSTER_NODES
 * and GRADCAM_AUDIT_QUEUE_SHARDS. A healthy cluster passes with every master reached on its own
 * connection and each queue shard placed on the master that really owns its slot; a master that
 * is down fails the check by name.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisCluster, type LocalRedisCluster } from '../../../src/dev/local-services.js';
import { loadConfig } from '../../../src/shared/config.js';
import { keySpaceOf } from '../../../src/shared/queue/keys.js';
import { redisCheck } from '../../../src/worker/doctor/system-checks.js';

interface Facts {
  masters: Array<{ node: string; reachable: boolean; state?: string; slots: number }>;
  slotsCovered: number;
  shards: Array<{ prefix: string; slot: number; master: string }>;
}

describe('doctor on a Redis Cluster', { timeout: 90_000 }, () => {
  let cluster: LocalRedisCluster;
  beforeAll(async () => {
    cluster = await startRedisCluster();
  });
  afterAll(async () => {
    await cluster?.stop();
  });
  const check = async () => {
    const config = loadConfig({ REDIS_CLUSTER_NODES: cluster.nodes.join(','), GRADCAM_AUDIT_QUEUE_SHARDS: '3', GRADCAM_AUDIT_PREFIX: 'gca' });
    return redisCheck(config.redisUrl, { keySpace: keySpaceOf(config), timeoutMs: 5_000 });
  };
  const direct = (node: string): Redis => {
    const r = new Redis({ host: node.split(':')[0], port: Number(node.split(':')[1]), lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => undefined);
    return r;
  };

  it('passes a healthy cluster: every master reachable and ok, all slots served, one queue shard per master', async () => {
    const result = await check();
    expect(result.status, result.summary).toBe('ok');
    const facts = result.details as unknown as Facts;
    expect(facts.masters.map((m) => m.node).sort()).toEqual([...cluster.nodes].sort());
    for (const m of facts.masters) expect(m).toMatchObject({ reachable: true, state: 'ok' });
    expect(facts.slotsCovered).toBe(16384);
    facts.shards.forEach((s, i) => expect(s.prefix).toMatch(new RegExp(`^\\{gca#${i}(\\.\\d+)?\\}$`)));
    expect(new Set(facts.shards.map((s) => s.master)).size).toBe(3);
    expect(result.summary).toMatch(/3 masters reachable, cluster_state ok, 16384 slots served, maxmemory-policy noeviction on all; queue shards \{gca#0(\.\d+)?\}→127\.0\.0\.1:\d+, /);
    // The placement is the cluster's own: the named master owns the slot (CLUSTER KEYSLOT) and
    // takes a write to it on a plain connection, where any other master answers MOVED.
    for (const s of facts.shards) {
      const owner = direct(s.master);
      try {
        await owner.connect();
        expect(await owner.call('CLUSTER', 'KEYSLOT', `${s.prefix}:probe`)).toBe(s.slot);
        expect(await owner.set(`${s.prefix}:probe`, '1')).toBe('OK');
        await owner.del(`${s.prefix}:probe`);
      } finally {
        owner.disconnect();
      }
      const other = direct(facts.masters.find((m) => m.node !== s.master)?.node as string);
      try {
        await other.connect();
        await expect(other.set(`${s.prefix}:probe`, '1')).rejects.toThrow(/MOVED/);
      } finally {
        other.disconnect();
      }
    }
  });

  it('warns when a master may evict keys', async () => {
    const node = direct(cluster.nodes[1] as string);
    await node.connect();
    try {
      await node.config('SET', 'maxmemory-policy', 'allkeys-lru');
      const result = await check();
      expect(result.status).toBe('warn');
      expect(result.summary).toContain(`maxmemory-policy allkeys-lru on ${cluster.nodes[1]}`);
    } finally {
      await node.config('SET', 'maxmemory-policy', 'noeviction');
      node.disconnect();
    }
  });

  it('fails, naming it, when a master is down', async () => {
    const victim = cluster.nodes[2] as string;
    const node = direct(victim);
    await node.connect();
    await node.call('SHUTDOWN', 'NOSAVE').catch(() => undefined);
    node.disconnect();
    const result = await check();
    expect(result.status).toBe('fail');
    expect(result.summary).toContain(`master ${victim} unreachable`);
    expect((result.details as unknown as Facts).masters.find((m) => m.node === victim)).toMatchObject({ reachable: false });
  });
});
