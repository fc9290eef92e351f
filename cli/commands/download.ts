import {
  AbortedError,
  ChecksumMismatchError,
  downloadName,
  type ExportJob,
  type FileJobsClient,
  MiB,
} from '../../client/index.ts';
import type { Context } from '../context.ts';
import { CliError, EXIT_CHECKSUM_MISMATCH } from '../errors.ts';
import { formatBytes } from '../format.ts';
import { longRunning } from '../long-running.ts';

export async function downloadJob(
  ctx: Context,
  jobId: string,
  path: string,
  flags: { maxRate?: number } = {},
): Promise<void> {
  await download(ctx, ctx.client(), jobId, path, flags);
}

/** A finished export to `path`, checked against its checksum; also `export --download`'s last step. */
export async function download(
  ctx: Context,
  client: FileJobsClient,
  job: ExportJob | string,
  path: string,
  flags: { maxRate?: number } = {},
): Promise<void> {
  const jobId = typeof job === 'string' ? job : job.jobId;
  const result = await longRunning(
    ctx.out,
    {
      label: 'download',
      interruptNote: 'interrupted: stopping the download',
      interrupted: () =>
        new AbortedError(
          `download stopped; the bytes fetched so far are kept beside ${path}, and "file-jobs download ${jobId} ${path}" goes on from them`,
          { jobId, outcome: 'kept' },
        ),
      failed: (error) => {
        if (!(error instanceof ChecksumMismatchError)) return error;
        ctx.out.event({
          event: 'checksum-mismatch',
          jobId: error.jobId,
          algorithm: error.algorithm,
          expected: error.expected,
          actual: error.actual,
        });
        return new CliError(error.message, EXIT_CHECKSUM_MISMATCH);
      },
    },
    (run) =>
      client.downloadToFile(job, path, {
        signal: run.signal,
        ...(flags.maxRate ? { maxBytesPerSecond: flags.maxRate * MiB } : {}),
        onProgress: (progress) => {
          if (progress.bytesTotal === undefined) return;
          run.showBar(progress.bytesTotal);
          run.updateBar(
            progress.bytesDone,
            progress.bytesTotal,
            progress.bytesPerSecond,
            progress.etaSeconds,
          );
        },
      }),
  );
  ctx.out.event({
    event: 'downloaded',
    jobId: result.job.jobId,
    path: result.path,
    bytes: result.bytes,
    resumedFrom: result.resumedFrom,
    checksum: result.checksum ?? null,
  });
  const checked = result.checksum?.verified
    ? `; ${result.checksum.algorithm} ${result.checksum.value}, the export's`
    : '';
  ctx.out.line(
    `downloaded ${downloadName(result.job)} to ${result.path} (${formatBytes(result.bytes)}, ${result.bytes} bytes${result.resumedFrom > 0 ? `, going on from the ${formatBytes(result.resumedFrom)} an earlier download had fetched` : ''})${checked}`,
  );
}
