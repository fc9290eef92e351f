import { CHECKSUM_ALGORITHMS, type ChecksumAlgorithm, checksumHeader } from '../../common/checksums.ts';
import { ErrorCode } from '../../common/error-codes.ts';
import { describeRanges, MAX_OBJECT_SIZE } from '../../common/part-plan.ts';
import { config } from '../config.ts';
import { conflict, HttpError, notFound } from '../http/errors.ts';
import { createOncePerKey } from '../jobs/idempotency.ts';
import { jobStore, partRecords } from '../jobs/index.ts';
import { JOB_ID_PATTERN } from '../jobs/job-ids.ts';
import type { JobView } from '../jobs/job-view.ts';
import type { IdempotencyRecord, JobRecord } from '../jobs/jobs-table.ts';
import { TransitionRejected } from '../jobs/jobs-table.ts';
import { logger } from '../log.ts';
import { fileStore } from '../storage/index.ts';
import {
  abortUpload,
  checkPartChecksums,
  completeUpload,
  createUploadOfUnknownPlan,
} from '../uploads/uploads.ts';

/**
 * Companion's S3 multipart routes, as `@uppy/aws-s3` 6.x calls them in its `companionEndpoint` mode,
 * answered with this service's own upload jobs (lib/uploads/uploads.ts): the same job record, active
 * slot, per-user limits, state machine, kill routes and janitor; nothing here decides a rule of its
 * own. The `uploadId` Uppy is given is the job id (a ULID), so every call finds its job with one read
 * and a retried complete or abort after the fact still finds it; the `key` is the job's S3 key,
 * `uploads/<username>/<filename>`. Either one that is not the caller's answers 404, exactly as an
 * unknown one.
 *
 * Part sizes. Uppy cuts the file into equal chunks that it chooses itself (5 MiB by default, or the
 * app's `getChunkSize`) and never says the file's size or the chunk size: it asks for one part URL at
 * a time with only the part number. So these part URLs cannot bind an exact Content-Length as POST
 * /upload's do; each takes up to S3's own 5 GiB part limit. The trade-off, chosen over guessing
 * Uppy's chunk size (a wrong guess is a 403 from S3 for every part, and apps change it):
 * - what binds an upload instead is its completion: the job learns its plan from S3's part list
 *   (parts 1..N, equal but the last), and a file over the user's bytes limit is refused there
 *   (413, its parts deleted, the job FAILED; nothing reaches the uploads folder), one that does not
 *   fit beside the user's other uploads in flight gets 429 and can complete later;
 * - until then, unfinished parts are bounded the way every upload's are: URLs live
 *   PRESIGN_TTL_SECONDS, the user's uploads in flight are counted (UPLOAD_MAX_IN_FLIGHT), the kill
 *   routes and the janitor abort them (idle past its limit: EXPIRED), and S3's lifecycle rule backstops;
 * - an app that knows the size can say it: `metadata.size` (Uppy's `meta`) is then the job's declared
 *   size, counted in the user's bytes in flight from the start like POST /upload's, and completion
 *   requires S3 to hold exactly that many bytes.
 */

/** Uppy's answer to create: the key the server chose and the upload id to use in every later call. */
export interface CreatedMultipart {
  key: string;
  uploadId: string;
}

export interface CreateMultipartInput {
  filename: string;
  type?: string | undefined;
  metadata?: Record<string, unknown> | undefined;
}

const truthy = (value: unknown) => value === true || value === 'true';

/** `metadata.size`, when the app sent one: a whole number of bytes (as a number or a string). */
function declaredSize(metadata: Record<string, unknown> | undefined): number | undefined {
  const raw = metadata?.size;
  if (raw === undefined || raw === null || raw === '') return undefined;
  const size =
    typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(size) || size < 1 || size > MAX_OBJECT_SIZE) {
    throw new HttpError(
      400,
      'ValidationError',
      `metadata.size must be a whole number of bytes from 1 to ${MAX_OBJECT_SIZE} (5 TiB)`,
    );
  }
  return size;
}

/** `metadata.checksumAlgorithm`, when the app sent one: one of S3's (CRC32, …). */
function checksumAlgorithm(metadata: Record<string, unknown> | undefined): ChecksumAlgorithm | undefined {
  const raw = metadata?.checksumAlgorithm;
  if (raw === undefined || raw === null || raw === '') return undefined;
  if (!CHECKSUM_ALGORITHMS.includes(raw as ChecksumAlgorithm)) {
    throw new HttpError(
      400,
      'ValidationError',
      `metadata.checksumAlgorithm must be one of ${CHECKSUM_ALGORITHMS.join(', ')}`,
    );
  }
  return raw as ChecksumAlgorithm;
}

/** What a create asks for: its file, and the things an app may say in Uppy's `meta`. */
export function multipartRequest(input: CreateMultipartInput) {
  return {
    filename: input.filename,
    contentType: input.type,
    // As POST /upload: an existing file is replaced only when asked (Uppy: `meta: {overwrite: true}`).
    overwrite: truthy(input.metadata?.overwrite),
    declaredSize: declaredSize(input.metadata),
    checksumAlgorithm: checksumAlgorithm(input.metadata),
  };
}

/**
 * POST /s3/multipart: a new upload job whose plan comes from S3's parts at completion.
 *
 * With an idempotency key (the Idempotency-Key header, or `metadata.idempotencyKey`, which Uppy can
 * send: its Companion requests carry no headers of the app's), a repeat gets the upload the first
 * create opened (`replayed`). The case: a create whose answer was lost (a dropped connection, a 503
 * after the job was written) leaves a job holding the file's name that Uppy never learned of, and
 * Uppy's retry would meet 409 UploadInProgress until the janitor ends the idle job, hours later.
 * Here the key names the upload in flight rather than one request: once its job has ended (killed,
 * expired), a repeat opens a new upload under the same key, so a retry of that Uppy file works.
 */
export async function createMultipart(
  username: string,
  request: ReturnType<typeof multipartRequest>,
  idempotency?: IdempotencyRecord,
): Promise<{ created: CreatedMultipart; replayed: boolean }> {
  const { job, replayed } = await createOncePerKey(
    username,
    idempotency,
    (record) => createUploadOfUnknownPlan(username, request, record),
    { renewAfterEnd: true },
  );
  return { created: { key: job.key, uploadId: job.jobId }, replayed };
}

/**
 * The caller's upload opened through these routes with this id and key; 404 otherwise. A job made by
 * POST /upload is not one: its parts are signed with their exact sizes, never with unsized URLs.
 */
async function findMultipart(username: string, uploadId: string, key: string): Promise<JobRecord> {
  const job = JOB_ID_PATTERN.test(uploadId) ? await jobStore().get(username, uploadId) : undefined;
  const fromHere = (job?.details as { planFrom?: string } | undefined)?.planFrom === 'parts';
  if (job?.type !== 'upload' || !fromHere || job.key !== key) {
    throw notFound('NoSuchUpload', `no upload ${uploadId} with key ${key}`);
  }
  logger.appendKeys({ jobId: job.jobId });
  return job;
}

/**
 * GET /s3/multipart/{uploadId}/{partNumber}?key=[&checksum=]: one part URL (no size: see the top of
 * this file). For an upload with a checksum algorithm the part's checksum is required and bound, as
 * POST /upload/{jobId}/parts binds them, and the answer names the header to send it in.
 */
export async function signPart(
  username: string,
  uploadId: string,
  partNumber: number,
  key: string,
  checksum?: string,
) {
  const job = await findMultipart(username, uploadId, key);
  checkPartChecksums(job, [{ partNumber, checksum }], true);
  if (job.status !== 'UPLOADING') {
    throw conflict(
      ErrorCode.JobNotActive,
      `upload ${job.jobId} is ${job.status}; it cannot take more parts`,
      {
        status: job.status,
      },
    );
  }
  const expires = config().presignTtlSeconds;
  const algorithm = job.checksumAlgorithm;
  const bound = algorithm && checksum ? { algorithm, value: checksum } : undefined;
  return {
    url: await fileStore().presignUnsizedUploadPart(job.key, job.uploadId!, partNumber, expires, bound),
    expires,
    // The header the PUT must carry, as signed (the console's uploader sends it; @uppy/aws-s3 6 reads
    // only `url`, which is why its uploads cannot have an algorithm).
    ...(bound ? { headers: { [checksumHeader(bound.algorithm)]: bound.value } } : {}),
  };
}

/**
 * GET /s3/multipart/{uploadId}?key=: the parts S3 holds, as Companion answers (a bare array). Uppy asks
 * on resume and retry. What S3 holds is also recorded as the job's progress (Uppy reports none).
 */
export async function listParts(username: string, uploadId: string, key: string) {
  const job = await findMultipart(username, uploadId, key);
  const parts = job.uploadId ? await fileStore().listParts(job.key, job.uploadId) : undefined;
  if (!parts) throw notFound('NoSuchUpload', `upload ${uploadId} is ${job.status}; S3 holds no parts of it`);
  if (job.status === 'UPLOADING' && parts.length > 0) {
    await partRecords()
      .record(username, job.jobId, parts, 'UPLOADING')
      .catch((error: unknown) => {
        // Finished meanwhile: progress no longer matters. Anything else is a real fault.
        if (!(error instanceof TransitionRejected)) throw error;
      });
  }
  return parts.map((part) => ({ PartNumber: part.partNumber, ETag: part.etag, Size: part.size }));
}

const unquoted = (etag: string) => etag.replace(/^"|"$/g, '');

/**
 * POST /s3/multipart/{uploadId}/complete?key= {parts, checksum?}: completes the job (uploads.ts completeUpload:
 * S3's part list is the one that counts, the plan is learned from it). Uppy's list, ETags quoted or
 * not, must agree with S3's: a part it sent that S3 holds with another ETag, or one S3 lacks, is 409.
 */
export async function completeMultipart(
  username: string,
  uploadId: string,
  key: string,
  clientParts: { PartNumber: number; ETag: string }[],
  options: { apiOrigin?: string | undefined; awaitInFlightMs?: number; checksum?: string | undefined } = {},
): Promise<{ location: string; key: string; job: JobView }> {
  const job = await findMultipart(username, uploadId, key);
  if (job.status === 'UPLOADING') {
    const stored = (await fileStore().listParts(job.key, job.uploadId!)) ?? [];
    const inS3 = new Map(stored.map((part) => [part.partNumber, unquoted(part.etag)]));
    const differ = clientParts
      .filter((part) => inS3.get(part.PartNumber) !== unquoted(part.ETag))
      .map((part) => part.PartNumber);
    const unlisted = stored.filter((part) => !clientParts.some((c) => c.PartNumber === part.partNumber));
    if (differ.length > 0 || unlisted.length > 0) {
      throw conflict(
        ErrorCode.PartsIncomplete,
        `the parts sent do not match what S3 holds${differ.length ? `: parts ${describeRanges(differ)} differ or are missing` : ''}${unlisted.length ? `; S3 also holds parts ${describeRanges(unlisted.map((part) => part.partNumber))}` : ''}`,
        { missing: differ, wrongSize: [] },
      );
    }
  }
  const done = await completeUpload(username, job.jobId, {
    awaitInFlightMs: options.awaitInFlightMs ?? 0,
    checksum: options.checksum,
  });
  // The bucket is private, so an S3 URL would not open: the location is the job, in this API.
  const path = `/jobs/${job.jobId}`;
  return { location: options.apiOrigin ? `${options.apiOrigin}${path}` : path, key: job.key, job: done };
}

/** DELETE /s3/multipart/{uploadId}?key=: aborts the job and its parts (409 for a completed file). */
export async function abortMultipart(username: string, uploadId: string, key: string) {
  const job = await findMultipart(username, uploadId, key);
  return { job: await abortUpload(username, job.jobId) };
}
