import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { gzip as gzipCallback } from 'node:zlib';
import { config } from '../config.ts';
import { jobStore } from '../jobs/index.ts';
import { type JobRecord, TransitionRejected } from '../jobs/job-store.ts';
import { logger } from '../log.ts';
import { recordJobMetric } from '../metrics.ts';
import { fileStore } from '../storage/index.ts';
import { MIN_PART_SIZE } from '../uploads/part-plan.ts';
import {
  cleanUpOutput,
  detailsOf,
  type ExportDetails,
  exportSlot,
  finishCancel,
  type WorkerEvent,
} from './exports.ts';

const gzip = promisify(gzipCallback);

/**
 * The export worker. It reads the source in steps of `partSize` bytes from a checkpoint, writes the
 * output with a multipart upload, and after every part saves progress, checkpoint and lease in one
 * conditional write, which is also where it learns of a kill (the write fails once the job is
 * CANCELLING). When its time budget runs out it hands the job to a fresh invocation.
 *
 * - raw: each step is an UploadPartCopy inside S3 (no byte passes through Lambda; any size).
 * - gzip: each step is one gzip member of that slice of the source; members are gathered into parts
 *   of at least 5 MiB. A file of concatenated gzip members is a valid gzip file (RFC 1952 2.2), and
 *   it lets a new invocation continue at a part boundary with no compressor state to carry over.
 */

export type RunResult = 'succeeded' | 'cancelled' | 'failed' | 'continued' | 'skipped';

export interface RunOptions {
  /** Epoch ms after which this invocation stops at the next part boundary and hands off. */
  deadline: number;
  /** Starts the next invocation (in Lambda: an asynchronous invoke of this function). */
  continueWith: (event: WorkerEvent) => Promise<void>;
}

/** Raised inside the loop when a conditional write says the job is no longer ours to run. */
class Stop extends Error {
  readonly current: JobRecord | undefined;
  constructor(current: JobRecord | undefined) {
    super('stop');
    this.current = current;
  }
}

export async function runExport(event: WorkerEvent, options: RunOptions): Promise<RunResult> {
  const token = randomUUID();
  const { leaseSeconds } = config().exports;
  let job: JobRecord;
  try {
    job = await jobStore().claimWorker(event.username, event.jobId, {
      token: event.token,
      newToken: token,
      leaseSeconds,
    });
  } catch (error) {
    if (!(error instanceof TransitionRejected)) throw error;
    if (error.current?.status === 'CANCELLING') {
      await finishCancel(error.current);
      return 'cancelled';
    }
    logger.info('export not claimable; another worker has it or it is finished', {
      status: error.current?.status,
    });
    return 'skipped';
  }
  logger.appendKeys({ jobId: job.jobId, username: job.username });

  try {
    return await work(job, token, options);
  } catch (error) {
    if (error instanceof Stop) return stopped(error.current);
    return fail(job, error);
  }
}

async function stopped(current: JobRecord | undefined): Promise<RunResult> {
  if (current?.status === 'CANCELLING') {
    await finishCancel(current);
    logger.info('export cancelled');
    return 'cancelled';
  }
  // Someone else runs it now (our lease ran out and the job was claimed again), or it ended: leave it be.
  logger.warn('export taken over or finished elsewhere', { status: current?.status });
  return 'skipped';
}

const describe = (error: unknown) => {
  const name = (error as Error)?.name;
  if (name === 'NoSuchKey' || name === 'NotFound') return 'the source file was deleted during the export';
  if (
    name === 'PreconditionFailed' ||
    (error as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode === 412
  ) {
    return 'the source file changed during the export';
  }
  return 'the export failed in S3; try again';
};

async function fail(job: JobRecord, error: unknown): Promise<RunResult> {
  logger.error('export failed', { error: error as Error });
  await cleanUpOutput(job);
  try {
    await jobStore().transition(job.username, job.jobId, {
      from: ['RUNNING'],
      to: 'FAILED',
      set: { error: describe(error) },
      slot: exportSlot(job),
      releaseCounter: true,
    });
  } catch (transitionError) {
    if (!(transitionError instanceof TransitionRejected)) throw transitionError;
    return stopped(transitionError.current);
  }
  recordJobMetric('ExportsFailed');
  return 'failed';
}

async function heartbeat(
  job: JobRecord,
  token: string,
  update: Parameters<ReturnType<typeof jobStore>['saveCheckpoint']>[3],
) {
  try {
    await jobStore().saveCheckpoint(job.username, job.jobId, token, update);
  } catch (error) {
    if (error instanceof TransitionRejected) throw new Stop(error.current);
    throw error;
  }
}

async function work(job: JobRecord, token: string, options: RunOptions): Promise<RunResult> {
  const store = fileStore();
  const details = detailsOf(job);
  const { leaseSeconds } = config().exports;

  if (job.size === 0) {
    // Nothing to copy in parts: the output is one small object.
    const empty = details.format === 'gzip' ? await gzip(Buffer.alloc(0)) : Buffer.alloc(0);
    await store.putObject(job.key, empty, details.format === 'gzip' ? 'application/gzip' : undefined);
    return succeed(job, details, empty.length);
  }

  let uploadId = job.uploadId;
  if (!uploadId) {
    uploadId = await store.createMultipartUpload(
      job.key,
      details.format === 'gzip' ? 'application/gzip' : undefined,
    );
    try {
      await heartbeat(job, token, {
        partsDone: 0,
        bytesDone: 0,
        checkpoint: { offset: 0, partNumber: 1 },
        leaseSeconds,
        uploadId,
      });
    } catch (error) {
      // The job was cancelled before it recorded the upload: this worker alone knows of it.
      await store.abortMultipartUpload(job.key, uploadId);
      throw error;
    }
    job = { ...job, uploadId };
  }

  let { offset, partNumber } = job.checkpoint ?? { offset: 0, partNumber: 1 };
  let stepsThisRun = 0;
  const steps = () => Math.ceil(offset / job.partSize);
  const sliceEnd = (start: number) => Math.min(start + job.partSize, job.size) - 1;

  // gzip: members waiting to fill a part, and the next slice already on its way.
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let prefetch: Promise<Uint8Array> | undefined;
  const read = (start: number) =>
    store.getRange(details.sourceKey, start, sliceEnd(start), details.sourceEtag);

  while (offset < job.size) {
    // Hand off only at a part boundary, and only after doing some work (so every invocation progresses).
    if (stepsThisRun > 0 && pendingBytes === 0 && Date.now() >= options.deadline) {
      const next = randomUUID();
      await heartbeat(job, token, {
        partsDone: steps(),
        bytesDone: offset,
        checkpoint: { offset, partNumber },
        leaseSeconds,
        handOffTo: next,
      });
      await options.continueWith({ username: job.username, jobId: job.jobId, token: next });
      logger.info('export continues in a new invocation', { offset, partNumber });
      return 'continued';
    }

    const end = sliceEnd(offset);
    if (details.format === 'raw') {
      await store.uploadPartCopy(job.key, uploadId, partNumber, {
        key: details.sourceKey,
        start: offset,
        end,
        ifMatch: details.sourceEtag,
      });
      partNumber++;
      offset = end + 1;
    } else {
      const slice = await (prefetch ?? read(offset));
      offset = end + 1;
      prefetch = offset < job.size ? read(offset) : undefined;
      prefetch?.catch(() => {}); // awaited on the next step; don't let an early failure go unhandled
      const member = await gzip(slice);
      pending.push(member);
      pendingBytes += member.length;
      if (pendingBytes >= MIN_PART_SIZE || offset >= job.size) {
        await store.uploadPart(job.key, uploadId, partNumber, Buffer.concat(pending, pendingBytes));
        partNumber++;
        pending = [];
        pendingBytes = 0;
      }
    }
    stepsThisRun++;
    // The checkpoint moves only at part boundaries; progress and the kill check happen every step.
    const checkpoint =
      pendingBytes === 0 ? { offset, partNumber } : (job.checkpoint ?? { offset: 0, partNumber: 1 });
    if (pendingBytes === 0) job = { ...job, checkpoint };
    await heartbeat(job, token, { partsDone: steps(), bytesDone: offset, checkpoint, leaseSeconds });
  }

  const parts = await store.listParts(job.key, uploadId);
  if (!parts) throw new Error('the output multipart upload disappeared');
  await store.completeMultipartUpload(job.key, uploadId, parts);
  const output = await store.head(job.key);
  return succeed(job, details, output?.size ?? 0);
}

async function succeed(job: JobRecord, details: ExportDetails, outputSize: number): Promise<RunResult> {
  try {
    await jobStore().transition(job.username, job.jobId, {
      from: ['RUNNING'],
      to: 'SUCCEEDED',
      set: { partsDone: job.partCount, bytesDone: job.size, details: { ...details, outputSize } },
      slot: exportSlot(job),
      releaseCounter: true,
    });
  } catch (error) {
    // A kill that landed after the last part: the output goes, as a cancelled export leaves nothing.
    if (error instanceof TransitionRejected) return stopped(error.current);
    throw error;
  }
  recordJobMetric('ExportsSucceeded', job.size);
  logger.info('export succeeded', { outputSize });
  return 'succeeded';
}
