import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import {
  AbortedError,
  type ChecksumAlgorithm,
  ChecksumMismatchError,
  ErrorCode,
  type FileJobsClient,
  FileJobsError,
  fileSource,
  MiB,
  type UploadResult,
} from '../../client/index.ts';
import { forgetUploads, readUploads, rememberUpload } from '../config.ts';
import type { Context } from '../context.ts';
import { CliError, EXIT_CHECKSUM_MISMATCH, UsageError } from '../errors.ts';
import { formatBytes, formatDuration, formatRate, percent, plural } from '../format.ts';
import { longRunning } from '../long-running.ts';

const seconds = (ms: number) => Math.round(ms) / 1000;

export interface UploadFlags {
  name?: string;
  partSize?: number;
  concurrency: number;
  overwrite?: boolean;
  keep?: boolean;
  resume: boolean;
  maxRate?: number;
  checksumAlgorithm?: ChecksumAlgorithm;
  /** False with --no-checksum. */
  checksum: boolean;
}

/**
 * Decides what to do with an unfinished upload of the same name: resume it when it is this very
 * file, start over when the file changed since, and refuse when it is another file (unless
 * --no-resume). "This very file": same size, and then for an upload with checksums the library
 * compares every part S3 holds with the file and sends again those that differ, so a changed
 * modification time does not matter; without checksums, when this machine started it, the same
 * modification time (a changed file starts over, as its parts cannot be compared).
 */
async function unfinishedUpload(
  ctx: Context,
  client: FileJobsClient,
  name: string,
  file: { path: string; size: number; mtimeMs: number },
  flags: UploadFlags,
): Promise<string | undefined> {
  const unfinished = await client.findUnfinishedUpload(name);
  if (!unfinished) return undefined;
  const record = readUploads().uploads[unfinished.jobId];
  const sameFile =
    unfinished.size === file.size &&
    (unfinished.checksumAlgorithm !== undefined ||
      !record ||
      (record.size === file.size && record.mtimeMs === file.mtimeMs));
  let reason: string;
  if (!flags.resume) {
    reason = 'as --no-resume asks';
  } else if (sameFile) {
    return unfinished.jobId;
  } else if (unfinished.size === file.size) {
    reason = `because ${file.path} changed since it began`;
  } else {
    throw new CliError(
      `${name} is already being uploaded by job ${unfinished.jobId} (${formatBytes(unfinished.size)}; this file is ${formatBytes(file.size)}): pass --no-resume to abort that upload and start over, or --name to upload under another name`,
    );
  }
  await client.abortUpload(unfinished.jobId);
  forgetUploads([unfinished.jobId]);
  ctx.out.event({ event: 'aborted-unfinished', jobId: unfinished.jobId });
  ctx.out.line(`aborted the unfinished upload job ${unfinished.jobId} of ${name} ${reason}; starting over`);
  return undefined;
}

/** The interruption, with what to run next for a job left on the server. */
function uploadInterrupted(error: AbortedError): AbortedError {
  const { jobId, outcome } = error;
  if (outcome === 'killed' && jobId) forgetUploads([jobId]);
  if (outcome === 'kept')
    return new AbortedError(`${error.message} by running the same command again`, { jobId, outcome });
  if (outcome === 'kill-failed' && jobId)
    return new AbortedError(`${error.message}; "file-jobs kill upload ${jobId}" aborts it`, {
      jobId,
      outcome,
    });
  return error;
}

/** A failure after the job began: it stays on the server to resume, unless the server says it is gone. */
function uploadFailed(error: unknown, jobId: string | undefined): unknown {
  const gone =
    error instanceof FileJobsError &&
    (error.code === ErrorCode.UploadGone || error.code === ErrorCode.JobNotActive);
  if (jobId && gone) forgetUploads([jobId]);
  if (!jobId || gone) return error;
  return new CliError(
    `${(error as Error).message} (upload job ${jobId} stays on the server: run the same command again to resume it, or "file-jobs kill upload ${jobId}")`,
    error instanceof ChecksumMismatchError ? EXIT_CHECKSUM_MISMATCH : 1,
  );
}

export async function upload(ctx: Context, path: string, flags: UploadFlags): Promise<void> {
  if (!flags.checksum && flags.checksumAlgorithm)
    throw new UsageError('--checksum-algorithm and --no-checksum contradict each other: pass one');
  const client = ctx.client();
  const source = await fileSource(path);
  const name = flags.name ?? source.name;
  const absolute = resolve(path);
  const { mtimeMs } = await stat(absolute);
  const file = { path, size: source.size, mtimeMs };
  let jobId: string | undefined;
  let result: UploadResult;
  try {
    const resume = await unfinishedUpload(ctx, client, name, file, flags);
    result = await longRunning(
      ctx.out,
      {
        label: 'upload  ',
        interruptNote: flags.keep
          ? 'interrupted: stopping; the upload stays on the server (Ctrl-C again to quit at once)'
          : 'interrupted: aborting the upload on the server (Ctrl-C again to quit at once)',
        interrupted: uploadInterrupted,
        failed: (error) => uploadFailed(error, jobId),
      },
      (run) =>
        client.upload({
          source,
          filename: name,
          concurrency: flags.concurrency,
          ...(flags.partSize ? { partSize: Math.round(flags.partSize * MiB) } : {}),
          ...(flags.overwrite ? { overwrite: true } : {}),
          ...(flags.maxRate ? { maxBytesPerSecond: flags.maxRate * MiB } : {}),
          resume: resume ?? false,
          keepOnAbort: flags.keep === true,
          ...(flags.checksum ? {} : { checksumAlgorithm: false }),
          ...(flags.checksum && flags.checksumAlgorithm
            ? { checksumAlgorithm: flags.checksumAlgorithm }
            : {}),
          signal: run.signal,
          onStart: (start) => {
            jobId = start.jobId;
            rememberUpload({
              apiUrl: ctx.api.url,
              jobId: start.jobId,
              path: absolute,
              filename: name,
              size: start.size,
              mtimeMs,
              startedAt: new Date().toISOString(),
            });
            ctx.out.event({ event: 'started', ...start });
            const checked = start.checksumAlgorithm
              ? `, compared with the file by ${start.checksumAlgorithm}`
              : '';
            const resumed = start.resumed
              ? `; resuming: ${plural(start.partsOnServer, 'part')} already on the server${start.partsToVerify ? checked : ''}, ${start.partsToSend} to send`
              : '';
            const checksums = start.checksumAlgorithm
              ? `, ${start.checksumAlgorithm} checksums`
              : ', no checksums';
            ctx.out.line(
              `upload job ${start.jobId} started: ${name}, ${formatBytes(start.size)} (${start.size} bytes) in ${start.partCount} parts of ${formatBytes(start.partSize)}${checksums}${resumed}`,
            );
            run.showBar(start.size, start.bytesOnServer);
          },
          onProgress: (progress) => {
            run.updateBar(
              progress.bytesSent,
              progress.bytesTotal,
              progress.bytesPerSecond,
              progress.etaSeconds,
            );
            if (progress.kind === 'verified') {
              ctx.out.event({
                event: 'verified',
                jobId: progress.jobId,
                partNumber: progress.partNumber,
                matched: progress.matched,
              });
              // A part sent again is worth a line even above a progress bar; one reused is not.
              if (!progress.matched)
                ctx.out.line(
                  `part ${progress.partNumber} on the server differs from ${path}: sending it again`,
                );
              else if (!ctx.out.tty)
                ctx.out.line(`part ${progress.partNumber} on the server matches the file`);
              return;
            }
            if (progress.kind !== 'part') return;
            ctx.out.event({
              event: 'part',
              jobId: progress.jobId,
              partNumber: progress.partNumber,
              partsDone: progress.partsDone,
              partCount: progress.partCount,
              partsSent: progress.partsSent,
              ...(progress.checksum ? { checksum: progress.checksum } : {}),
              bytesDone: progress.bytesDone,
              bytesTotal: progress.bytesTotal,
              bytesPerSecond:
                progress.bytesPerSecond === undefined ? null : Math.round(progress.bytesPerSecond),
            });
            if (!ctx.out.tty) {
              ctx.out.line(
                `part ${progress.partNumber} sent: ${progress.partsDone}/${progress.partCount} parts, ${formatBytes(progress.bytesDone)} of ${formatBytes(progress.bytesTotal)} (${percent(progress.bytesDone, progress.bytesTotal)}), ${formatRate(progress.bytesPerSecond)}`,
              );
            }
          },
          onWarning: (message) => ctx.out.note(`warning: ${message}`),
        }),
    );
  } finally {
    await source.close().catch(() => {});
  }
  forgetUploads([result.jobId]);
  const rate =
    result.elapsedMs > 0 ? (result.partsSent * result.partSize) / (result.elapsedMs / 1000) : undefined;
  ctx.out.event({
    event: 'completed',
    jobId: result.jobId,
    filename: result.filename,
    size: result.size,
    partSize: result.partSize,
    partCount: result.partCount,
    resumed: result.resumed,
    partsSent: result.partsSent,
    partsReused: result.partsReused,
    partsChanged: result.partsChanged,
    retries: result.retries,
    progressReports: result.progressReports,
    seconds: seconds(result.elapsedMs),
    status: result.job.status,
    checksumAlgorithm: result.checksumAlgorithm ?? null,
    checksum: result.job.checksum ?? null,
  });
  const again = result.partsChanged
    ? ` (${result.partsChanged} of them again: the server's copy differed from the file)`
    : '';
  const checksum = result.job.checksum
    ? `; ${result.job.checksum.algorithm} ${result.job.checksum.value}${result.checksum === result.job.checksum.value ? ', checked by S3' : ''}`
    : '';
  ctx.out.line(
    `upload job ${result.jobId} ${result.job.status}: ${result.filename}, ${formatBytes(result.size)} in ${formatDuration(result.elapsedMs / 1000)} (${formatRate(rate)}); ${plural(result.partsSent, 'part')} sent${again}, ${result.partsReused} already on the server${checksum}`,
  );
}
