import { describe, expect, it } from 'vitest';
import { AccessDeniedError, CredentialsError, isRetryable, NotFoundError, TransientError } from '../../../src/shared/errors.js';
import { mapError } from '../../../src/shared/storage/s3-store.js';

/** Errors shaped as @aws-sdk/client-s3 throws them after its own retries. */
function sdkError(name: string, status?: number, message = 'boom'): Error {
  const err = new Error(message);
  err.name = name;
  if (status !== undefined) Object.assign(err, { $metadata: { httpStatusCode: status } });
  return err;
}

describe('S3 error mapping decides retries', () => {
  it.each([
    [sdkError('NoSuchBucket', 404), NotFoundError, false, /bucket "b" does not exist/],
    [sdkError('NoSuchKey', 404), NotFoundError, false, /no object at s3:\/\/b\/k/],
    [sdkError('AccessDenied', 403), AccessDeniedError, false, /access denied to s3:\/\/b\/k/],
    [sdkError('CredentialsProviderError', undefined, 'Could not load credentials from any providers'), CredentialsError, true, /no AWS credentials for s3:\/\/b\/k: set AWS_ACCESS_KEY_ID.*AWS_PROFILE/],
    [sdkError('InternalError', 500), TransientError, true, /HTTP 500/],
    [sdkError('SlowDown', 503), TransientError, true, /HTTP 503/],
    [sdkError('ECONNRESET'), TransientError, true, /s3:\/\/b\/k/],
  ])('%s', (raw, type, retryable, message) => {
    const mapped = mapError(raw, 'b', 'k');
    expect(mapped).toBeInstanceOf(type);
    expect(isRetryable(mapped)).toBe(retryable);
    expect(mapped.message).toMatch(message);
  });
});
