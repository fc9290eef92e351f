import { exportView } from '../exports/exports.ts';
import { badRequest, notFound } from '../http/errors.ts';
import { jobStore } from './index.ts';
import { JOB_ID_PATTERN } from './job-ids.ts';
import { jobView } from './job-view.ts';
import type { JobStatus, JobType } from './jobs-table.ts';

/** The cursor is the last job id of the previous page; the partition is always the caller's own. */
const encodeCursor = (jobId: string) => Buffer.from(jobId).toString('base64url');

function decodeCursor(cursor: string): string {
  const jobId = Buffer.from(cursor, 'base64url').toString();
  if (!JOB_ID_PATTERN.test(jobId))
    throw badRequest('BadCursor', 'the cursor is not one this service handed out');
  return jobId;
}

export async function listJobs(
  username: string,
  options: {
    type?: JobType | undefined;
    status?: JobStatus | undefined;
    limit: number;
    cursor?: string | undefined;
  },
) {
  const page = await jobStore().list(username, {
    ...(options.type ? { type: options.type } : {}),
    ...(options.status ? { status: options.status } : {}),
    limit: options.limit,
    ...(options.cursor ? { startAfter: decodeCursor(options.cursor) } : {}),
  });
  return {
    jobs: page.jobs.map(jobView),
    ...(page.lastJobId ? { nextCursor: encodeCursor(page.lastJobId) } : {}),
  };
}

/** One job; a finished export comes with a freshly signed download URL. */
export async function getJob(username: string, jobId: string) {
  const job = await jobStore().get(username, jobId);
  if (!job) throw notFound('JobNotFound', `no job ${jobId}`);
  return job.type === 'export' ? exportView(job) : jobView(job);
}
