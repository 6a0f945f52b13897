/**
 * The few named errors that decide what happens next. A worker never inspects messages: it asks
 * `isRetryable(err)`. Permanent errors fail a job at once (BullMQ `UnrecoverableError`), retryable
 * ones go back with exponential backoff.
 */

export interface ErrorOptionsWithCause {
  cause?: unknown;
}

/** Base class: every error the project throws on purpose carries a stable `code`. */
export abstract class AuditError extends Error {
  abstract readonly code: string;
  abstract readonly retryable: boolean;
  constructor(message: string, options?: ErrorOptionsWithCause) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Invalid configuration, flags or environment. Never retried: a human must fix it. */
export class ConfigError extends AuditError {
  readonly code = 'CONFIG';
  readonly retryable = false;
  /** The variable or flag at fault, e.g. `REDIS_URL` or `--batch-size`. */
  readonly variable: string;
  constructor(variable: string, message: string, options?: ErrorOptionsWithCause) {
    super(`${variable}: ${message}`, options);
    this.variable = variable;
  }
}

/** The input itself is bad (corrupt image, unsupported format, too many pixels). Never retried. */
export class InvalidInputError extends AuditError {
  readonly code: string;
  readonly retryable = false;
  constructor(code: string, message: string, options?: ErrorOptionsWithCause) {
    super(message, options);
    this.code = code;
  }
}

/** Something the caller named does not exist (bucket, key, weights file). Never retried. */
export class NotFoundError extends AuditError {
  readonly code = 'NOT_FOUND';
  readonly retryable = false;
}

/** Credentials or policy refuse access. Never retried: a human must fix permissions. */
export class AccessDeniedError extends AuditError {
  readonly code = 'ACCESS_DENIED';
  readonly retryable = false;
}

/**
 * No credentials could be found (or refreshed) by the SDK's provider chain. Retryable: the image is
 * not at fault, and the environment may recover (a refreshed web-identity token, a fixed Secret);
 * a worker must not mark a whole queue failed because of its own configuration.
 */
export class CredentialsError extends AuditError {
  readonly code = 'CREDENTIALS';
  readonly retryable = true;
}

/** Model weights or architecture do not fit. Never retried. */
export class ModelError extends AuditError {
  readonly code = 'MODEL';
  readonly retryable = false;
}

/**
 * The engine was disposed (the worker is shutting down) before this call reached it. Retryable:
 * the image is not at fault, and another worker (or this one restarted) can compute it.
 */
export class EngineDisposedError extends AuditError {
  readonly code = 'ENGINE_DISPOSED';
  readonly retryable = true;
  constructor(message = 'the engine is disposed: it computes nothing more', options?: ErrorOptionsWithCause) {
    super(message, options);
  }
}

/** A transient failure of a dependency (S3 5xx after SDK retries, network reset, Redis down). */
export class TransientError extends AuditError {
  readonly code = 'TRANSIENT';
  readonly retryable = true;
}

/**
 * A queue job that does not belong to the run it names: an unknown (or lost) run, or a source,
 * output, options or image that differ from what the run recorded; or one that could not be checked
 * at all (UNVERIFIED: a malformed payload, or a check that kept failing). Never retried, never
 * counted in the run: anyone who can write to the queue could have added it.
 */
export class ForeignJobError extends AuditError {
  readonly retryable = false;
  constructor(
    readonly code: 'UNKNOWN_RUN' | 'NOT_IN_RUN' | 'UNVERIFIED',
    message: string,
    options?: ErrorOptionsWithCause,
  ) {
    super(message, options);
  }
}

/**
 * A job of an image its run takes no result for (neither pending nor failed): it was never
 * enqueued into the run, or its result is already counted and this is a second delivery of its
 * job (BullMQ hands a stalled job out again when the worker holding it died after recording). The
 * worker tells the two apart by the image's stored outputs (image-job.ts).
 */
export class NotPendingJobError extends ForeignJobError {
  constructor(message: string) {
    super('NOT_IN_RUN', message);
  }
}

/**
 * A job whose run needs another model (weights, preprocessing, labels or target layer) than the one
 * this worker serves. Not the job's fault and not the worker's: the job is left in the queue for a
 * worker that serves the run's model (docs/architecture.md, "Which worker serves a run").
 */
export class ModelMismatchError extends AuditError {
  readonly code = 'MODEL_MISMATCH';
  readonly retryable = true;
}

/**
 * A re-listing's lease on its run ran out before the re-listing ended (the producer stalled longer
 * than the lease, or Redis was unreachable for that long): results counted since may be missing
 * from the run's `recent` set, so the re-listing registers nothing more. Nothing was counted twice;
 * running the same enqueue again starts a fresh re-listing.
 */
export class RescanLeaseExpiredError extends AuditError {
  readonly code = 'RESCAN_LEASE_EXPIRED';
  readonly retryable = true;
}

/** The process was asked to stop (SIGINT, SIGTERM) and stopped cleanly before finishing. */
export class InterruptedError extends AuditError {
  readonly code = 'INTERRUPTED';
  readonly retryable = true;
}

/** Coerce anything thrown into an Error, keeping the original as `cause`. */
export function toError(value: unknown): Error {
  if (value instanceof Error) return value;
  const text = typeof value === 'string' ? value : safeStringify(value);
  return new Error(text, { cause: value });
}

/**
 * Whether a failure may succeed on a later attempt. Our own errors say so explicitly; unknown
 * errors are network-ish by default (retry), except programming errors, which never heal.
 */
export function isRetryable(value: unknown): boolean {
  if (value instanceof AuditError) return value.retryable;
  if (value instanceof TypeError || value instanceof RangeError || value instanceof SyntaxError) return false;
  return true;
}

/** A one-line reason for manifests and logs: `CODE: message`. */
export function describeError(value: unknown): string {
  const err = toError(value);
  const code = err instanceof AuditError ? err.code : err.name;
  return `${code}: ${err.message}`;
}

function safeStringify(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
