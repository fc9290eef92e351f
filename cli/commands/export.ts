import { downloadName } from '../../client/index.ts';
import type { Context } from '../context.ts';
import { formatBytes, percent } from '../format.ts';
import { longRunning } from '../long-running.ts';
import { download } from './download.ts';

export interface ExportFlags {
  gzip?: boolean;
  download?: string;
  keep?: boolean;
}

export async function exportFile(ctx: Context, name: string, flags: ExportFlags): Promise<void> {
  const client = ctx.client();
  const format = flags.gzip ? 'gzip' : 'raw';
  let last = '';
  const job = await longRunning(
    ctx.out,
    {
      label: 'export  ',
      interruptNote: flags.keep
        ? 'interrupted: stopping; the export keeps running on the server (Ctrl-C again to quit at once)'
        : 'interrupted: cancelling the export on the server (Ctrl-C again to quit at once)',
    },
    (run) =>
      client.exportFile(name, {
        format,
        signal: run.signal,
        keepOnAbort: flags.keep === true,
        onStart: (started) => {
          ctx.out.event({
            event: 'started',
            jobId: started.jobId,
            filename: name,
            format,
            size: started.size,
          });
          ctx.out.line(
            `export job ${started.jobId} started: ${name} (${format}, ${formatBytes(started.size)})`,
          );
          run.showBar(started.size);
        },
        onProgress: (progress) => {
          run.updateBar(
            progress.bytesDone,
            progress.bytesTotal,
            progress.bytesPerSecond,
            progress.etaSeconds,
          );
          const key = `${progress.status} ${progress.partsDone}`;
          if (key === last || progress.status === 'SUCCEEDED') return;
          last = key;
          ctx.out.event({ event: 'progress', ...progress, bytesPerSecond: progress.bytesPerSecond ?? null });
          if (!ctx.out.tty) {
            ctx.out.line(
              `export job ${progress.jobId} ${progress.status}: ${formatBytes(progress.bytesDone)} of ${formatBytes(progress.bytesTotal)} (${percent(progress.bytesDone, progress.bytesTotal)}), ${progress.partsDone}/${progress.partCount} parts`,
            );
          }
        },
      }),
  );
  ctx.out.event({
    event: 'succeeded',
    jobId: job.jobId,
    filename: job.filename,
    format: job.format,
    outputSize: job.outputSize ?? null,
    downloadUrl: job.downloadUrl,
    expiresAt: job.expiresAt,
  });
  ctx.out.line(
    `export job ${job.jobId} SUCCEEDED: ${downloadName(job)}, ${formatBytes(job.outputSize ?? 0)}${flags.download ? '' : `; download URL (valid until ${job.expiresAt}): ${job.downloadUrl}`}`,
  );
  if (flags.download) await download(ctx, client, job, flags.download);
}
