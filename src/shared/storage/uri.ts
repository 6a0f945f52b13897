/**
 * `s3://bucket/prefix` URIs. Keys are kept verbatim (spaces, unicode, `+`, `%`, `..` are all legal
 * S3 key characters): we never percent-decode, because S3 itself does not. Prefixes a command
 * writes under, or compares with another prefix, are parsed with `parseS3Prefix`, which refuses
 * dot segments: S3 stores `out/../x` literally, but URL-normalising clients, proxies and the next
 * tool in the chain do not, and a string comparison of prefixes is only sound without them.
 */
import { ConfigError } from '../errors.js';

export interface S3Location {
  bucket: string;
  /** Key or prefix, without a leading slash; may be empty (whole bucket). */
  key: string;
}

// S3 bucket naming rules (the subset that matters for parsing): 3-63 chars, lowercase letters,
// digits, dots and hyphens, starting and ending with a letter or digit. Underscores and uppercase
// are tolerated because MinIO and old us-east-1 buckets allow them.
const BUCKET_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$/;

/** Parse `s3://bucket[/key]`. `what` names the flag or variable for the error message. */
export function parseS3Uri(uri: string, what = 'S3 URI'): S3Location {
  if (typeof uri !== 'string' || uri.trim() === '') throw new ConfigError(what, 'expected s3://BUCKET/PREFIX, got an empty value');
  const match = /^s3:\/\/([^/]*)(?:\/(.*))?$/s.exec(uri);
  if (!match) {
    const hint = /^https?:\/\//.test(uri) ? ' (use s3://BUCKET/KEY, not an http URL)' : '';
    throw new ConfigError(what, `expected s3://BUCKET/PREFIX, got "${uri}"${hint}`);
  }
  const bucket = match[1] ?? '';
  const key = match[2] ?? '';
  if (bucket === '') throw new ConfigError(what, `missing bucket name in "${uri}" (expected s3://BUCKET/PREFIX)`);
  if (!BUCKET_RE.test(bucket) || bucket.includes('..')) {
    throw new ConfigError(what, `"${bucket}" is not a valid bucket name (3-63 letters, digits, dots or hyphens)`);
  }
  if (key.includes('\0')) throw new ConfigError(what, 'key contains a NUL byte');
  return { bucket, key };
}

/**
 * `parseS3Uri` for a prefix that must mean what it says: refuses `.` and `..` path segments,
 * including percent-encoded (`%2e%2E`) and backslash-separated forms.
 */
export function parseS3Prefix(uri: string, what: string): S3Location {
  const location = parseS3Uri(uri, what);
  const dot = dotSegmentOf(location.key);
  if (dot !== undefined) {
    throw new ConfigError(
      what,
      `"${uri}" contains a "${dot}" segment; dot segments are refused because clients that normalise paths would read or write outside the intended prefix. Name the prefix without them`,
    );
  }
  return location;
}

/**
 * True when `segment` is `.` or `..`, also percent-encoded (`%2e`, `.%2E`): URL parsers decode
 * those before resolving dot segments, so they climb out of a prefix just the same.
 */
export function isDotSegment(segment: string): boolean {
  return /^(?:\.|%2e){1,2}$/i.test(segment);
}

/** True when `key` has a dot segment, splitting on `/` and on `\` (which WHATWG URL parsing treats as `/`). */
export function hasDotSegment(key: string): boolean {
  return dotSegmentOf(key) !== undefined;
}

function dotSegmentOf(key: string): string | undefined {
  return key.split(/[/\\]/).find(isDotSegment);
}

export function formatS3Uri(location: S3Location): string {
  return `s3://${location.bucket}/${location.key}`;
}

/** Join prefix and relative key with exactly one `/` between them. */
export function joinKey(prefix: string, relative: string): string {
  if (prefix === '') return relative;
  return prefix.endsWith('/') ? prefix + relative : `${prefix}/${relative}`;
}

/** A prefix meant as a "folder" ends in `/` (so `runs/a` does not also match `runs/ab`). */
export function asFolderPrefix(prefix: string): string {
  return prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
}
