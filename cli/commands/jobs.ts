import type { ExportJob, Job, JobStatus, JobType } from '../../client/index.ts';
import type { Context } from '../context.ts';
import { formatBytes, percent, table } from '../format.ts';

export interface JobsFlags {
  type?: JobType;
  status?: JobStatus;
  limit: number;
  all?: boolean;
}

const progressOf = (job: Job) =>
  `${job.progress.partsDone}/${job.progress.partCount} (${percent(job.progress.bytesDone, job.progress.bytesTotal)})`;

export async function jobs(ctx: Context, flags: JobsFlags): Promise<void> {
  const client = ctx.client();
  const query = {
    ...(flags.type ? { type: flags.type } : {}),
    ...(flags.status ? { status: flags.status } : {}),
    limit: Math.min(flags.limit, 100),
  };
  const list: Job[] = [];
  let nextCursor: string | undefined;
  if (flags.all) {
    for await (const job of client.jobs(query)) list.push(job);
  } else {
    const page = await client.listJobs(query);
    list.push(...page.jobs);
    nextCursor = page.nextCursor;
  }
  if (ctx.out.json) {
    ctx.out.event({ jobs: list, ...(nextCursor ? { nextCursor } : {}) });
    return;
  }
  if (ctx.out.tty) {
    if (list.length === 0) {
      ctx.out.line('no jobs');
      return;
    }
    ctx.out.line(
      table(
        ['JOB', 'TYPE', 'STATUS', 'PARTS', 'SIZE', 'CREATED', 'FILE'],
        list.map((job) => [
          job.jobId,
          job.type,
          job.status,
          progressOf(job),
          formatBytes(job.size),
          job.createdAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
          job.filename,
        ]),
      ),
    );
    if (nextCursor) ctx.out.line(`(more: --all lists every job)`);
    return;
  }
  // Not a terminal: one tab-separated line per job.
  for (const job of list) {
    ctx.out.line(
      [
        job.jobId,
        job.type,
        job.status,
        job.progress.partsDone,
        job.progress.partCount,
        job.size,
        job.createdAt,
        job.filename,
      ].join('\t'),
    );
  }
}

export async function showJob(ctx: Context, jobId: string, reconcile: boolean): Promise<void> {
  const client = ctx.client();
  const answer = reconcile ? await client.reconcileUpload(jobId) : { job: await client.getJob(jobId) };
  if (ctx.out.json) {
    ctx.out.event(answer as unknown as Record<string, unknown>);
    return;
  }
  const { job } = answer;
  const rows: [string, string][] = [
    ['job', job.jobId],
    ['type', job.type],
    ['status', job.status],
    ['file', job.filename],
    ['size', `${formatBytes(job.size)} (${job.size} bytes)`],
    ['parts', `${progressOf(job)} of ${formatBytes(job.partSize)}`],
    ['created', job.createdAt],
    ['updated', job.updatedAt],
  ];
  if (job.finishedAt) rows.push(['finished', job.finishedAt]);
  if (job.error) rows.push(['error', job.error]);
  if (job.checksum)
    rows.push(['checksum', `${job.checksum.algorithm} ${job.checksum.value} (${job.checksum.type})`]);
  else if (job.checksumAlgorithm) rows.push(['checksum', `${job.checksumAlgorithm} (per part)`]);
  const exportJob = job as ExportJob;
  if (exportJob.format) rows.push(['format', exportJob.format]);
  if (exportJob.outputSize !== undefined)
    rows.push(['output', `${formatBytes(exportJob.outputSize)} (${exportJob.outputSize} bytes)`]);
  if (exportJob.downloadUrl)
    rows.push(['download', `${exportJob.downloadUrl} (until ${exportJob.expiresAt})`]);
  if ('missingParts' in answer && answer.missingParts) {
    rows.push(
      ['on S3', `${answer.uploadedParts?.length ?? 0} parts`],
      ['missing', `${answer.missingParts.length} parts`],
    );
  }
  for (const [key, value] of rows) ctx.out.line(`${`${key}:`.padEnd(10)}${value}`);
}
