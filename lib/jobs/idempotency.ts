import { ErrorCode } from '../../common/error-codes.ts';
import { HttpError } from '../http/errors.ts';
import { jobStore } from './index.ts';
import type { IdempotencyRecord, JobRecord } from './jobs-table.ts';

/**
 * The job an earlier request with the same Idempotency-Key made (jobStore().create records the key
 * in the same transaction as the job): 422 IdempotencyKeyReused if that request asked for something
 * else, or if its job is gone (its retention ended).
 */
export async function jobOfEarlierRequest(
  username: string,
  idempotency: IdempotencyRecord,
  earlier: { jobId: string; fingerprint: string },
): Promise<JobRecord> {
  const refuse = (why: string) =>
    new HttpError(422, ErrorCode.IdempotencyKeyReused, `${why}; use a new key for a new request`, {
      details: { jobId: earlier.jobId },
    });
  if (earlier.fingerprint !== idempotency.fingerprint) {
    throw refuse(`this Idempotency-Key was sent before with another request (it made job ${earlier.jobId})`);
  }
  const job = await jobStore().get(username, earlier.jobId);
  if (!job) throw refuse(`the job this Idempotency-Key made (${earlier.jobId}) is gone`);
  return job;
}

/** The job a request with this key already made, if any (a repeat is answered with it, not run again). */
export async function findJobOfEarlierRequest(
  username: string,
  idempotency: IdempotencyRecord | undefined,
): Promise<JobRecord | undefined> {
  if (!idempotency) return undefined;
  const earlier = await jobStore().findByIdempotencyKey(username, idempotency.key);
  return earlier ? jobOfEarlierRequest(username, idempotency, earlier) : undefined;
}
