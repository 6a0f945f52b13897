import { configErrorOf } from '../../helpers/errors.js';
import { describe, expect, it } from 'vitest';
import { DEFAULTS, loadConfig, redact } from '../../../src/shared/config.js';

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

  it('lets flag overrides win over the environment', () => {
    const c = loadConfig({ REDIS_URL: 'redis://a:1' }, { redisUrl: 'redis://b:2' });
    expect(c.redisUrl).toBe('redis://b:2');
  });
});
