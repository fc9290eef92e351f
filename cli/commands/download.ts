import {
  AbortedError,
  ChecksumMismatchError,
  downloadName,
  type ExportJob,
  type FileJobsClient,
} from '../../client/index.ts';
import type { Context } from '../context.ts';
import { CliError, EXIT_CHECKSUM_MISMATCH } from '../errors.ts';
import { formatBytes } from '../format.ts';
import { longRunning } from '../long-running.ts';

export async function downloadJob(ctx: Context, jobId: string, path: string): Promise<void> {
  await download(ctx, ctx.client(), jobId, path);
}

/** A finished export to `path`, checked against its checksum; also `export --download`'s last step. */
export async function download(
  ctx: Context,
  client: FileJobsClient,
  job: ExportJob | string,
  path: string,
): Promise<void> {
  const jobId = typeof job === 'string' ? job : job.jobId;
  const result = await longRunning(
    ctx.out,
    {
      label: 'download',
      interruptNote: 'interrupted: stopping the download',
      interrupted: () =>
        new AbortedError(
          `download stopped, nothing written; export job ${jobId} is still there: "file-jobs download ${jobId} ${path}" fetches it`,
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
    checksum: result.checksum ?? null,
  });
  const checked = result.checksum?.verified
    ? `; ${result.checksum.algorithm} ${result.checksum.value}, the export's`
    : '';
  ctx.out.line(
    `downloaded ${downloadName(result.job)} to ${result.path} (${formatBytes(result.bytes)}, ${result.bytes} bytes)${checked}`,
  );
}
