import { createHash } from 'node:crypto';
import { NoSuchUpload } from '@aws-sdk/client-s3';
import {
  type Checksum,
  type ChecksumAlgorithm,
  checksumOf,
  checksumValueHint,
  isChecksumValue,
  isCrcAlgorithm,
} from '../../common/checksums.ts';
import { ErrorCode } from '../../common/error-codes.ts';
import {
  describeRanges,
  expectedPartSize,
  FIRST_URL_BATCH,
  type PartPlan,
  PartPlanError,
  planParts,
} from '../../common/part-plan.ts';
import { config } from '../config.ts';
import { fileRecordItem } from '../files/file-records.ts';
import { conflict, HttpError, notFound } from '../http/errors.ts';
import { createOncePerKey } from '../jobs/idempotency.ts';
import { jobStore, partRecords } from '../jobs/index.ts';
import { newJobId } from '../jobs/job-ids.ts';
import type { Quota } from '../jobs/job-store.ts';
import { type JobView, jobView } from '../jobs/job-view.ts';
import {
  IdempotencyKeyUsed,
  type IdempotencyRecord,
  type JobRecord,
  LimitReached,
  type PartRecord,
  SlotTaken,
  sleep,
  TransitionRejected,
} from '../jobs/jobs-table.ts';
import { limitRefusal, refuseOversizedUpload, uploadQuota } from '../jobs/limits.ts';
import { logger } from '../log.ts';
import { recordJobMetric } from '../metrics.ts';
import { partHeaders, type StoredObject, type StoredPart } from '../storage/file-store.ts';
import { fileStore } from '../storage/index.ts';
import { uploadKey } from '../storage/keys.ts';

/**
 * Uploads: an S3 multipart upload per job, parts sent by the client straight to S3 through presigned
 * URLs, progress recorded in the jobs table, completion from S3's own part list.
 *
 * UPLOADING -> COMPLETING -> COMPLETED, or ABORTED / FAILED / EXPIRED. Every change is a conditional
 * write; the S3 side effect happens only after the change that allows it has won.
 *
 * Integrity (common/checksums.ts has the S3 model): an upload created with a `checksumAlgorithm` has
 * its multipart upload opened with it, so S3 requires every part's checksum. Each part URL signs the
 * checksum the client computed from its own bytes as a header (`x-amz-checksum-*`; S3 ignores one in
 * the query string), so S3 refuses a part whose body differs (400 BadDigest) and the client cannot
 * send another checksum (403). With a CRC algorithm the client may send the whole file's CRC at
 * completion; S3 checks the object against it. The object's checksum, as S3 reports it, is recorded
 * on the job and in the file record that GET /files reads.
 */

export interface SignedPart {
  partNumber: number;
  url: string;
  expiresAt: string;
  /**
   * Headers the PUT must carry, as signed: `content-length`, the part's exact planned size (a PUT of
   * any other length is refused by S3 with 403), and for an upload with a checksum algorithm the
   * part's checksum (`x-amz-checksum-crc32`, …).
   */
  headers: Record<string, string>;
}

/** A part to sign: its number, and its checksum for an upload with a checksum algorithm. */
export interface PartRequest {
  partNumber: number;
  checksum?: string | undefined;
}

export interface CreateUploadInput {
  filename: string;
  size: number;
  contentType?: string | undefined;
  partSize?: number | undefined;
  overwrite?: boolean | undefined;
  checksumAlgorithm?: ChecksumAlgorithm | undefined;
}

const slotFor = (job: JobRecord) => ({ jobId: job.jobId, type: 'upload' as const, name: job.filename });

export async function findUpload(username: string, jobId: string): Promise<JobRecord> {
  const job = await jobStore().get(username, jobId);
  // Another user's job answers exactly like a missing one.
  if (job?.type !== 'upload') throw notFound('JobNotFound', `no upload job ${jobId}`);
  return job;
}

const notActive = (job: Pick<JobRecord, 'jobId' | 'status'>, action: string) =>
  conflict(ErrorCode.JobNotActive, `upload ${job.jobId} is ${job.status}; it cannot ${action}`, {
    status: job.status,
  });

async function refuseExistingFile(key: string, filename: string) {
  if (await fileStore().head(key)) {
    throw conflict(
      ErrorCode.FileExists,
      `${filename} already exists in your uploads folder; send "overwrite": true to replace it`,
    );
  }
}

function newJob(
  username: string,
  filename: string,
  plan: PartPlan,
  contentType: string | undefined,
  checksumAlgorithm?: ChecksumAlgorithm,
): JobRecord {
  const now = new Date().toISOString();
  return {
    jobId: newJobId(),
    username,
    type: 'upload',
    status: 'UPLOADING',
    filename,
    key: uploadKey(username, filename),
    ...plan,
    ...(contentType ? { contentType } : {}),
    ...(checksumAlgorithm ? { checksumAlgorithm } : {}),
    partsDone: 0,
    bytesDone: 0,
    createdAt: now,
    updatedAt: now,
  };
}

/** Writes the job, its slot and its share of the user's limits (nothing is written when refused). */
async function claimSlot(job: JobRecord, quota: Quota, idempotency?: IdempotencyRecord) {
  try {
    await jobStore().create(job, job.filename, quota, Date.now(), idempotency);
  } catch (error) {
    if (error instanceof LimitReached) throw limitRefusal(error);
    if (!(error instanceof SlotTaken)) throw error;
    // Held by this very job: an earlier try of the same write landed and its answer was lost.
    if (error.holder.jobId === job.jobId) return;
    throw conflict(
      ErrorCode.UploadInProgress,
      `${job.filename} is already being uploaded by job ${error.holder.jobId}`,
      // The holder's key is this job's (one upload per name): with it, a page that has the file can
      // resume the holder through the Companion routes (web/part-match.ts).
      { jobId: error.holder.jobId, key: job.key },
    );
  }
}

/** After a failed create: whether the job may exist all the same (read it, or assume so if that fails too). */
async function mayHaveBeenWritten(job: JobRecord, error: unknown): Promise<boolean> {
  // Refused on purpose (the name is taken, or the Idempotency-Key made another job): surely not written.
  if (error instanceof HttpError || error instanceof IdempotencyKeyUsed) return false;
  return jobStore()
    .get(job.username, job.jobId)
    .then(
      (found) => found !== undefined,
      () => true,
    );
}

export async function signParts(job: JobRecord, requests: PartRequest[]): Promise<SignedPart[]> {
  const ttl = config().presignTtlSeconds;
  const expiresAt = new Date(Date.now() + ttl * 1000).toISOString();
  const algorithm = job.checksumAlgorithm;
  const parts = requests.map(({ partNumber, checksum }) => ({
    partNumber,
    size: expectedPartSize(job, partNumber),
    checksum: algorithm && checksum ? { algorithm, value: checksum } : undefined,
  }));
  const urls = await fileStore().presignUploadParts(job.key, job.uploadId!, parts, ttl);
  return parts.map(({ partNumber, size, checksum }, index) => ({
    partNumber,
    url: urls[index]!,
    expiresAt,
    headers: partHeaders(size, checksum),
  }));
}

/**
 * POST /upload (JSON): plans the parts, opens the multipart upload and the job, signs a first batch.
 * With an Idempotency-Key, a repeat of the request gets the job the first one made (`replayed`), with
 * fresh part URLs while it is UPLOADING, and nothing new is opened.
 */
export async function createUpload(
  username: string,
  input: CreateUploadInput,
  idempotency?: IdempotencyRecord,
) {
  const { job, replayed } = await createOncePerKey(username, idempotency, (record) => {
    let plan: PartPlan;
    try {
      plan = planParts(input.size, input.partSize);
    } catch (error) {
      if (error instanceof PartPlanError) throw new HttpError(400, 'ValidationError', error.message);
      throw error;
    }
    // A repeat refused by its key finds the multipart upload it opened aborted already (openUpload).
    return openUpload(username, input, plan, undefined, record);
  });
  return { ...(await createdUploadView(job)), replayed };
}

/** POST /upload's answer for a job: its multipart upload, its plan, and a first batch of part URLs. */
async function createdUploadView(job: JobRecord) {
  // A part URL of an upload with a checksum algorithm binds the part's checksum, which only the
  // client can say (POST /upload/{jobId}/parts): none is signed here. Nor for a job already ended.
  const first =
    job.checksumAlgorithm || job.status !== 'UPLOADING'
      ? []
      : Array.from({ length: Math.min(job.partCount, FIRST_URL_BATCH) }, (_, index) => ({
          partNumber: index + 1,
        }));
  return {
    job: jobView(job),
    uploadId: job.uploadId!,
    key: job.key,
    partSize: job.partSize,
    partCount: job.partCount,
    ...(job.checksumAlgorithm ? { checksumAlgorithm: job.checksumAlgorithm } : {}),
    parts: await signParts(job, first),
  };
}

/**
 * What a job whose part plan comes from S3 at completion keeps in `details`: clients that choose
 * their part size themselves and say neither it nor (always) the file's size, such as Uppy through
 * the Companion routes (lib/companion/). Until completion its `partSize` and `partCount` are 0 and its
 * `size` is the size the client declared, or 0.
 */
interface PlanFromParts {
  planFrom: 'parts';
  /** The size the client declared (counted in the user's bytes in flight), if it declared one. */
  declaredSize?: number;
}

/** Whether the job learns its part plan (and maybe its size) from S3's part list at completion. */
export const planFromParts = (job: JobRecord): boolean =>
  (job.details as Partial<PlanFromParts> | undefined)?.planFrom === 'parts' && job.partCount === 0;

/**
 * Opens a multipart upload whose part plan is not known yet (the Companion routes): the same job,
 * slot, limits and state machine as POST /upload; the plan is learned from S3's part list when the
 * upload completes, and the rules that need sizes apply then (see completeUpload). A declared size
 * counts in the user's bytes in flight like POST /upload's; without one the job counts 0 bytes until
 * completion, where its real size must fit the limit.
 */
export async function createUploadOfUnknownPlan(
  username: string,
  input: Omit<CreateUploadInput, 'size' | 'partSize'> & { declaredSize?: number | undefined },
  idempotency?: IdempotencyRecord,
): Promise<JobRecord> {
  const details: PlanFromParts = {
    planFrom: 'parts',
    ...(input.declaredSize !== undefined ? { declaredSize: input.declaredSize } : {}),
  };
  return openUpload(
    username,
    input,
    { size: input.declaredSize ?? 0, partSize: 0, partCount: 0 },
    details,
    idempotency,
  );
}

/** Checks the limits, opens the S3 multipart upload and writes the job with its slot and holds. */
async function openUpload(
  username: string,
  input: Pick<CreateUploadInput, 'filename' | 'contentType' | 'overwrite' | 'checksumAlgorithm'>,
  plan: PartPlan,
  details?: PlanFromParts,
  idempotency?: IdempotencyRecord,
): Promise<JobRecord> {
  refuseOversizedUpload(plan.size);
  const quota = uploadQuota();
  // A user at a limit costs one read here, not a multipart upload opened and aborted.
  await jobStore()
    .checkQuota(username, 'upload', plan.size, quota)
    .catch((error: unknown) => {
      throw error instanceof LimitReached ? limitRefusal(error) : error;
    });
  const job = newJob(username, input.filename, plan, input.contentType, input.checksumAlgorithm);
  if (details) job.details = { ...details };
  if (!input.overwrite) await refuseExistingFile(job.key, job.filename);

  job.uploadId = await fileStore().createMultipartUpload(job.key, input.contentType, input.checksumAlgorithm);
  try {
    await claimSlot(job, quota, idempotency);
  } catch (error) {
    // Until the job records the upload, only this request knows it: abort it, unless the job write
    // may have landed (a timeout or a lost answer), which the job's retry would then find aborted.
    // Best effort, and the job write's own error is the one to report; the janitor's orphan sweep
    // aborts whatever is left without a job.
    if (!(await mayHaveBeenWritten(job, error))) {
      await fileStore()
        .abortMultipartUpload(job.key, job.uploadId)
        .catch((abortError: unknown) =>
          logger.warn('could not abort the multipart upload of a job that was not created', {
            key: job.key,
            error: abortError as Error,
          }),
        );
    }
    throw error;
  }
  logger.appendKeys({ jobId: job.jobId });
  recordJobMetric('UploadsStarted');
  return job;
}

/** POST /upload (multipart/form-data, the seed's form): a small file stored through the same job model. */
export async function createFormUpload(
  username: string,
  file: { filename: string; content: Buffer; contentType?: string | undefined },
  overwrite: boolean,
) {
  const size = file.content.length;
  // The form's file is in memory: its CRC32 costs little, and S3 refuses the body if it differs.
  const checksum = { algorithm: 'CRC32' as const, value: await checksumOf('CRC32', file.content) };
  const job = newJob(
    username,
    file.filename,
    { size, partSize: size, partCount: 1 },
    file.contentType,
    checksum.algorithm,
  );
  job.details = { contentMd5: createHash('md5').update(file.content).digest('hex') } satisfies FormDetails;
  if (!overwrite) await refuseExistingFile(job.key, job.filename);
  await claimSlot(job, uploadQuota()).catch(async (error: unknown) => {
    if (!(await settledDeadFormHolder(username, error))) throw error;
    if (!overwrite) await refuseExistingFile(job.key, job.filename);
    await claimSlot(job, uploadQuota());
  });
  logger.appendKeys({ jobId: job.jobId });
  recordJobMetric('UploadsStarted');
  // Claim the file before writing it, so that a kill that wins first means nothing gets written.
  try {
    await jobStore().transition(username, job.jobId, { from: ['UPLOADING'], to: 'COMPLETING' });
  } catch (error) {
    if (error instanceof TransitionRejected && error.current) throw notActive(error.current, 'be stored');
    throw error;
  }
  let settled: JobView | undefined;
  try {
    await fileStore().putObject(job.key, file.content, file.contentType, checksum);
  } catch (error) {
    // A PutObject that errs may still have stored the file (a timeout after S3 wrote it): S3 decides.
    // If even that cannot be told now, the job stays COMPLETING for /complete or the janitor.
    settled = await settleFormUpload(job, { writerEnded: true }).catch(() => undefined);
    if (settled?.status !== 'COMPLETED') throw error;
  }
  const done =
    settled ??
    (await recordCompleted(job).catch((error: unknown) => {
      if (error instanceof TransitionRejected && error.current) throw notActive(error.current, 'be stored');
      throw error;
    }));
  const stored = await fileStore().head(job.key);
  return {
    job: done,
    file: { name: job.filename, size, lastModified: (stored?.lastModified ?? new Date()).toISOString() },
  };
}

/**
 * How long after a form upload started writing its file nobody else may declare it unwritten: longer
 * than the API's Lambda timeout (29 s, serverless.yml), after which the writing request has ended.
 */
export const FORM_WRITER_GRACE_SECONDS = 60;

/**
 * A form upload sent again after its first request died (a 503, a lost answer) meets its name held
 * by that first job, left COMPLETING. Nobody would end it before the janitor's stuck time (minutes),
 * so once its writer has surely ended, S3 settles it here: COMPLETED or FAILED, either way it gives up
 * the name. Returns whether the name was given up; a holder that is not a form upload keeps it, and
 * one that may still be writing keeps it with a Retry-After for when it may no longer.
 */
async function settledDeadFormHolder(username: string, refusal: unknown): Promise<boolean> {
  if (!(refusal instanceof HttpError) || refusal.code !== ErrorCode.UploadInProgress) return false;
  const holderId = (refusal.details as { jobId?: string } | undefined)?.jobId;
  const holder = holderId ? await jobStore().get(username, holderId) : undefined;
  if (holder?.type !== 'upload' || holder.uploadId || holder.status !== 'COMPLETING') return false;
  const judgedAt = realClock();
  try {
    await settleFormUpload(holder, { writerEnded: false, judgedAt });
    return true;
  } catch (error) {
    if (error instanceof HttpError && error.code === ErrorCode.CompletionInProgress) {
      // Its request may still be writing: the same refusal, saying when that time is over.
      const wait = Math.max(
        1,
        Math.ceil(FORM_WRITER_GRACE_SECONDS - secondsSince(holder.updatedAt, judgedAt)),
      );
      throw new HttpError(
        409,
        ErrorCode.UploadInProgress,
        `${refusal.message}, whose request may still be storing its file; send it again in ${wait} s`,
        { details: refusal.details, headers: { 'retry-after': String(wait) } },
      );
    }
    // Other 409s: failed here (UploadGone), or ended meanwhile by another request.
    if (!(error instanceof HttpError && error.status === 409)) throw error;
    const now = await jobStore().get(username, holder.jobId);
    return now?.status !== 'UPLOADING' && now?.status !== 'COMPLETING';
  }
}

/** What a form upload's job keeps to recognise its own file in S3. */
interface FormDetails {
  /** Hex MD5 of the content: the ETag S3 gives a single PutObject (SSE-S3, the bucket's encryption). */
  contentMd5: string;
}

/** Whether the key holds this form upload's file, not an earlier file of the same name and size. */
function holdsFormFile(job: JobRecord, object: { size: number; etag: string } | undefined) {
  if (object?.size !== job.size) return false;
  const md5 = (job.details as Partial<FormDetails> | undefined)?.contentMd5;
  return md5 === undefined || object.etag.replace(/"/g, '') === md5;
}

/**
 * A form upload is one PutObject, written only once the job is COMPLETING, so S3 alone says how it
 * ended: the file there, COMPLETED; not there, nothing will write it any more (the request that
 * would have died), FAILED with its slot freed. An UPLOADING one never got to write. Returns the
 * job when COMPLETED, throws UploadGone when FAILED.
 */
async function settleFormUpload(
  seen: JobRecord,
  options: { writerEnded: true } | { writerEnded: false; judgedAt: JudgedAt },
): Promise<JobView> {
  const job = (await jobStore().get(seen.username, seen.jobId))!;
  if (job.status === 'COMPLETED') return jobView(job);
  if (job.status !== 'UPLOADING' && job.status !== 'COMPLETING') throw notActive(job, 'be completed');
  if (job.status === 'COMPLETING') {
    const object = await fileStore().head(job.key, { checksum: true });
    if (holdsFormFile(job, object)) return recordCompleted(job, object);
  }
  // No file yet, but the request writing it may still be running: it is not "not stored" until that
  // request has surely ended.
  if (
    job.status === 'COMPLETING' &&
    !options.writerEnded &&
    secondsSince(job.updatedAt, options.judgedAt) < FORM_WRITER_GRACE_SECONDS
  ) {
    throw conflict(
      ErrorCode.CompletionInProgress,
      `the file of job ${job.jobId} is being stored; ask again in a moment`,
    );
  }
  await markFailed(job, job.status, 'the file was not stored; send it again');
  const current = (await jobStore().get(job.username, job.jobId))!;
  // A concurrent settle (or kill) may have moved it first.
  if (current.status === 'COMPLETED') return jobView(current);
  if (current.status !== 'FAILED') throw notActive(current, 'be completed');
  throw conflict(ErrorCode.UploadGone, `the file of job ${job.jobId} was not stored; upload it again`);
}

function checkPartNumbers(job: JobRecord, partNumbers: number[]) {
  const outOfRange = partNumbers.filter((n) => n < 1 || n > job.partCount);
  if (outOfRange.length > 0) {
    throw new HttpError(
      400,
      'BadPartNumber',
      `this upload has parts 1 to ${job.partCount}; not ${describeRanges(outOfRange)}`,
      {
        details: { partNumbers: outOfRange },
      },
    );
  }
  if (new Set(partNumbers).size !== partNumbers.length) {
    throw new HttpError(400, 'BadPartNumber', 'each part number may appear once per request');
  }
}

/**
 * A part checksum must be what the job's algorithm gives, and only a job with an algorithm takes
 * them. `required`: every part must carry one (part URLs of such a job bind them).
 */
export function checkPartChecksums(job: JobRecord, parts: PartRequest[], required: boolean) {
  const algorithm = job.checksumAlgorithm;
  const given = parts.filter((part) => part.checksum !== undefined);
  if (!algorithm) {
    if (given.length === 0) return;
    throw new HttpError(
      400,
      'ValidationError',
      `upload ${job.jobId} was created without a checksumAlgorithm, so its parts carry no checksum`,
    );
  }
  const absent = required ? parts.filter((part) => part.checksum === undefined) : [];
  if (absent.length > 0) {
    throw new HttpError(
      400,
      'ChecksumRequired',
      `upload ${job.jobId} checks every part's ${algorithm}: send {"parts": [{"partNumber": …, "checksum": "<base64>"}]}, a checksum for each part (missing for parts ${describeRanges(absent.map((part) => part.partNumber))})`,
      { details: { algorithm, partNumbers: absent.map((part) => part.partNumber) } },
    );
  }
  const malformed = given.filter((part) => !isChecksumValue(algorithm, part.checksum!));
  if (malformed.length > 0) {
    throw new HttpError(
      400,
      'BadChecksum',
      `a part checksum of this upload is ${checksumValueHint(algorithm)}: not so for parts ${describeRanges(malformed.map((part) => part.partNumber))}`,
      { details: { algorithm, partNumbers: malformed.map((part) => part.partNumber) } },
    );
  }
}

/**
 * POST /upload/{jobId}/parts: fresh URLs for any parts (resume, or after the first ones expired).
 * `{partNumbers}` for uploads without a checksum algorithm, `{parts: [{partNumber, checksum}]}` for
 * those with one (either form is fine without).
 */
export async function signUploadParts(
  username: string,
  jobId: string,
  request: { partNumbers?: number[] | undefined; parts?: PartRequest[] | undefined },
) {
  const job = await findUpload(username, jobId);
  if (job.status !== 'UPLOADING') throw notActive(job, 'take more parts');
  refuseUnknownPlan(job);
  const parts = request.parts ?? (request.partNumbers ?? []).map((partNumber) => ({ partNumber }));
  checkPartNumbers(
    job,
    parts.map((part) => part.partNumber),
  );
  checkPartChecksums(job, parts, true);
  return { parts: await signParts(job, parts) };
}

/** The plan-based routes (parts, progress) need a plan; a job that learns it at completion has none yet. */
function refuseUnknownPlan(job: JobRecord) {
  if (!planFromParts(job)) return;
  throw conflict(
    'PlanUnknown',
    `upload ${job.jobId} learns its part sizes at completion (it was opened through the Companion routes): sign its parts with GET /s3/multipart/{uploadId}/{partNumber}`,
  );
}

/** S3 writes ETags in double quotes; accept them with or without. */
const normalizeEtag = (etag: string) => (etag.startsWith('"') ? etag : `"${etag}"`);

/** POST /upload/{jobId}/progress: records finished parts (the client's word; completion checks S3). */
export async function recordProgress(username: string, jobId: string, parts: PartRecord[]): Promise<JobView> {
  const job = await findUpload(username, jobId);
  if (job.status !== 'UPLOADING') throw notActive(job, 'record progress');
  refuseUnknownPlan(job);
  checkPartNumbers(
    job,
    parts.map((part) => part.partNumber),
  );
  checkPartChecksums(job, parts, false);
  const wrongSize = parts.filter((part) => part.size !== expectedPartSize(job, part.partNumber));
  if (wrongSize.length > 0) {
    throw new HttpError(
      400,
      'BadPartSize',
      `part sizes do not match the plan (${job.partSize} bytes each, the last one the rest): parts ${describeRanges(wrongSize.map((part) => part.partNumber))}`,
      {
        details: {
          parts: wrongSize.map((part) => ({ ...part, expected: expectedPartSize(job, part.partNumber) })),
        },
      },
    );
  }
  try {
    await partRecords().record(
      username,
      jobId,
      parts.map((part) => ({ ...part, etag: normalizeEtag(part.etag) })),
      'UPLOADING',
    );
  } catch (error) {
    if (error instanceof TransitionRejected && error.current)
      throw notActive(error.current, 'record progress');
    throw error;
  }
  return jobView((await jobStore().get(username, jobId))!);
}

/** Which of parts 1..N S3 holds with the planned sizes, and what is missing or wrong. */
function checkStoredParts(job: JobRecord, stored: StoredPart[]) {
  const byNumber = new Map(stored.map((part) => [part.partNumber, part]));
  const missing: number[] = [];
  const wrongSize: { partNumber: number; size: number; expected: number }[] = [];
  for (let partNumber = 1; partNumber <= job.partCount; partNumber++) {
    const part = byNumber.get(partNumber);
    const expected = expectedPartSize(job, partNumber);
    if (!part) missing.push(partNumber);
    else if (part.size !== expected) wrongSize.push({ partNumber, size: part.size, expected });
  }
  const complete = stored.filter((part) => part.partNumber <= job.partCount);
  return { missing, wrongSize, complete };
}

async function markFailed(job: JobRecord, from: JobRecord['status'], reason: string) {
  try {
    await jobStore().transition(job.username, job.jobId, {
      from: [from],
      to: 'FAILED',
      set: { error: reason },
      slot: slotFor(job),
    });
    recordJobMetric('UploadsFailed');
  } catch (error) {
    if (!(error instanceof TransitionRejected)) throw error;
  }
}

/** How a completion is asked for. */
export interface CompleteUploadOptions {
  /** The whole-file CRC the client computed (jobs with a CRC checksumAlgorithm). */
  checksum?: string | undefined;
  /**
   * How long to wait for a completion already in flight (another request's, or this client's
   * earlier try whose answer was lost) before answering 409 CompletionInProgress. The routes wait:
   * Uppy does not retry a failed completion, so a 409 there is a failed file although it completes.
   */
  awaitInFlightMs?: number;
  /**
   * The janitor's clock and stuck time, by which a completion in flight is judged over (default: the
   * real clock and JANITOR_STUCK_MINUTES). Tests and the soak run the janitor with its clock ahead
   * and its limits short; judged by the real clock, such a job would stay COMPLETING.
   */
  judgedAt?: JudgedAt;
}

/** When a completion in flight is judged, and after how long in COMPLETING it is over. */
interface JudgedAt {
  now: number;
  stuckSeconds: number;
}

const secondsSince = (isoTime: string, judgedAt: JudgedAt) => (judgedAt.now - Date.parse(isoTime)) / 1000;

const realClock = (): JudgedAt => ({ now: Date.now(), stuckSeconds: config().janitor.stuckSeconds });

/** The first pause, and the longest, between looks at a completion in flight. */
const IN_FLIGHT_POLL_MS = { first: 200, longest: 2000 };

/**
 * POST /upload/{jobId}/complete. The part list comes from S3 (ListParts), never from the client.
 * Re-entrant: a job left in COMPLETING by a crash completes on the next call, so waiting for a
 * completion in flight is asking again until it has ended or the time is up.
 */
export async function completeUpload(
  username: string,
  jobId: string,
  options: CompleteUploadOptions = {},
): Promise<JobView> {
  const deadline = Date.now() + (options.awaitInFlightMs ?? 0);
  for (let pause = IN_FLIGHT_POLL_MS.first; ; pause = Math.min(pause * 2, IN_FLIGHT_POLL_MS.longest)) {
    try {
      return await completeUploadOnce(username, jobId, options.checksum, options.judgedAt ?? realClock());
    } catch (error) {
      const inFlight = error instanceof HttpError && error.code === ErrorCode.CompletionInProgress;
      if (!inFlight || Date.now() + pause > deadline) throw error;
      await sleep(pause);
    }
  }
}

async function completeUploadOnce(
  username: string,
  jobId: string,
  checksum: string | undefined,
  judgedAt: JudgedAt,
): Promise<JobView> {
  let job = await findUpload(username, jobId);
  checkWholeFileChecksum(job, checksum);
  if (job.status === 'COMPLETED') return jobView(job);
  if (job.status !== 'UPLOADING' && job.status !== 'COMPLETING') throw notActive(job, 'be completed');
  // Form uploads have no multipart upload to complete; their one object is there or not.
  if (!job.uploadId) return settleFormUpload(job, { writerEnded: false, judgedAt });

  const store = fileStore();
  const stored = await store.listParts(job.key, job.uploadId);
  if (!stored) return settleVanishedUpload(job, judgedAt);
  const learned = planFromParts(job) ? await learnPlan(job, stored) : undefined;
  if (learned) job = { ...job, ...learned };
  const { missing, wrongSize, complete } = checkStoredParts(job, stored);
  // Checked on a retried completion too: parts can be sent again while a job is COMPLETING (their
  // URLs are still valid), and S3 would otherwise complete whatever it holds now.
  if (missing.length > 0 || wrongSize.length > 0) {
    const problems = [
      missing.length ? `missing parts ${describeRanges(missing)}` : '',
      wrongSize.length ? `wrong size: parts ${describeRanges(wrongSize.map((part) => part.partNumber))}` : '',
    ].filter(Boolean);
    const reopened = await reopenUpload(job);
    if (reopened.status === 'COMPLETED') return jobView(reopened);
    throw conflict(ErrorCode.PartsIncomplete, `S3 does not hold every part yet: ${problems.join('; ')}`, {
      missing,
      wrongSize,
    });
  }

  if (job.status === 'UPLOADING') {
    try {
      // A plan learned from S3's parts is written with the change, so that a retried completion (or
      // the janitor's) checks the same plan.
      job = await jobStore().transition(username, jobId, {
        from: ['UPLOADING'],
        to: 'COMPLETING',
        ...(learned ? { set: learned } : {}),
      });
    } catch (error) {
      if (!(error instanceof TransitionRejected) || !error.current) throw error;
      if (error.current.status === 'COMPLETED') return jobView(error.current);
      if (error.current.status === 'COMPLETING') {
        throw conflict(
          ErrorCode.CompletionInProgress,
          `upload ${jobId} is being completed; ask again in a moment`,
        );
      }
      throw notActive(error.current, 'be completed');
    }
  }

  let completed: Awaited<ReturnType<typeof store.completeMultipartUpload>>;
  try {
    completed = await store.completeMultipartUpload(job.key, job.uploadId!, complete, {
      algorithm: job.checksumAlgorithm,
      checksum,
    });
  } catch (error) {
    if (error instanceof NoSuchUpload) return settleVanishedUpload(job, judgedAt);
    const refusal = (error as Error).name;
    if (refusal === 'BadDigest') {
      // S3 computed the object's CRC from the parts it holds, and it is not the client's: some part
      // differs from the file (each was checked against the checksum sent with it). The upload stays
      // open, so the client can check its parts and send the wrong ones again.
      const reopened = await reopenUpload(job);
      if (reopened.status === 'COMPLETED') return jobView(reopened);
      throw conflict(
        ErrorCode.ChecksumMismatch,
        `S3 computed another ${job.checksumAlgorithm} for the parts it holds than the whole-file checksum sent: a part differs from the file; the upload stays open to send it again`,
        { algorithm: job.checksumAlgorithm, checksum },
      );
    }
    if (!PART_LIST_REFUSALS.has(refusal)) throw error;
    const reopened = await reopenUpload(job);
    if (reopened.status === 'COMPLETED') return jobView(reopened);
    throw conflict(
      ErrorCode.PartsIncomplete,
      `S3 refused the part list (${refusal}): a part changed while the upload was completing; check the parts and complete again`,
      { missing: [], wrongSize: [], s3Error: refusal },
    );
  }
  // S3's answer names the object's ETag and checksum: no HeadObject between completing and recording.
  return recordCompleted(
    job,
    completed.etag
      ? {
          key: job.key,
          size: job.size,
          etag: completed.etag,
          lastModified: new Date(),
          ...(completed.checksum ? { checksum: completed.checksum } : {}),
        }
      : undefined,
  );
}

/** The whole-file checksum a completion may carry: a full-object CRC of the job's own algorithm. */
function checkWholeFileChecksum(job: JobRecord, checksum: string | undefined) {
  if (checksum === undefined) return;
  const algorithm = job.checksumAlgorithm;
  if (!algorithm || !job.uploadId) {
    throw new HttpError(
      400,
      'ValidationError',
      `upload ${job.jobId} was created without a checksumAlgorithm: complete it without a checksum`,
    );
  }
  if (!isCrcAlgorithm(algorithm)) {
    throw new HttpError(
      400,
      'ValidationError',
      `${algorithm} checksums are composite (one per part, each checked by S3): complete upload ${job.jobId} without a whole-file checksum`,
    );
  }
  if (!isChecksumValue(algorithm, checksum)) {
    throw new HttpError(400, 'BadChecksum', `the whole-file checksum is ${checksumValueHint(algorithm)}`, {
      details: { algorithm },
    });
  }
}

/**
 * The part plan of an upload opened without one (Companion routes), read from S3's part list: parts
 * 1..N all there, every part the size of part 1 but the last (no larger): what Uppy, which cuts a
 * file into equal chunks, sends. Then the rules that need a size, as POST /upload applies them at
 * creation: the declared size (if any) must be what S3 holds; the size must fit the user's bytes in
 * flight (the others' plus this one). Too big for the limit as a whole: the upload fails and its parts
 * go (waiting would not help); too big for the room left now: 429, the job stays UPLOADING and can be
 * completed once other uploads end.
 */
async function learnPlan(job: JobRecord, stored: StoredPart[]): Promise<PartPlan> {
  const partCount = stored.reduce((max, part) => Math.max(max, part.partNumber), 0);
  const numbers = new Set(stored.map((part) => part.partNumber));
  const missing = Array.from({ length: partCount }, (_, index) => index + 1).filter((n) => !numbers.has(n));
  if (partCount === 0 || missing.length > 0) {
    throw conflict(
      ErrorCode.PartsIncomplete,
      partCount === 0
        ? 'S3 holds no part of this upload yet'
        : `S3 does not hold every part yet: missing parts ${describeRanges(missing)}`,
      { missing: partCount === 0 ? [1] : missing, wrongSize: [] },
    );
  }
  const partSize = stored[0]!.size;
  const size = stored.reduce((sum, part) => sum + part.size, 0);
  const wrongSize = stored
    .filter((part) => (part.partNumber < partCount ? part.size !== partSize : part.size > partSize))
    .map((part) => ({ partNumber: part.partNumber, size: part.size, expected: partSize }));
  if (wrongSize.length > 0) {
    throw conflict(
      ErrorCode.PartsIncomplete,
      `every part but the last must have the size of part 1 (${partSize} bytes), the last no more: parts ${describeRanges(wrongSize.map((part) => part.partNumber))} differ`,
      { missing: [], wrongSize },
    );
  }
  const declared = (job.details as Partial<PlanFromParts> | undefined)?.declaredSize;
  if (declared !== undefined && declared !== size) {
    throw conflict(
      ErrorCode.PartsIncomplete,
      `S3 holds ${size} bytes of this upload; it declared ${declared}`,
      {
        missing: [],
        wrongSize: [],
        size,
        declaredSize: declared,
      },
    );
  }
  const max = uploadQuota().maxBytes;
  if (max !== undefined && size > max) {
    const reason = `the file is ${size} bytes, more than the ${max} one user may have uploading at once (limit uploadBytesInFlight)`;
    await markFailed(job, 'UPLOADING', reason);
    await abortInS3(job);
    throw new HttpError(413, 'PayloadTooLarge', `${reason}; it was not stored`, {
      details: { limit: 'uploadBytesInFlight', max },
    });
  }
  const held = job.holds?.bytes ?? 0;
  if (size > held) {
    // The counter holds this job's declared bytes already: only the difference must fit.
    await jobStore()
      .checkQuota(job.username, 'upload', size - held, { maxBytes: max })
      .catch((error: unknown) => {
        throw error instanceof LimitReached ? limitRefusal(error) : error;
      });
  }
  return { size, partSize, partCount };
}

/**
 * S3's answers to CompleteMultipartUpload that mean the parts it holds are not the ones listed (one
 * was sent again after ListParts) or do not make a valid object: the client's parts to fix, not a fault.
 */
const PART_LIST_REFUSALS = new Set(['InvalidPart', 'InvalidPartOrder', 'EntityTooSmall']);

/**
 * A completion found the parts unfit: a COMPLETING job goes back to UPLOADING, so that its parts can
 * be sent again and it can be completed once they fit. Returns the job as it now is (COMPLETED when a
 * concurrent completion got there first).
 */
async function reopenUpload(job: JobRecord): Promise<JobRecord> {
  if (job.status !== 'COMPLETING') return job;
  try {
    return await jobStore().transition(job.username, job.jobId, { from: ['COMPLETING'], to: 'UPLOADING' });
  } catch (error) {
    if (!(error instanceof TransitionRejected) || !error.current) throw error;
    if (error.current.status === 'COMPLETED' || error.current.status === 'UPLOADING') return error.current;
    throw notActive(error.current, 'be completed');
  }
}

/**
 * COMPLETING -> COMPLETED, with the object's checksum and, in the same transaction, the file record
 * GET /files reads. `stored`: the object as a HEAD with its checksum already saw it.
 */
async function recordCompleted(job: JobRecord, stored?: StoredObject): Promise<JobView> {
  const object = stored ?? (await fileStore().head(job.key, { checksum: true }));
  const checksum: Checksum | undefined = object?.checksum;
  try {
    // Only after S3 was checked to hold exactly the planned parts (or the object, for a form upload).
    const done = await jobStore().transition(job.username, job.jobId, {
      from: ['COMPLETING'],
      to: 'COMPLETED',
      set: { partsDone: job.partCount, bytesDone: job.size, ...(checksum ? { checksum } : {}) },
      slot: slotFor(job),
      ...(object
        ? {
            alsoPut: fileRecordItem(job.username, {
              name: job.filename,
              etag: object.etag,
              size: object.size,
              jobId: job.jobId,
              completedAt: new Date().toISOString(),
              ...(checksum ? { checksum } : {}),
            }),
          }
        : {}),
    });
    recordJobMetric('UploadsCompleted', job.size);
    return jobView(done);
  } catch (error) {
    // Two completions at once: the other one recorded it.
    if (error instanceof TransitionRejected && error.current?.status === 'COMPLETED')
      return jobView(error.current);
    throw error;
  }
}

/**
 * S3 no longer knows the multipart upload. Either a completion finished it (this request's earlier
 * attempt that crashed before recording it, or a concurrent one), and the object is there with the
 * upload's size and a multipart ETag of as many parts; or it was removed under a live job.
 */
async function settleVanishedUpload(seen: JobRecord, judgedAt: JudgedAt): Promise<JobView> {
  const job = (await jobStore().get(seen.username, seen.jobId))!;
  if (job.status === 'COMPLETED') return jobView(job);
  if (job.status === 'COMPLETING') {
    const object = await fileStore().head(job.key, { checksum: true });
    const completedHere =
      object?.size === job.size && object.etag.replace(/"/g, '').endsWith(`-${job.partCount}`);
    if (completedHere) return recordCompleted(job, object);
    // Not there yet: S3 may still be storing it (moto drops the multipart upload before it writes
    // the object, seconds for a large one). Failing the job now would leave a FAILED job beside a
    // stored file; until the job has been COMPLETING for the janitor's stuck time, say "again later".
    if (!object && secondsSince(job.updatedAt, judgedAt) < judgedAt.stuckSeconds) {
      throw conflict(
        ErrorCode.CompletionInProgress,
        `S3 is still completing upload ${job.jobId}; ask again in a moment`,
      );
    }
  }
  if (job.status !== 'UPLOADING' && job.status !== 'COMPLETING') throw notActive(job, 'be completed');
  await markFailed(job, job.status, 'the multipart upload no longer exists in S3');
  throw conflict(
    ErrorCode.UploadGone,
    `the multipart upload of job ${job.jobId} no longer exists; start a new upload`,
  );
}

/**
 * Aborts the S3 upload, then asks S3 for its parts until none remain: S3 documents that parts in
 * flight during an abort may still land, and that aborting again frees them.
 */
export async function abortInS3(job: JobRecord) {
  if (!job.uploadId) return;
  const store = fileStore();
  for (let attempt = 1; attempt <= 5; attempt++) {
    await store.abortMultipartUpload(job.key, job.uploadId);
    const remaining = await store.listParts(job.key, job.uploadId);
    if (!remaining || remaining.length === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
  }
  logger.warn('parts still present after repeated aborts; the janitor will retry', { jobId: job.jobId });
}

/**
 * Moves an UPLOADING job to ABORTED, then removes its parts from S3. Returns undefined when the job
 * was not UPLOADING (already finished, or a completion won the race).
 */
async function abortJob(job: JobRecord): Promise<JobRecord | undefined> {
  let aborted: JobRecord;
  try {
    aborted = await jobStore().transition(job.username, job.jobId, {
      from: ['UPLOADING'],
      to: 'ABORTED',
      slot: slotFor(job),
    });
  } catch (error) {
    if (error instanceof TransitionRejected) return undefined;
    throw error;
  }
  recordJobMetric('UploadsAborted');
  await abortInS3(job);
  return aborted;
}

/** DELETE /upload/{jobId}: idempotent; never touches a completed file. */
export async function abortUpload(username: string, jobId: string): Promise<JobView> {
  const job = await findUpload(username, jobId);
  if (job.status === 'ABORTED') {
    await abortInS3(job);
    return jobView(job);
  }
  const aborted = await abortJob(job);
  if (aborted) return jobView(aborted);
  const current = (await jobStore().get(username, jobId))!;
  if (current.status === 'ABORTED') return jobView(current);
  throw notActive(current, 'be aborted');
}

/** DELETE /upload/kill: aborts every in-flight upload of the caller. */
export async function killUploads(username: string) {
  const slots = await jobStore().activeSlots(username, 'upload');
  const results = await Promise.all(
    slots.map(async (slot) => {
      const job = await jobStore().get(username, slot.jobId);
      return job && job.status === 'UPLOADING' ? abortJob(job) : undefined;
    }),
  );
  const aborted = results.flatMap((job) => (job ? [{ jobId: job.jobId, filename: job.filename }] : []));
  if (aborted.length === 0) throw notFound('NoUploadFound', `no upload found for user ${username}`);
  return { aborted };
}

/**
 * GET /jobs/{jobId}?reconcile=true for uploads: S3's part list is the truth. Records the parts S3
 * holds that the table lacks (a client that crashed before reporting them), and says which parts
 * are still missing, so a client that lost its own state re-sends only those.
 */
export async function reconcileUpload(username: string, jobId: string) {
  const job = await findUpload(username, jobId);
  if (job.status !== 'UPLOADING') return { job: jobView(job) };
  const [stored, recorded] = await Promise.all([
    fileStore().listParts(job.key, job.uploadId!),
    partRecords().list(jobId),
  ]);
  // Without a plan (Companion routes) every part S3 holds is usable so far; completion judges them.
  const { missing, complete } = planFromParts(job)
    ? { missing: [] as number[], complete: stored ?? [] }
    : checkStoredParts(job, stored ?? []);
  const usable = planFromParts(job)
    ? complete
    : complete.filter((part) => part.size === expectedPartSize(job, part.partNumber));
  const recordedEtags = new Map(recorded.map((part) => [part.partNumber, part.etag]));
  const unrecorded = usable.filter((part) => recordedEtags.get(part.partNumber) !== part.etag);
  if (unrecorded.length > 0) {
    try {
      await partRecords().record(username, jobId, unrecorded, 'UPLOADING');
    } catch (error) {
      if (!(error instanceof TransitionRejected)) throw error;
    }
  }
  const current = (await jobStore().get(username, jobId))!;
  const recordedChecksums = new Map(recorded.map((part) => [part.partNumber, part.checksum]));
  return {
    job: jobView(current),
    uploadedParts: usable.map((part) => part.partNumber),
    /**
     * The same parts with their sizes and checksums (S3's, or the recorded one where S3 lists none),
     * so that a resuming client reuses a part only if its own bytes still have that checksum.
     */
    parts: usable.map((part) => {
      const checksum = part.checksum ?? recordedChecksums.get(part.partNumber);
      return { partNumber: part.partNumber, size: part.size, ...(checksum ? { checksum } : {}) };
    }),
    /** Parts to (re-)send, in order: never received, or received with the wrong size. */
    missingParts: missing
      .concat(complete.filter((part) => !usable.includes(part)).map((part) => part.partNumber))
      .sort((a, b) => a - b),
  };
}
