import type { CrcAlgorithm } from '../../common/checksums.ts';
import { ErrorCode } from '../../common/error-codes.ts';
import { MAX_PARTS, MiB } from '../../common/part-plan.ts';
import type { ExportFormat } from '../../common/statuses.ts';
import { invokeAsync } from '../aws/clients.ts';
import { config } from '../config.ts';
import { conflict, notFound, serviceUnavailable } from '../http/errors.ts';
import { createOncePerKey } from '../jobs/idempotency.ts';
import { jobStore } from '../jobs/index.ts';
import { newJobId } from '../jobs/job-ids.ts';
import { type JobView, jobView } from '../jobs/job-view.ts';
import {
  type IdempotencyRecord,
  type JobRecord,
  LimitReached,
  TransitionRejected,
} from '../jobs/jobs-table.ts';
import { exportQuota, limitRefusal } from '../jobs/limits.ts';
import { logger } from '../log.ts';
import { recordJobMetric } from '../metrics.ts';
import { fileStore } from '../storage/index.ts';
import { exportsPrefix, uploadKey } from '../storage/keys.ts';

/**
 * Exports: a copy of an uploaded file, `raw` or `gzip`, written by the export worker (its own
 * Lambda, started asynchronously) under `exports/<username>/<jobId>/`, with a download URL at the end.
 *
 * QUEUED -> RUNNING -> SUCCEEDED, or -> CANCELLING -> CANCELLED, or FAILED / EXPIRED.
 */

export interface ExportDetails {
  format: ExportFormat;
  sourceKey: string;
  sourceEtag: string;
  /** The file the user downloads. */
  downloadName: string;
  /**
   * The algorithm the output upload is created with, so S3 checks every part and gives the output a
   * full-object checksum. Set when the job is created: the worker creates the upload with exactly
   * this, so every worker that resumes the job knows whether its parts need checksums. Jobs created
   * before exports had checksums have none and run without (their upload was opened without one).
   */
  checksumAlgorithm?: CrcAlgorithm;
  outputSize?: number;
}

/** What the API hands the worker: enough to find the job, and the token that lets it run it. */
export interface WorkerEvent {
  username: string;
  jobId: string;
  token?: string;
}

export const exportSlot = (job: Pick<JobRecord, 'jobId'>) => ({
  jobId: job.jobId,
  type: 'export' as const,
  name: job.jobId,
});
export const detailsOf = (job: JobRecord) => job.details as unknown as ExportDetails;

async function findExport(username: string, jobId: string): Promise<JobRecord> {
  const job = await jobStore().get(username, jobId);
  // Another user's job answers exactly like a missing one.
  if (job?.type !== 'export') throw notFound('JobNotFound', `no export job ${jobId}`);
  return job;
}

/** An export as clients see it; a finished one carries a freshly signed download URL. */
export async function exportView(job: JobRecord): Promise<JobView & Record<string, unknown>> {
  const details = detailsOf(job);
  const view: JobView & Record<string, unknown> = {
    ...jobView(job),
    format: details.format,
    ...(details.outputSize === undefined ? {} : { outputSize: details.outputSize }),
  };
  if (job.status === 'SUCCEEDED') {
    const ttl = config().exports.downloadTtlSeconds;
    view.downloadUrl = await fileStore().presignGetObject(job.key, ttl, details.downloadName);
    view.expiresAt = new Date(Date.now() + ttl * 1000).toISOString();
  }
  return view;
}

/**
 * Bytes of source per worker step (and per raw part): the configured size, grown when needed to stay
 * within S3's 10,000 parts (sources over 625 GiB at 64 MiB), never more than the source.
 */
export function exportStepSize(sourceSize: number, configured: number): number {
  const fitting = Math.ceil(sourceSize / MAX_PARTS / MiB) * MiB;
  return Math.max(1, Math.min(Math.max(configured, fitting), sourceSize));
}

/** The export's job (QUEUED) with its slot and its share of the user's limits. */
async function createExportJob(
  username: string,
  filename: string,
  format: ExportFormat,
  idempotency: IdempotencyRecord | undefined,
): Promise<JobRecord> {
  const sourceKey = uploadKey(username, filename);
  const source = await fileStore().head(sourceKey);
  if (!source) throw notFound(ErrorCode.FileNotFound, `no file ${filename} in your uploads folder`);

  const { exports: settings } = config();
  const jobId = newJobId();
  const downloadName = format === 'gzip' ? `${filename}.gz` : filename;
  const now = new Date().toISOString();
  const partSize = exportStepSize(source.size, settings.partSize);
  const job: JobRecord = {
    jobId,
    username,
    type: 'export',
    status: 'QUEUED',
    filename,
    key: `${exportsPrefix(username, jobId)}${downloadName}`,
    size: source.size,
    partSize,
    partCount: Math.max(1, Math.ceil(source.size / partSize)),
    partsDone: 0,
    bytesDone: 0,
    createdAt: now,
    updatedAt: now,
    details: {
      format,
      sourceKey,
      sourceEtag: source.etag,
      downloadName,
      checksumAlgorithm: 'CRC32',
    } satisfies ExportDetails,
  };
  try {
    await jobStore().create(job, jobId, exportQuota(), Date.now(), idempotency);
  } catch (error) {
    throw error instanceof LimitReached ? limitRefusal(error) : error;
  }
  return job;
}

/**
 * POST /export: the job (QUEUED) and an asynchronous start of the worker. With an Idempotency-Key,
 * a repeat of the request gets the job the first one made (`replayed`), started again if it is
 * still QUEUED (the first request may have died before starting it; a second start is harmless: only
 * one claim of a QUEUED job wins).
 */
export async function startExport(
  username: string,
  filename: string,
  format: ExportFormat,
  idempotency?: IdempotencyRecord,
): Promise<{ job: Awaited<ReturnType<typeof exportView>>; replayed: boolean }> {
  const { job, replayed } = await createOncePerKey(username, idempotency, (record) =>
    createExportJob(username, filename, format, record),
  );
  if (replayed) return replayExport(job);
  const { jobId } = job;
  const { exports: settings } = config();
  logger.appendKeys({ jobId });
  recordJobMetric('ExportsStarted');
  try {
    await invokeAsync(settings.workerFunction, { username, jobId } satisfies WorkerEvent);
  } catch (error) {
    logger.error('could not start the export worker', { jobId, error: error as Error });
    // A timed-out invoke may still have been delivered. The answer follows the job: if this write
    // wins, no worker can ever claim it and "not started" is true; if a worker claimed it first,
    // the export runs and is answered as started; if the write cannot be made at all, the job stays
    // QUEUED and the janitor starts it once it counts as stuck, so it is answered as started too.
    try {
      await jobStore().transition(username, jobId, {
        from: ['QUEUED'],
        to: 'FAILED',
        set: { error: 'the export worker could not be started' },
        slot: exportSlot(job),
      });
    } catch (transitionError) {
      if (transitionError instanceof TransitionRejected && transitionError.current)
        return { job: await exportView(transitionError.current), replayed: false };
      logger.error('could not record the failed start; the janitor will start the export', {
        error: transitionError as Error,
      });
      return { job: await exportView(job), replayed: false };
    }
    throw serviceUnavailable('the export could not be started; try again later', 5);
  }
  return { job: await exportView(job), replayed: false };
}

async function replayExport(job: JobRecord) {
  if (job.status === 'QUEUED') {
    try {
      await invokeAsync(config().exports.workerFunction, {
        username: job.username,
        jobId: job.jobId,
      } satisfies WorkerEvent);
    } catch (error) {
      // The janitor starts a job left QUEUED; the answer is the job either way.
      logger.warn('could not start the export worker again for a repeated request', {
        error: error as Error,
      });
    }
  }
  return { job: await exportView(job), replayed: true };
}

/** The statuses whose output goes; every other one has a worker's upload or a finished output. */
const CLEANABLE: ReadonlySet<string> = new Set(['CANCELLING', 'CANCELLED', 'FAILED', 'EXPIRED']);

/**
 * Removes everything a cancelled or failed export may have left: its multipart upload and its folder.
 * Only once the job is in a status that keeps nothing, read here rather than trusted from the
 * caller's copy: a SUCCEEDED output is never destroyed, however stale the caller's view.
 */
export async function cleanUpOutput(job: JobRecord): Promise<void> {
  const store = fileStore();
  const current = await jobStore().get(job.username, job.jobId);
  if (current && !CLEANABLE.has(current.status)) {
    logger.warn('not cleaning up an export that keeps its output', {
      jobId: job.jobId,
      status: current.status,
    });
    return;
  }
  const uploadId = current?.uploadId ?? job.uploadId;
  if (uploadId) {
    for (let attempt = 1; attempt <= 5; attempt++) {
      await store.abortMultipartUpload(job.key, uploadId);
      const remaining = await store.listParts(job.key, uploadId);
      if (!remaining || remaining.length === 0) break;
    }
  }
  // Also any upload this job opened but did not get to record (a crash between the two).
  for (const open of await store.listOpenUploads(exportsPrefix(job.username, job.jobId))) {
    await store.abortMultipartUpload(open.key, open.uploadId);
  }
  await store.deletePrefix(exportsPrefix(job.username, job.jobId));
}

/** Ends a CANCELLING export: cleanup, then CANCELLED. Safe to run twice (the worker and a kill may both). */
export async function finishCancel(job: JobRecord): Promise<JobRecord | undefined> {
  await cleanUpOutput(job);
  try {
    const cancelled = await jobStore().transition(job.username, job.jobId, {
      from: ['CANCELLING'],
      to: 'CANCELLED',
      slot: exportSlot(job),
    });
    recordJobMetric('ExportsCancelled');
    return cancelled;
  } catch (error) {
    if (error instanceof TransitionRejected) return error.current;
    throw error;
  }
}

/**
 * Asks one export to stop: QUEUED or RUNNING -> CANCELLING. A live worker notices within one part
 * and cleans up itself; a job with no live worker (never started, or its lease ran out) is cleaned
 * up here, so a kill never leaves a job stuck.
 */
async function cancel(job: JobRecord): Promise<JobRecord | undefined> {
  let cancelling: JobRecord;
  try {
    cancelling = await jobStore().transition(job.username, job.jobId, {
      from: ['QUEUED', 'RUNNING'],
      to: 'CANCELLING',
    });
  } catch (error) {
    if (error instanceof TransitionRejected) return undefined;
    throw error;
  }
  // A worker holds a lease while it runs (renewed after every part); none means nobody will notice.
  const workerAlive = (cancelling.leaseUntil ?? 0) > Date.now() / 1000;
  if (!workerAlive) return (await finishCancel(cancelling)) ?? cancelling;
  return cancelling;
}

/** POST /export/kill: every running export of the caller. */
export async function killExports(username: string) {
  const slots = await jobStore().activeSlots(username, 'export');
  const results = await Promise.all(
    slots.map(async (slot) => {
      const job = await jobStore().get(username, slot.jobId);
      return job && (job.status === 'QUEUED' || job.status === 'RUNNING') ? cancel(job) : undefined;
    }),
  );
  const cancelled = results.flatMap((job) =>
    job ? [{ jobId: job.jobId, filename: job.filename, status: job.status }] : [],
  );
  if (cancelled.length === 0) throw notFound('NoExportFound', `no export found for user ${username}`);
  return { cancelled };
}

/** DELETE /export/{jobId}: cancels one export; idempotent for one already cancelled. */
export async function cancelExport(username: string, jobId: string) {
  const job = await findExport(username, jobId);
  if (job.status === 'CANCELLING' || job.status === 'CANCELLED') return { job: await exportView(job) };
  const cancelled = await cancel(job);
  if (cancelled) return { job: await exportView(cancelled) };
  const current = (await jobStore().get(username, jobId))!;
  if (current.status === 'CANCELLING' || current.status === 'CANCELLED')
    return { job: await exportView(current) };
  throw conflict(ErrorCode.JobNotActive, `export ${jobId} is ${current.status}; it cannot be cancelled`, {
    status: current.status,
  });
}
