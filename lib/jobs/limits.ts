import { ErrorCode } from '../../common/error-codes.ts';
import { GiB } from '../../common/part-plan.ts';
import { type Config, config } from '../config.ts';
import { HttpError } from '../http/errors.ts';
import type { Quota } from './job-store.ts';
import type { LimitName, LimitReached } from './jobs-table.ts';

/**
 * The per-user limits on new jobs, from the configuration (lib/config.ts: UPLOAD_MAX_IN_FLIGHT,
 * UPLOAD_MAX_GIB_IN_FLIGHT, JOBS_MAX_PER_MINUTE, EXPORT_MAX_RUNNING). The job store enforces them in
 * the create transaction; this module says which apply to which job, and how a refusal is answered:
 * 429 TooManyRequests with Retry-After, a message naming the limit, and `details: {limit, max}`.
 */

export const uploadQuota = (settings: Config = config()): Quota => ({
  maxRunning: settings.limits.uploadsInFlight,
  maxBytes: settings.limits.uploadBytesInFlight,
  maxPerMinute: settings.limits.jobsPerMinute,
});

export const exportQuota = (settings: Config = config()): Quota => ({
  maxRunning: settings.exports.maxRunning,
  maxPerMinute: settings.limits.jobsPerMinute,
});

const bytes = (n: number) => (n % GiB === 0 ? `${n / GiB} GiB` : `${n} bytes`);

const REFUSALS: Record<LimitName, (max: number) => string> = {
  uploadsInFlight: (max) =>
    `you have ${max} uploads in flight, the most allowed at once (limit uploadsInFlight); complete or abort one first`,
  uploadBytesInFlight: (max) =>
    `your uploads in flight would declare more than ${bytes(max)} in all (limit uploadBytesInFlight); complete or abort one first`,
  exportsRunning: (max) =>
    `you already run ${max} exports, the most allowed at once (limit exportsRunning); wait for one to finish or kill one`,
  jobsPerMinute: (max) =>
    `you started ${max} jobs this minute, the most allowed (limit jobsPerMinute); try again in a moment`,
};

/** The answer to a job refused for a limit. */
export const limitRefusal = (error: LimitReached) =>
  new HttpError(429, ErrorCode.TooManyRequests, REFUSALS[error.limit](error.max), {
    details: { limit: error.limit, max: error.max },
    headers: { 'retry-after': String(Math.max(1, Math.ceil(error.retryAfterSeconds))) },
  });

/**
 * An upload that could never fit, whatever the user finishes first: refused as a bad request, not
 * 429 (waiting would not help).
 */
export function refuseOversizedUpload(size: number, settings: Config = config()): void {
  const max = settings.limits.uploadBytesInFlight;
  if (size > max) {
    throw new HttpError(
      400,
      'ValidationError',
      `size must be at most ${max} bytes (${bytes(max)}), the most one user may have uploading at once`,
      { details: { limit: 'uploadBytesInFlight', max } },
    );
  }
}
