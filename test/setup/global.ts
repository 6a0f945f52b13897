/**
 * One Redis and one S3 server for the whole test run, real ones:
 *   Redis: REDIS_URL if set; else testcontainers' Redis when Docker answers; else a
 *          `redis-server` child on a free port with persistence off, owned by this run.
 *   S3:    AWS_ENDPOINT_URL_S3 if set; else testcontainers' MinIO when Docker answers; else s3rver
 *          in a child process (with the OpenSSL legacy provider its listing pagination needs).
 * Tests isolate themselves with random key prefixes, queue names and buckets.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startRedisServer, startS3rver } from '../../src/dev/local-services.js';
import { dockerAnswers } from './docker.js';

export interface TestServices {
  redisUrl: string;
  /** Whether tests may stop/restart Redis (only for a server this run owns). */
  redisOwned: boolean;
  redisKind: 'env' | 'testcontainers' | 'redis-server';
  s3Endpoint: string;
  s3Kind: 'env' | 'testcontainers' | 's3rver';
  s3Credentials?: { accessKeyId: string; secretAccessKey: string };
}

declare module 'vitest' {
  export interface ProvidedContext {
    services: TestServices;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const stops: Array<() => Promise<void>> = [];
  const docker = !process.env.REDIS_URL || !process.env.AWS_ENDPOINT_URL_S3 ? await dockerAnswers() : false;

  let redisUrl: string;
  let redisKind: TestServices['redisKind'];
  if (process.env.REDIS_URL) {
    redisUrl = process.env.REDIS_URL;
    redisKind = 'env';
  } else if (docker) {
    const { RedisContainer } = await import('@testcontainers/redis');
    const c = await new RedisContainer('redis:7-alpine').start();
    stops.push(async () => void (await c.stop()));
    redisUrl = c.getConnectionUrl();
    redisKind = 'testcontainers';
  } else {
    const r = await startRedisServer();
    stops.push(r.stop);
    redisUrl = r.url;
    redisKind = 'redis-server';
  }

  let s3Endpoint: string;
  let s3Kind: TestServices['s3Kind'];
  let s3Credentials: TestServices['s3Credentials'];
  if (process.env.AWS_ENDPOINT_URL_S3) {
    s3Endpoint = process.env.AWS_ENDPOINT_URL_S3;
    s3Kind = 'env';
  } else if (docker) {
    const { MinioContainer } = await import('@testcontainers/minio');
    const c = await new MinioContainer('minio/minio:latest').start();
    stops.push(async () => void (await c.stop()));
    s3Endpoint = c.getConnectionUrl();
    s3Kind = 'testcontainers';
    s3Credentials = { accessKeyId: c.getUsername(), secretAccessKey: c.getPassword() };
  } else {
    const dir = mkdtempSync(join(tmpdir(), 'gca-s3-'));
    const s = await startS3rver(dir);
    stops.push(async () => {
      await s.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    s3Endpoint = s.url;
    s3Kind = 's3rver';
    // s3rver verifies signatures against its fixed development credentials.
    s3Credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
  }

  project.provide('services', { redisUrl, redisOwned: redisKind === 'redis-server', redisKind, s3Endpoint, s3Kind, s3Credentials });
  process.stderr.write(`[test services] redis=${redisKind} s3=${s3Kind}\n`);
  return async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  };
}
