import { ErrorCode } from '../../common/error-codes.ts';
import { HttpError } from '../http/errors.ts';
import { jobStore } from './index.ts';
import {
  IdempotencyKeyUsed,
  type IdempotencyRecord,
  type JobRecord,
  TERMINAL_STATUSES,
} from './jobs-table.ts';

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

/**
 * `create` run once per Idempotency-Key: a repeat gets the job the first request made (`replayed`),
 * also when it raced the first, or followed a write of its own whose answer was lost (the job's
 * creation transaction refuses a key that names a job already). Without a key, `create` just runs.
 *
 * `renewAfterEnd`: the key names an upload in flight, not one request. Once the job it made has
 * ended, a repeat makes a new job and takes the key over (Uppy's retry of a create whose job the
 * kill routes or the janitor ended meanwhile: lib/companion/companion.ts).
 */
export async function createOncePerKey(
  username: string,
  idempotency: IdempotencyRecord | undefined,
  create: (idempotency: IdempotencyRecord | undefined) => Promise<JobRecord>,
  options: { renewAfterEnd?: boolean } = {},
): Promise<{ job: JobRecord; replayed: boolean }> {
  const earlier = await findJobOfEarlierRequest(username, idempotency);
  const renew = earlier && options.renewAfterEnd && TERMINAL_STATUSES.has(earlier.status);
  if (earlier && !renew) return { job: earlier, replayed: true };
  try {
    const record = idempotency && earlier ? { ...idempotency, supersedes: earlier.jobId } : idempotency;
    return { job: await create(record), replayed: false };
  } catch (error) {
    if (!(error instanceof IdempotencyKeyUsed && idempotency)) throw error;
    return { job: await jobOfEarlierRequest(username, idempotency, error), replayed: true };
  }
}
