/**
 * file-jobs client: a typed, fetch-based client for the file-jobs API (no AWS SDK). See
 * FileJobsClient for the entry point and cli/README.md for the command-line tool built on it.
 */
export {
  CHECKSUM_ALGORITHMS,
  checksumHasher,
  checksumOf,
  DEFAULT_CHECKSUM_ALGORITHM,
  FullObjectCrc,
} from '../common/checksums.ts';
export { ErrorCode } from '../common/error-codes.ts';
export {
  describeRanges,
  MAX_PART_SIZE,
  MAX_PARTS,
  MIN_PART_SIZE,
  MiB,
  type PartPlan,
  partRange,
  partSizeProblem,
} from '../common/part-plan.ts';
export { EXPORT_FORMATS, JOB_STATUSES, JOB_TYPES } from '../common/statuses.ts';
export { type ClientOptions, FileJobsClient } from './client.ts';
export {
  AbortedError,
  ApiError,
  ChecksumMismatchError,
  FileJobsError,
  isAbortError,
  JobFailedError,
  NetworkError,
  TransferError,
} from './errors.ts';
export {
  type DownloadOptions,
  type DownloadProgress,
  type DownloadResult,
  downloadName,
  type ExportOptions,
  type ExportProgress,
  type WaitOptions,
} from './exports.ts';
export type { FetchLike, RetryMode } from './http.ts';
export { ProgressBatcher, RateLimiter, SpeedMeter } from './progress.ts';
export { backoffDelay, type RetryPolicy } from './retry.ts';
export {
  blobSource,
  bytesSource,
  fileSource,
  type RandomAccessSource,
  type StreamSource,
  type UploadSource,
} from './sources.ts';
export type * from './types.ts';
export type { UploadOptions, UploadProgress, UploadResult, UploadRun, UploadStart } from './upload.ts';
