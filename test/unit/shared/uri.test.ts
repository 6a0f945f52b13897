import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/shared/errors.js';
import { configErrorOf } from '../../helpers/errors.js';
import { asFolderPrefix, formatS3Uri, hasDotSegment, joinKey, parseS3Prefix, parseS3Uri } from '../../../src/shared/storage/uri.js';

describe('parseS3Uri / formatS3Uri', () => {
  it.each([
    ['s3://bucket', { bucket: 'bucket', key: '' }],
    ['s3://bucket/', { bucket: 'bucket', key: '' }],
    ['s3://my.bucket-1/photos/2024/', { bucket: 'my.bucket-1', key: 'photos/2024/' }],
    ['s3://b12/with space/and+plus/100%.jpg', { bucket: 'b12', key: 'with space/and+plus/100%.jpg' }],
    ['s3://b12/ünïcødé/猫.png', { bucket: 'b12', key: 'ünïcødé/猫.png' }],
    ['s3://b12/a/.../b/../c', { bucket: 'b12', key: 'a/.../b/../c' }],
    ['s3://b12/%2F-not-decoded', { bucket: 'b12', key: '%2F-not-decoded' }],
  ])('parses %s verbatim', (uri, expected) => {
    expect(parseS3Uri(uri)).toEqual(expected);
  });

  it('round-trips keys with spaces, unicode, +, % and dots', () => {
    for (const key of ['a b/c+d/e%20f/g.jpg', 'ünï/猫 1.png', '.../x', 'a//b']) {
      const uri = formatS3Uri({ bucket: 'bucket', key });
      expect(uri).toBe(`s3://bucket/${key}`);
      expect(parseS3Uri(uri)).toEqual({ bucket: 'bucket', key });
    }
  });

  it.each([
    ['', /empty/],
    ['bucket/key', /expected s3:\/\/BUCKET\/PREFIX/],
    ['https://bucket.s3.amazonaws.com/key', /not an http URL/],
    ['s3:///key', /missing bucket/],
    ['s3://ab/key', /not a valid bucket name/],
    ['s3://-bucket/key', /not a valid bucket name/],
    ['s3://bad..bucket/key', /not a valid bucket name/],
    ['S3://bucket/key', /expected s3:\/\/BUCKET\/PREFIX/],
  ])('rejects %j with a clear ConfigError', (uri, message) => {
    let caught: unknown;
    try {
      parseS3Uri(uri, '--output');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).variable).toBe('--output');
    expect((caught as Error).message).toMatch(message);
  });

  it('joins keys with exactly one slash and builds folder prefixes', () => {
    expect(joinKey('out/run1/', 'a.json')).toBe('out/run1/a.json');
    expect(joinKey('out/run1', 'a.json')).toBe('out/run1/a.json');
    expect(joinKey('', 'a.json')).toBe('a.json');
    expect(asFolderPrefix('runs/a')).toBe('runs/a/');
    expect(asFolderPrefix('')).toBe('');
  });
});

describe('parseS3Prefix (prefixes a command writes under or compares)', () => {
  it.each(['s3://b12/../x', 's3://b12/a/./b/', 's3://b12/a/..', 's3://b12/./', 's3://b12/a/%2e%2e/b', 's3://b12/%2E/x', 's3://b12/a/.%2E/b', 's3://b12/a\\..\\b'])(
    'refuses the dot segment in %s, naming the flag',
    (uri) => {
      const err = configErrorOf(() => parseS3Prefix(uri, '--output'));
      expect(err.variable).toBe('--output');
      expect(err.message).toMatch(/"\.{1,2}" segment|dot segment/);
    },
  );

  it('keeps dots that are not whole segments', () => {
    for (const key of ['a/.../b/', 'a/..b/', '.hidden/x', 'v1.2/', 'a/b..', '%2e%2e%2e/']) {
      expect(parseS3Prefix(`s3://b12/${key}`, '--output')).toEqual({ bucket: 'b12', key });
      expect(hasDotSegment(key)).toBe(false);
    }
  });
});
