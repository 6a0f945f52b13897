import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/shared/config.js';
import { bullPrefix, jobIdFor } from '../../../src/shared/queue/contract.js';
import { keySpaceOf } from '../../../src/shared/queue/keys.js';
import { CLUSTER_SLOTS, crc16, keySlot, shardOfJob, shardPrefix } from '../../../src/shared/queue/shards.js';
import { configErrorOf } from '../../helpers/errors.js';

describe('queue shards', () => {
  it('hashes like Redis Cluster: CRC16-XMODEM, and only the first non-empty {tag}', () => {
    // The check value of CRC16-XMODEM, quoted in the Redis Cluster specification.
    expect(crc16('123456789')).toBe(0x31c3);
    expect(keySlot('{user1000}.following')).toBe(keySlot('{user1000}.followers'));
    expect(keySlot('foo{}{bar}')).toBe(crc16('foo{}{bar}') % CLUSTER_SLOTS);
    expect(keySlot('foo{{bar}}zap')).toBe(crc16('{bar') % CLUSTER_SLOTS);
    // The integration test on a real cluster checks keySlot against CLUSTER KEYSLOT.
  });

  it('keeps one shard under the plain prefix ({gca} on a cluster): the names before sharding', () => {
    expect(bullPrefix(keySpaceOf({ keyPrefix: 'gca', redisUrl: 'redis://h:1' }))).toBe('gca');
    expect(bullPrefix(keySpaceOf({ keyPrefix: 'gca', redisUrl: 'redis+cluster://h:1', queueShards: 1 }))).toBe('{gca}');
  });

  it.each([2, 3, 4, 6, 16])('gives %i shards distinct tags whose slots sit in the middle of their N-th of the slot space', (n) => {
    const ks = { prefix: 'gca', cluster: true, queueShards: n };
    const prefixes = Array.from({ length: n }, (_, i) => shardPrefix(ks, i));
    expect(new Set(prefixes).size).toBe(n);
    prefixes.forEach((p, i) => {
      expect(p).toMatch(new RegExp(`^\\{gca#${i}(\\.\\d+)?\\}$`));
      const w = CLUSTER_SLOTS / n;
      expect(keySlot(`${p}:q:wait`)).toBeGreaterThanOrEqual(i * w + w / 4);
      expect(keySlot(`${p}:q:wait`)).toBeLessThan(i * w + (3 * w) / 4);
    });
    // Deterministic: every process derives the same names.
    expect(Array.from({ length: n }, (_, i) => shardPrefix({ ...ks }, i))).toEqual(prefixes);
  });

  it('spreads one run\'s jobs evenly over the shards, each job always to the same shard', () => {
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 8000; i++) counts[shardOfJob(jobIdFor('run-1', 'mil3x0ab12cd34', `in/img-${i}.png`), 4)]! += 1;
    for (const c of counts) expect(Math.abs(c - 2000)).toBeLessThan(200);
    const id = jobIdFor('run-1', 'mil3x0ab12cd34', 'in/a.png');
    expect(shardOfJob(id, 4)).toBe(shardOfJob(id, 4));
    expect(shardOfJob(id, 1)).toBe(0);
  });

  it('reads GRADCAM_AUDIT_QUEUE_SHARDS (default 1) and names it in errors', () => {
    expect(loadConfig({}).queueShards).toBe(1);
    expect(loadConfig({ GRADCAM_AUDIT_QUEUE_SHARDS: '6' }).queueShards).toBe(6);
    const err = configErrorOf(() => loadConfig({ GRADCAM_AUDIT_QUEUE_SHARDS: '0' }));
    expect(err.variable).toBe('GRADCAM_AUDIT_QUEUE_SHARDS');
    expect(err.message).toMatch(/from 1 to 256/);
  });
});
