import { ApiError } from '../../client/index.ts';
import { forgetUploads } from '../config.ts';
import type { Context } from '../context.ts';
import { CliError, EXIT_NOTHING_TO_KILL, UsageError } from '../errors.ts';
import { plural } from '../format.ts';

/** The service's 404 for a kill with nothing running, as exit code 3 (EXIT_NOTHING_TO_KILL); others as they are. */
const nothingToKill =
  (code: string) =>
  (error: unknown): never => {
    if (error instanceof ApiError && error.code === code)
      throw new CliError(error.message, EXIT_NOTHING_TO_KILL);
    throw error;
  };

export async function kill(ctx: Context, what: string, jobId: string | undefined): Promise<void> {
  const client = ctx.client();
  const kind = what.replace(/s$/, '');
  if (kind === 'upload') {
    if (jobId) {
      const job = await client.abortUpload(jobId);
      forgetUploads([jobId]);
      ctx.out.event({ event: 'aborted', aborted: [{ jobId, filename: job.filename }] });
      ctx.out.line(`aborted upload job ${jobId} (${job.filename}): ${job.status}`);
      return;
    }
    const { aborted } = await client.killUploads().catch(nothingToKill('NoUploadFound'));
    forgetUploads(aborted.map((job) => job.jobId));
    ctx.out.event({ event: 'aborted', aborted });
    ctx.out.line(
      `aborted ${plural(aborted.length, 'upload')}: ${aborted.map((job) => `job ${job.jobId} (${job.filename})`).join(', ')}`,
    );
    return;
  }
  if (kind === 'export') {
    if (jobId) {
      const job = await client.cancelExport(jobId);
      ctx.out.event({
        event: 'cancelled',
        cancelled: [{ jobId, filename: job.filename, status: job.status }],
      });
      ctx.out.line(`cancelled export job ${jobId} (${job.filename}): ${job.status}`);
      return;
    }
    const { cancelled } = await client.killExports().catch(nothingToKill('NoExportFound'));
    ctx.out.event({ event: 'cancelled', cancelled });
    ctx.out.line(
      `cancelled ${plural(cancelled.length, 'export')}: ${cancelled.map((job) => `job ${job.jobId} (${job.filename})`).join(', ')}`,
    );
    return;
  }
  throw new UsageError(`kill what? "upload" or "export", not "${what}"`);
}
