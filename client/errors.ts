import { ErrorCode } from '../common/error-codes.ts';
import type { ChecksumAlgorithm, ErrorBody, Job, JobType } from './types.ts';

/** Every error this client throws on purpose is a FileJobsError; `code` is stable and machine-readable. */
export class FileJobsError extends Error {
  override name = 'FileJobsError';
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** The service answered with an error (`{"error": {code, message, requestId}}`), or with a non-2xx it did not describe. */
export class ApiError extends FileJobsError {
  override name = 'ApiError';
  readonly status: number;
  readonly requestId: string | undefined;
  readonly details: unknown;
  /** From `Retry-After`, when the service sent one (429, 503). */
  readonly retryAfterSeconds: number | undefined;

  constructor(
    status: number,
    code: string,
    message: string,
    options: {
      requestId?: string | undefined;
      details?: unknown;
      retryAfterSeconds?: number | undefined;
    } = {},
  ) {
    super(code, message);
    this.status = status;
    this.requestId = options.requestId;
    this.details = options.details;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  /** Builds the error from a response whose body was already read as text. */
  static fromResponse(response: Response, text: string): ApiError {
    const requestId = response.headers.get('x-request-id') ?? undefined;
    const retryAfter = Number(response.headers.get('retry-after'));
    const retryAfterSeconds = Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : undefined;
    let body: Partial<ErrorBody> | undefined;
    try {
      body = JSON.parse(text) as Partial<ErrorBody>;
    } catch {
      body = undefined;
    }
    const error = body?.error;
    if (error && typeof error.code === 'string' && typeof error.message === 'string') {
      return new ApiError(response.status, error.code, error.message, {
        requestId: error.requestId ?? requestId,
        details: error.details,
        retryAfterSeconds,
      });
    }
    // Not the service's shape (a gateway, a proxy, a wrong URL): say what came back, briefly.
    const snippet = text.replace(/\s+/g, ' ').trim().slice(0, 200);
    const message = `the server answered ${response.status} ${response.statusText}`.trim();
    return new ApiError(
      response.status,
      `Http${response.status}`,
      snippet ? `${message}: ${snippet}` : message,
      {
        requestId,
        retryAfterSeconds,
      },
    );
  }
}

/** The request never got an answer: connection refused, DNS failure, reset, timeout. */
export class NetworkError extends FileJobsError {
  override name = 'NetworkError';
  readonly url: string;
  /** The system error code when there is one (ECONNREFUSED, ENOTFOUND, ...), or TIMEOUT. */
  readonly reason: string | undefined;

  constructor(url: string, reason: string | undefined, message: string, options?: { cause?: unknown }) {
    super('NetworkError', message, options);
    this.url = url;
    this.reason = reason;
  }

  /** True when the request certainly never reached the server, so even a non-idempotent call may be repeated. */
  get notSent(): boolean {
    return this.reason === 'ECONNREFUSED' || this.reason === 'ENOTFOUND' || this.reason === 'EAI_AGAIN';
  }
}

/** S3 refused a part (after retries where retrying made sense). */
export class TransferError extends FileJobsError {
  override name = 'TransferError';
  readonly partNumber: number;
  readonly status: number | undefined;

  constructor(partNumber: number, status: number | undefined, code: string, message: string) {
    super(code, message);
    this.partNumber = partNumber;
    this.status = status;
  }
}

/**
 * The caller's AbortSignal fired. For uploads and exports, `outcome` says what became of the job on
 * the server: `killed` (aborted or cancelled there), `kept` (left to resume later), `kill-failed`
 * (the kill request failed: see `cause`), or `none` (no job had been created yet).
 */
export class AbortedError extends FileJobsError {
  override name = 'AbortError';
  readonly jobId: string | undefined;
  readonly jobType: JobType | undefined;
  readonly outcome: 'killed' | 'kept' | 'kill-failed' | 'none';
  /** The job as the server last described it (after the kill, when there was one). */
  readonly job: Job | undefined;

  constructor(
    message: string,
    options: {
      jobId?: string | undefined;
      jobType?: JobType | undefined;
      outcome?: AbortedError['outcome'];
      job?: Job | undefined;
      cause?: unknown;
    } = {},
  ) {
    super('Aborted', message, { cause: options.cause });
    this.jobId = options.jobId;
    this.jobType = options.jobType;
    this.outcome = options.outcome ?? 'none';
    this.job = options.job;
  }
}

/** A job ended in a state other than the one asked for (an export FAILED, CANCELLED or EXPIRED). */
export class JobFailedError extends FileJobsError {
  override name = 'JobFailedError';
  readonly job: Job;

  constructor(job: Job, message?: string) {
    super(
      `Job${job.status.charAt(0)}${job.status.slice(1).toLowerCase()}`,
      message ?? `${job.type} job ${job.jobId} ended ${job.status}${job.error ? `: ${job.error}` : ''}`,
    );
    this.job = job;
  }
}

/**
 * Bytes did not match their checksum, end to end:
 * - `upload`: S3 refused the completion (409 ChecksumMismatch): the object S3 would assemble from the
 *   parts it holds is not the file the client read. The job stays UPLOADING; resuming compares every
 *   part S3 holds with the file's bytes and sends again the ones that differ.
 * - `download`: the bytes downloaded are not the ones the job's checksum names (the object was
 *   changed or corrupted after the job finished, or damaged on the way). Nothing is left at the
 *   destination path.
 */
export class ChecksumMismatchError extends FileJobsError {
  override name = 'ChecksumMismatchError';
  readonly direction: 'upload' | 'download';
  readonly jobId: string;
  readonly algorithm: ChecksumAlgorithm | undefined;
  /** What the bytes should have: the job's recorded checksum (download), or the client's CRC of the file (upload). */
  readonly expected: string | undefined;
  /** What they had, when known: the CRC of the bytes downloaded. */
  readonly actual: string | undefined;

  constructor(
    message: string,
    options: {
      direction: 'upload' | 'download';
      jobId: string;
      algorithm?: ChecksumAlgorithm | undefined;
      expected?: string | undefined;
      actual?: string | undefined;
      cause?: unknown;
    },
  ) {
    super(ErrorCode.ChecksumMismatch, message, { cause: options.cause });
    this.direction = options.direction;
    this.jobId = options.jobId;
    this.algorithm = options.algorithm;
    this.expected = options.expected;
    this.actual = options.actual;
  }
}

export const isAbortError = (error: unknown): boolean =>
  error instanceof AbortedError ||
  (error instanceof Error && (error.name === 'AbortError' || error.name === 'TimeoutError'));
