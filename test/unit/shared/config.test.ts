import { configErrorOf } from '../../helpers/errors.js';
import { describe, expect, it } from 'vitest';
import { DEFAULTS, loadConfig, redact } from '../../../src/shared/config.js';
import { keySpaceOf, runKeys, workersDataKey, workersIndexKey } from '../../../src/shared/queue/keys.js';
import { bullPrefix } from '../../../src/shared/queue/contract.js';
import { parseClusterUrl } from '../../../src/shared/redis-target.js';

describe('loadConfig', () => {
  it('uses the defaults from one place', () => {
    const c = loadConfig({});
    expect(c.redisUrl).toBe(DEFAULTS.redisUrl);
    expect(c.s3.endpoint).toBeUndefined();
    expect(c.s3.forcePathStyle).toBe(false);
    expect(c.s3.region).toBe('us-east-1');
    expect(c.logLevel).toBe('info');
  });

  it('follows the AWS SDK variables and defaults path style on for custom endpoints', () => {
    const c = loadConfig({ AWS_ENDPOINT_URL: 'http://minio:9000/', AWS_REGION: 'eu-west-1' });
    expect(c.s3.endpoint).toBe('http://minio:9000');
    expect(c.s3.forcePathStyle).toBe(true);
    expect(c.s3.region).toBe('eu-west-1');
    const specific = loadConfig({ AWS_ENDPOINT_URL: 'http://a:1', AWS_ENDPOINT_URL_S3: 'http://b:2', S3_FORCE_PATH_STYLE: 'false' });
    expect(specific.s3.endpoint).toBe('http://b:2');
    expect(specific.s3.forcePathStyle).toBe(false);
  });

  it.each([
    [{ REDIS_URL: 'localhost:6379' }, 'REDIS_URL', /redis:\/\//],
    [{ REDIS_URL: 'http://localhost:6379' }, 'REDIS_URL', /protocol "http:"/],
    [{ AWS_ENDPOINT_URL_S3: 'minio:9000' }, 'AWS_ENDPOINT_URL_S3', /http:\/\/ or https:\/\//],
    [{ S3_FORCE_PATH_STYLE: 'maybe' }, 'S3_FORCE_PATH_STYLE', /true or false/],
    [{ LOG_LEVEL: 'verbose' }, 'LOG_LEVEL', /one of fatal, error/],
    [{ AWS_MAX_ATTEMPTS: '0' }, 'AWS_MAX_ATTEMPTS', /from 1 to 20/],
    [{ GRADCAM_AUDIT_QUEUE: 'a:b' }, 'GRADCAM_AUDIT_QUEUE', /no ':'/],
    [{ REDIS_CLUSTER_NODES: '10.0.0.1' }, 'REDIS_CLUSTER_NODES', /host:port entries/],
    [{ REDIS_CLUSTER_NODES: 'a:1,b:70000' }, 'REDIS_CLUSTER_NODES', /got "b:70000"/],
    [{ REDIS_CLUSTER_NODES: ' , ' }, 'REDIS_CLUSTER_NODES', /at least one host:port/],
    [{ REDIS_URL: 'redis+cluster://' }, 'REDIS_URL', /redis\+cluster:\/\/\[user:password@\]host:port/],
  ])('names the bad variable: %j', (env, variable, message) => {
    const err = configErrorOf(() => loadConfig(env));
    expect(err.variable).toBe(variable);
    expect(err.message.startsWith(`${variable}: `)).toBe(true);
    expect(err.message).toMatch(message);
  });

  it('never echoes a Redis password in errors', () => {
    const err = configErrorOf(() => loadConfig({ REDIS_URL: 'http://user:hunter2@host:6379' }));
    expect(err.message).not.toContain('hunter2');
    expect(redact('redis://:s3cret@host:6379')).not.toContain('s3cret');
  });

  it('hides a password that holds "@" or "/", in cluster URLs too, and in URLs quoted inside messages', () => {
    for (const [url, shown] of [
      ['redis+cluster://default:p@ssw0rd@h1:6379,h2:6379', 'redis+cluster://default:***@h1:6379,h2:6379'],
      ['redis://default:p@ssw0rd@h1:6379', 'redis://default:***@h1:6379'],
      ['redis+cluster://:pa/ss@h1:6379,h2:6379', 'redis+cluster://:***@h1:6379,h2:6379'],
      ['redis://default:Zk3/q+9Xw==@10.0.0.1:6379/0', 'redis://default:***@10.0.0.1:6379/0'],
      ['connect to "redis://u:p@ss@h:1" failed', 'connect to "redis://u:***@h:1" failed'],
      ['redis://127.0.0.1:6379', 'redis://127.0.0.1:6379'],
    ]) expect(redact(url as string)).toBe(shown);
    // A cluster URL the parser refuses is quoted without its password.
    for (const REDIS_URL of ['redis+cluster://default:Zk3/q+9Xw==@10.0.0.1:6379/extra', 'redis+cluster://default:p@ssw0rd@h1:6379/x,h2:6379']) {
      const err = configErrorOf(() => loadConfig({ REDIS_URL }));
      expect(err.message).toMatch(/^REDIS_URL: expected redis\+cluster:/);
      expect(err.message).not.toMatch(/Zk3|q\+9Xw|ssw0rd/);
    }
    // The password runs to the last '@'; a node host never holds '@' or '/'.
    expect(parseClusterUrl(loadConfig({ REDIS_URL: 'redis+cluster://default:Zk3/q+9Xw==@10.0.0.1:6379,10.0.0.2:6379' }).redisUrl)).toMatchObject({ username: 'default', password: 'Zk3/q+9Xw==', nodes: [{ host: '10.0.0.1' }, { host: '10.0.0.2' }] });
    expect(parseClusterUrl('redis+cluster://u:p@ss@h1:6379')).toMatchObject({ password: 'p@ss', nodes: [{ host: 'h1', port: 6379 }] });
    const nodes = configErrorOf(() => loadConfig({ REDIS_CLUSTER_NODES: 'u:s3cret@h1:6379' })).message;
    expect(nodes).toMatch(/^REDIS_CLUSTER_NODES: a node is host:port, without "@"/);
    expect(nodes).not.toContain('s3cret');
  });

  it('lets flag overrides win over the environment', () => {
    const c = loadConfig({ REDIS_URL: 'redis://a:1' }, { redisUrl: 'redis://b:2' });
    expect(c.redisUrl).toBe('redis://b:2');
  });

  it('names a Redis Cluster by REDIS_CLUSTER_NODES or a redis+cluster:// REDIS_URL, keeping REDIS_URL\'s password and TLS', () => {
    const nodes = loadConfig({ REDIS_CLUSTER_NODES: '10.0.0.1:7000, 10.0.0.2:7001,[::1]:7002' });
    expect(nodes.redisUrl).toBe('redis+cluster://10.0.0.1:7000,10.0.0.2:7001,[::1]:7002');
    expect(parseClusterUrl(nodes.redisUrl).nodes).toEqual([
      { host: '10.0.0.1', port: 7000 },
      { host: '10.0.0.2', port: 7001 },
      { host: '::1', port: 7002 },
    ]);
    const withAuth = loadConfig({ REDIS_URL: 'rediss://app:p%40ss@ignored:6379', REDIS_CLUSTER_NODES: 'n1:7000,n2:7000' });
    expect(parseClusterUrl(withAuth.redisUrl)).toEqual({ nodes: [{ host: 'n1', port: 7000 }, { host: 'n2', port: 7000 }], username: 'app', password: 'p@ss', tls: true });
    const url = loadConfig({ REDIS_URL: 'redis+cluster://:s3cret@n1:7000,n2:7001' });
    expect(parseClusterUrl(url.redisUrl)).toMatchObject({ password: 's3cret', tls: false });
    expect(redact(url.redisUrl)).not.toContain('s3cret');
  });

  it('hash-tags keys on a cluster only: one slot per run, the BullMQ prefix as a tag; single-server names unchanged', () => {
    const single = keySpaceOf({ keyPrefix: 'gca', redisUrl: 'redis://h:6379' });
    expect(runKeys(single, 'r1').pending).toBe('gca:run:r1:pending');
    expect(bullPrefix(single)).toBe('gca');
    expect(workersIndexKey(single)).toBe('gca:workers');
    const cluster = keySpaceOf({ keyPrefix: 'gca', redisUrl: 'redis+cluster://h:7000' });
    const tag = (k: string): string => /\{([^}]+)\}/.exec(k)?.[1] ?? k;
    expect(new Set(Object.values(runKeys(cluster, 'r1')).map(tag))).toEqual(new Set(['r1']));
    expect(bullPrefix(cluster)).toBe('{gca}');
    expect(tag(workersIndexKey(cluster))).toBe(tag(workersDataKey(cluster)));
  });
});
