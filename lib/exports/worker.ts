import { randomUUID } from 'node:crypto';
import { type Checksum, checksumOf, FullObjectCrc } from '../../common/checksums.ts';
import { MIN_PART_SIZE } from '../../common/part-plan.ts';
import { config } from '../config.ts';
import { jobStore, workerLeases } from '../jobs/index.ts';
import { type JobRecord, TransitionRejected } from '../jobs/jobs-table.ts';
import { logger } from '../log.ts';
import { recordJobMetric } from '../metrics.ts';
// Every S3 call of the worker may move a whole part (UploadPartCopy, UploadPart): the store whose
// client allows long requests (see CLIENT_TIMEOUTS), not the API's bounded one.
import { transferFileStore } from '../storage/index.ts';
import { exportsPrefix } from '../storage/keys.ts';
import {
  cleanUpOutput,
  detailsOf,
  type ExportDetails,
  exportSlot,
  finishCancel,
  type WorkerEvent,
} from './exports.ts';
import { gzip, gzipMembers } from './gzip-members.ts';
import { PartWindow } from './part-window.ts';
import { persistently } from './persistently.ts';

/**
 * The export worker. It reads the source in steps of `partSize` bytes from a checkpoint, writes the
 * output with a multipart upload, and after every part saves progress, checkpoint and lease in one
 * conditional write, which is also where it learns of a kill (the write fails once the job is
 * CANCELLING). When its time budget runs out it hands the job to a fresh invocation.
 *
 * - raw: each step is an UploadPartCopy inside S3 (no byte passes through Lambda; any size).
 * - gzip: each step is cut into slices of at most 8 MiB, each compressed as one gzip member on one
 *   of the function's cores (gzip-members.ts); whole steps are gathered into parts of at least
 *   5 MiB. A file of concatenated gzip members is a valid gzip file (RFC 1952 2.2), and it lets a new
 *   invocation continue at a part boundary with no compressor state to carry over.
 *
 * Fencing: a step may outlast the lease, and the janitor then starts another worker on the same job.
 * So every job write is conditional on this worker's token, the final ones included, and only the
 * winner of a transition to an end status touches S3 after it: a worker that loses leaves S3 alone.
 * Any step can die and be repeated: a new worker resumes from the recorded checkpoint and, at the
 * end, records the state S3 is in (an output a dead predecessor completed is recorded, not redone).
 * Errors that retrying cannot fix (the source deleted or changed, the output upload gone) fail the
 * job. Any other error (throttling, a timeout, a dropped connection, an S3 500) interrupts the worker:
 * the first time since its last finished part it restarts itself from its checkpoint after a short
 * pause (EXPORT_RESTART_DELAY_SECONDS), so a passing fault costs seconds; if it stops again before
 * finishing a part, it gives its lease up and the janitor restarts it on its own schedule, until
 * JANITOR_MAX_EXPORT_RESTARTS stops in a row fail the job. The writes and calls of those endings (and
 * the claim) are retried through an outage that outlasts the SDK's retries (persistently.ts), so a
 * fault of a few seconds never leaves a job waiting for its lease to run out.
 */

export type RunResult =
  | 'succeeded'
  | 'cancelled'
  | 'failed'
  | 'continued'
  | 'restarted'
  | 'interrupted'
  | 'skipped';

export interface RunOptions {
  /** Epoch ms after which this invocation stops at the next part boundary and hands off. */
  deadline: number;
  /** Starts the next invocation (in Lambda: an asynchronous invoke of this function). */
  continueWith: (event: WorkerEvent) => Promise<void>;
  /** Time this invocation has left, in ms (Lambda's context); a restart only pauses if it fits. */
  remainingMs?: () => number;
  /** This invocation's id (Lambda's awsRequestId), recorded with the claim (see dead-workers.ts). */
  requestId?: string;
}

/** Raised inside the loop when a conditional write says the job is no longer ours to run. */
class Stop extends Error {
  readonly current: JobRecord | undefined;
  constructor(current: JobRecord | undefined) {
    super('stop');
    this.current = current;
  }
}

/** The output in S3 is not what the job recorded (its upload was removed, or parts are missing). */
class OutputLost extends Error {
  override name = 'OutputLost';
}

/** What the job table holds for this worker: where a restart would resume. */
interface Recorded {
  partsDone: number;
  bytesDone: number;
  checkpoint: { offset: number; partNumber: number };
  /** Restarts of the job's worker since its last finished part (this invocation's own included). */
  restartsSinceProgress: number;
}

const statusCode = (error: unknown) =>
  (error as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;

/** Errors a retry would meet again; everything else (throttling, timeouts, 5xx) is worth a restart. */
function isPermanent(error: unknown): boolean {
  const name = (error as Error)?.name;
  return (
    error instanceof OutputLost ||
    ['NoSuchKey', 'NotFound', 'NoSuchUpload', 'PreconditionFailed'].includes(name) ||
    statusCode(error) === 412
  );
}

/** Kept back from the invocation's time when its bookkeeping is retried, for the last attempt itself. */
const BOOKKEEPING_MARGIN_MS = 10_000;

/**
 * Until when the worker retries its bookkeeping (persistently.ts): at most one lease from now, after
 * which the janitor may restart the job anyway, and never past the invocation's end.
 */
export function bookkeepingDeadline(options: Pick<RunOptions, 'remainingMs'>): number {
  const { leaseSeconds } = config().exports;
  const remaining = options.remainingMs
    ? options.remainingMs() - BOOKKEEPING_MARGIN_MS
    : Number.POSITIVE_INFINITY;
  return Date.now() + Math.min(leaseSeconds * 1000, remaining);
}

export async function runExport(event: WorkerEvent, options: RunOptions): Promise<RunResult> {
  const token = randomUUID();
  const { leaseSeconds } = config().exports;
  let job: JobRecord;
  try {
    job = await persistently(
      'claiming the export',
      () =>
        workerLeases().claim(event.username, event.jobId, {
          token: event.token,
          newToken: token,
          leaseSeconds,
          requestId: options.requestId,
        }),
      bookkeepingDeadline(options),
    );
  } catch (error) {
    if (!(error instanceof TransitionRejected)) throw error;
    const current = error.current;
    // An earlier attempt of this claim landed and only its answer was lost: the job is ours.
    if (current?.status === 'RUNNING' && current.workerToken === token) job = current;
    else if (current?.status === 'CANCELLING') return stopped(current, options);
    else {
      logger.info('export not claimable; another worker has it or it is finished', {
        status: current?.status,
      });
      return 'skipped';
    }
  }
  logger.appendKeys({ jobId: job.jobId, username: job.username });

  const recorded: Recorded = {
    partsDone: job.partsDone,
    bytesDone: job.bytesDone,
    checkpoint: job.checkpoint ?? { offset: 0, partNumber: 1 },
    restartsSinceProgress: job.restartsSinceProgress ?? 0,
  };
  try {
    return await work(job, token, options, recorded);
  } catch (error) {
    if (error instanceof Stop) return stopped(error.current, options);
    if (isPermanent(error)) return fail(job, token, error, options);
    return interrupt(job, token, recorded, error, options);
  }
}

async function stopped(current: JobRecord | undefined, options: RunOptions): Promise<RunResult> {
  if (current?.status === 'CANCELLING') {
    await persistently('finishing the cancel', () => finishCancel(current), bookkeepingDeadline(options));
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
  if (name === 'PreconditionFailed' || statusCode(error) === 412) {
    return 'the source file changed during the export';
  }
  if (error instanceof OutputLost || name === 'NoSuchUpload')
    return 'the partial output was removed from S3; start the export again';
  return 'the export failed in S3; try again';
};

/** FAILED first, and only while the job is still ours; then, as the winner, the cleanup. */
async function fail(job: JobRecord, token: string, error: unknown, options: RunOptions): Promise<RunResult> {
  const deadline = bookkeepingDeadline(options);
  try {
    await persistently(
      'recording the failure',
      () =>
        jobStore().transition(job.username, job.jobId, {
          from: ['RUNNING'],
          to: 'FAILED',
          set: { error: describe(error) },
          slot: exportSlot(job),
          token,
        }),
      deadline,
    );
  } catch (transitionError) {
    if (!(transitionError instanceof TransitionRejected)) throw transitionError;
    const current = transitionError.current;
    // Unless an earlier attempt landed (the job FAILED under this worker's token), likely a
    // successor's completion removed the upload under us: its job, not our failure.
    if (current?.status !== 'FAILED' || current.workerToken !== token) {
      logger.warn('export step failed in a worker that no longer holds the job', { error: error as Error });
      return stopped(current, options);
    }
  }
  logger.error('export failed', { error: error as Error });
  recordJobMetric('ExportsFailed');
  await persistently('cleaning up the failed export', () => cleanUpOutput(job), deadline);
  return 'failed';
}

const positionOf = ({ partsDone, bytesDone, checkpoint }: Recorded) => ({ partsDone, bytesDone, checkpoint });

/** Kept back from the invocation's time for the restart's own writes and invoke after its pause. */
const RESTART_MARGIN_MS = 15_000;

/**
 * Something a restart may well get past (a throttled or failed call, a lost answer). The job stays
 * RUNNING at its last checkpoint. The first stop since the last finished part restarts the worker at
 * once (restartItself); otherwise, or if that fails, the lease is given up and the janitor's next
 * run restarts it (its limit on stops in a row bounds an error that keeps coming back).
 */
async function interrupt(
  job: JobRecord,
  token: string,
  recorded: Recorded,
  error: unknown,
  options: RunOptions,
): Promise<RunResult> {
  const { restartDelaySeconds } = config().exports;
  const pause = restartDelaySeconds * 1000;
  const fits = !options.remainingMs || options.remainingMs() > pause + RESTART_MARGIN_MS;
  if (recorded.restartsSinceProgress === 0 && config().janitor.maxExportRestarts > 0 && fits) {
    logger.warn('export interrupted; it restarts from its checkpoint', {
      error: error as Error,
      delaySeconds: restartDelaySeconds,
    });
    return restartItself(job, token, recorded, pause, options);
  }
  logger.error('export interrupted; the janitor will restart it', { error: error as Error });
  return giveUpLease(job, token, recorded, options);
}

/**
 * Hands the job to a new invocation after `pause`, counted as a restart. The lease covers the pause,
 * so neither the janitor nor a duplicate start takes the job meanwhile; a kill meanwhile is found by
 * the new invocation's claim (CANCELLING), which finishes it.
 */
async function restartItself(
  job: JobRecord,
  token: string,
  recorded: Recorded,
  pause: number,
  options: RunOptions,
): Promise<RunResult> {
  const next = randomUUID();
  const { leaseSeconds } = config().exports;
  try {
    await persistently(
      'recording the restart',
      () =>
        workerLeases().heartbeat(job.username, job.jobId, token, {
          ...positionOf(recorded),
          leaseSeconds: Math.ceil(pause / 1000) + leaseSeconds,
          handOffTo: next,
          restart: true,
        }),
      bookkeepingDeadline(options),
    );
  } catch (error) {
    if (!(error instanceof TransitionRejected)) {
      // DynamoDB stayed away for as long as the worker could wait: the lease then runs out by
      // itself, and the janitor acts.
      logger.error('could not record the restart', { error: error as Error });
      return 'interrupted';
    }
    // Unless an earlier attempt landed and only its answer was lost (the job is handed to `next`).
    if (error.current?.status !== 'RUNNING' || error.current.workerToken !== next)
      return stopped(error.current, options);
  }
  recordJobMetric('ExportsRestarted');
  await new Promise((resolve) => setTimeout(resolve, pause));
  try {
    // A duplicate invocation (an invoke whose answer was lost) is harmless: only one claim of `next` wins.
    await persistently(
      'starting the restarted worker',
      () => options.continueWith({ username: job.username, jobId: job.jobId, token: next }),
      bookkeepingDeadline(options),
    );
  } catch (error) {
    logger.error('could not start the restarted worker; the janitor will', { error: error as Error });
    return giveUpLease(job, next, recorded, options);
  }
  return 'restarted';
}

/** RUNNING at the checkpoint with no lease: the janitor's next run restarts the worker. */
async function giveUpLease(
  job: JobRecord,
  token: string,
  recorded: Recorded,
  options: RunOptions,
): Promise<RunResult> {
  try {
    await persistently(
      'giving up the lease',
      () =>
        workerLeases().heartbeat(job.username, job.jobId, token, {
          ...positionOf(recorded),
          leaseSeconds: -1,
        }),
      bookkeepingDeadline(options),
    );
  } catch (releaseError) {
    if (releaseError instanceof TransitionRejected) return stopped(releaseError.current, options);
    // The lease then runs out by itself; the restart only comes later.
    logger.warn('could not give up the lease', { error: releaseError as Error });
  }
  return 'interrupted';
}

async function heartbeat(
  job: JobRecord,
  token: string,
  recorded: Recorded,
  update: Parameters<ReturnType<typeof workerLeases>['heartbeat']>[3],
) {
  const progressed = update.checkpoint.offset > recorded.checkpoint.offset;
  try {
    await workerLeases().heartbeat(job.username, job.jobId, token, { ...update, progressed });
  } catch (error) {
    if (error instanceof TransitionRejected) throw new Stop(error.current);
    throw error;
  }
  Object.assign(recorded, {
    partsDone: update.partsDone,
    bytesDone: update.bytesDone,
    checkpoint: update.checkpoint,
    ...(progressed ? { restartsSinceProgress: 0 } : {}),
  });
}

async function work(
  job: JobRecord,
  initialToken: string,
  options: RunOptions,
  recorded: Recorded,
): Promise<RunResult> {
  let token = initialToken;
  const store = transferFileStore();
  const details = detailsOf(job);
  const { leaseSeconds, copyWindow, gzipWindow } = config().exports;

  if (job.size === 0) {
    // Nothing to copy in parts: the output is one small object.
    const empty = details.format === 'gzip' ? await gzip(Buffer.alloc(0)) : Buffer.alloc(0);
    await store.putObject(job.key, empty, details.format === 'gzip' ? 'application/gzip' : undefined, {
      algorithm: 'CRC32',
      value: await checksumOf('CRC32', empty),
    });
    const output = await store.head(job.key, { checksum: true });
    return succeed(job, token, details, options, { size: empty.length, checksum: output?.checksum });
  }

  // The job says whether its output upload is (or was) created with an algorithm, so a worker that
  // resumes after a hand-off names part checksums exactly when the upload expects them: S3 refuses a
  // completion that leaves them out for an upload created with an algorithm, and one that names them
  // for an upload created without (an export that began before outputs had checksums).
  const algorithm = details.checksumAlgorithm;

  let uploadId = job.uploadId;
  if (!uploadId) {
    // Uploads an earlier worker opened and died before recording: only the token holder records
    // one, and that is now this worker, so nobody will ever use them.
    for (const open of await store.listOpenUploads(exportsPrefix(job.username, job.jobId))) {
      await store.abortMultipartUpload(open.key, open.uploadId);
    }
    uploadId = await store.createMultipartUpload(
      job.key,
      details.format === 'gzip' ? 'application/gzip' : undefined,
      algorithm,
    );
    try {
      await heartbeat(job, token, recorded, {
        partsDone: 0,
        bytesDone: 0,
        checkpoint: { offset: 0, partNumber: 1 },
        leaseSeconds,
        uploadId,
      });
    } catch (error) {
      // Rejected: the job is not ours (cancelled, or taken over), so this worker alone knows of the
      // upload. (After any other error the write may have landed: the next worker sorts it out.)
      if (error instanceof Stop) await store.abortMultipartUpload(job.key, uploadId);
      throw error;
    }
    job = { ...job, uploadId };
  }

  const from = job.checkpoint ?? { offset: 0, partNumber: 1 };
  const window: PartWindow = new PartWindow(
    details.format === 'raw' ? copyWindow : gzipWindow.uploads,
    from,
    (): Promise<void> => {
      const bytesDone = window.bytesDone;
      return heartbeat(job, token, recorded, {
        partsDone: Math.ceil(bytesDone / job.partSize),
        bytesDone,
        checkpoint: window.checkpoint,
        leaseSeconds,
      });
    },
  );

  // Hand off only between parts, after this invocation wrote at least one (so every one progresses),
  // with nothing in flight: the checkpoint is then exactly where this invocation stopped.
  const handOff = async (): Promise<RunResult> => {
    await window.drain();
    const next = randomUUID();
    const checkpoint = window.checkpoint;
    await heartbeat(job, token, recorded, {
      partsDone: Math.ceil(checkpoint.offset / job.partSize),
      bytesDone: checkpoint.offset,
      checkpoint,
      leaseSeconds,
      handOffTo: next,
    });
    token = next;
    try {
      await persistently(
        'starting the next invocation',
        () => options.continueWith({ username: job.username, jobId: job.jobId, token: next }),
        bookkeepingDeadline(options),
      );
    } catch (error) {
      // The export is resumable from this checkpoint: an interruption, not a failure.
      logger.error('could not start the next invocation', { error: error as Error });
      return interrupt(job, next, recorded, error, options);
    }
    logger.info('export continues in a new invocation', { ...checkpoint });
    return 'continued';
  };

  let partNumber = from.partNumber;
  try {
    if (details.format === 'raw') {
      for (let offset = from.offset; offset < job.size; ) {
        if (partNumber > from.partNumber && Date.now() >= options.deadline) return await handOff();
        const part = { number: partNumber, start: offset, end: Math.min(offset + job.partSize, job.size) };
        // S3 computes the copied part's checksum itself; the completion reads it back from ListParts.
        await window.start(part.number, part.end, part.end - part.start, () =>
          store.uploadPartCopy(job.key, uploadId, part.number, {
            key: details.sourceKey,
            start: part.start,
            end: part.end - 1,
            ifMatch: details.sourceEtag,
          }),
        );
        partNumber++;
        offset = part.end;
      }
    } else {
      // Members gather into parts of whole steps and at least S3's minimum size; a part's bytes are
      // known only once its last member is, so parts start in order and the window bounds how many
      // upload at once.
      const members = gzipMembers(
        (start, end) => store.streamRange(details.sourceKey, start, end, details.sourceEtag),
        { from: from.offset, size: job.size, stepSize: job.partSize, threads: gzipWindow.threads },
      );
      let gathered: Buffer[] = [];
      let gatheredBytes = 0;
      let partStart = from.offset;
      for await (const member of members) {
        gathered.push(member.bytes);
        gatheredBytes += member.bytes.length;
        if (!member.stepEnd) continue;
        if (gatheredBytes < MIN_PART_SIZE && member.end < job.size) {
          // No part yet, but the lease and the kill check cannot wait for one.
          await window.tick();
          continue;
        }
        const part = { number: partNumber, start: partStart, end: member.end };
        const body = Buffer.concat(gathered, gatheredBytes);
        gathered = [];
        gatheredBytes = 0;
        // The checksum of the bytes as compressed here: S3 refuses a part that arrives otherwise.
        await window.start(part.number, part.end, part.end - part.start, async () =>
          store.uploadPart(
            job.key,
            uploadId,
            part.number,
            body,
            algorithm ? { algorithm, value: await checksumOf(algorithm, body) } : undefined,
          ),
        );
        partNumber++;
        partStart = part.end;
        if (part.end < job.size && Date.now() >= options.deadline) {
          await members.return(undefined);
          return await handOff();
        }
      }
    }
    await window.drain();
  } catch (error) {
    // Nothing of this worker may write to S3 after it gives the job up (to a cleanup, a successor).
    await window.drain().catch(() => {});
    throw error;
  }

  return succeed(job, token, details, options, await completeOutput(job, uploadId, partNumber - 1));
}

const multipartParts = (etag: string) => Number(/-(\d+)"?$/.exec(etag)?.[1] ?? 0);

/** The output as the job records it: its size, and its checksum when S3 reports one. */
interface Output {
  size: number;
  checksum?: Checksum | undefined;
}

/**
 * Completes the output upload, or finds it completed: by this worker's own earlier call whose answer
 * was lost, or by a worker that died (or outlasted its lease) before recording SUCCEEDED. Then S3
 * holds no upload but the object, with a multipart ETag of as many parts (and, raw, the source's size).
 * The checksum is read from the object in either case, so a recovered output reports it too.
 */
async function completeOutput(job: JobRecord, uploadId: string, partCount: number): Promise<Output> {
  const store = transferFileStore();
  const { format, checksumAlgorithm: algorithm } = detailsOf(job);
  // Parts above the count cannot come from this job's deterministic plan, but complete without them.
  const parts = (await store.listParts(job.key, uploadId))?.filter((part) => part.partNumber <= partCount);
  if (parts) {
    const contiguous = parts.length === partCount && parts.every((part, i) => part.partNumber === i + 1);
    if (!contiguous) throw new OutputLost(`S3 holds ${parts.length} parts of the output, not ${partCount}`);
    // The whole output's CRC from the CRCs S3 checked each part against (parts written by earlier
    // invocations included): S3 verifies the object against it. Some S3s (moto) list no part
    // checksums; the completion then names none and S3 derives what it does by itself.
    let checksum: string | undefined;
    if (algorithm && parts.every((part) => part.checksum)) {
      const whole = new FullObjectCrc(algorithm);
      for (const part of parts) whole.append(part.checksum!, part.size);
      checksum = whole.digest();
    }
    try {
      await store.completeMultipartUpload(job.key, uploadId, parts, { algorithm, checksum });
    } catch (error) {
      if ((error as Error)?.name !== 'NoSuchUpload') throw error;
    }
  }
  const output = await store.head(job.key, { checksum: true });
  const complete =
    output !== undefined &&
    multipartParts(output.etag) === partCount &&
    (format !== 'raw' || output.size === job.size);
  if (!complete) throw new OutputLost('the output multipart upload disappeared');
  return { size: output.size, checksum: output.checksum };
}

async function succeed(
  job: JobRecord,
  token: string,
  details: ExportDetails,
  options: RunOptions,
  output: Output,
): Promise<RunResult> {
  const outputSize = output.size;
  try {
    await jobStore().transition(job.username, job.jobId, {
      from: ['RUNNING'],
      to: 'SUCCEEDED',
      set: {
        partsDone: job.partCount,
        bytesDone: job.size,
        details: { ...details, outputSize },
        // None when S3 gives none (some emulators): the export is no less finished for it.
        ...(output.checksum ? { checksum: output.checksum } : {}),
      },
      slot: exportSlot(job),
      token,
    });
  } catch (error) {
    if (!(error instanceof TransitionRejected)) throw error;
    const status = error.current?.status;
    if (status === 'FAILED' || status === 'CANCELLED' || status === 'EXPIRED') {
      // The winner cleaned up before this worker's completion landed; the job keeps nothing.
      await cleanUpOutput(error.current!);
      return 'skipped';
    }
    // A kill after the last part (the output goes: a cancelled export leaves nothing), or another
    // worker holds the job (it will record this output itself) or has already recorded it.
    return stopped(error.current, options);
  }
  recordJobMetric('ExportsSucceeded', job.size);
  logger.info('export succeeded', { outputSize });
  // Uploads of workers that died before recording them: nobody needs them once the job is over.
  // (Best effort: the janitor's sweep of unowned uploads is the backstop.)
  try {
    const store = transferFileStore();
    for (const open of await store.listOpenUploads(exportsPrefix(job.username, job.jobId))) {
      await store.abortMultipartUpload(open.key, open.uploadId);
    }
  } catch (error) {
    logger.warn('could not sweep stray uploads of a finished export', { error: error as Error });
  }
  return 'succeeded';
}
