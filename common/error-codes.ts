/**
 * The codes of the service's error answers (`{"error": {"code": …}}`) that the client and the CLI
 * act on. The server throws them by these names and the client tests for them by the same names, so
 * neither side can rename one alone. Codes only one side uses stay where they are used.
 */
export const ErrorCode = {
  /** 409: the job's status does not allow this (an upload already ended, an export already done). */
  JobNotActive: 'JobNotActive',
  /** 409: another upload of that file name is still open; its job id is in `details`. */
  UploadInProgress: 'UploadInProgress',
  /** 409: a completion of this upload is running; ask again in a moment. */
  CompletionInProgress: 'CompletionInProgress',
  /** 409: S3 lacks parts, or holds parts of the wrong size; `details` lists them. */
  PartsIncomplete: 'PartsIncomplete',
  /** 409: the object S3 would assemble does not match the checksum sent with the completion. */
  ChecksumMismatch: 'ChecksumMismatch',
  /** 409: the multipart upload is gone from S3; the file has to be uploaded again. */
  UploadGone: 'UploadGone',
  /** 409: a file of that name exists and the upload did not ask to overwrite it. */
  FileExists: 'FileExists',
  /** 404: no such file in the caller's uploads folder. */
  FileNotFound: 'FileNotFound',
  /** 422: this Idempotency-Key was sent before with another request (common/idempotency.ts). */
  IdempotencyKeyReused: 'IdempotencyKeyReused',
  /** 429: a limit; see Retry-After. */
  TooManyRequests: 'TooManyRequests',
  /** 503: a dependency (S3, DynamoDB…) is down or too slow; see Retry-After (the soak counts these apart). */
  ServiceUnavailable: 'ServiceUnavailable',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];
