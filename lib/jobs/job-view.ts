import type { JobRecord } from './jobs-table.ts';

/** What clients see of a job: no table keys, no S3 upload id. */
export interface JobView {
  jobId: string;
  type: JobRecord['type'];
  status: JobRecord['status'];
  filename: string;
  size: number;
  partSize: number;
  partCount: number;
  contentType?: string;
  progress: { partsDone: number; partCount: number; bytesDone: number; bytesTotal: number };
  createdAt: string;
  updatedAt: string;
  finishedAt?: string;
  error?: string;
}

export function jobView(job: JobRecord): JobView {
  return {
    jobId: job.jobId,
    type: job.type,
    status: job.status,
    filename: job.filename,
    size: job.size,
    partSize: job.partSize,
    partCount: job.partCount,
    ...(job.contentType ? { contentType: job.contentType } : {}),
    progress: {
      partsDone: Number(job.partsDone ?? 0),
      partCount: job.partCount,
      bytesDone: Number(job.bytesDone ?? 0),
      bytesTotal: job.size,
    },
    createdAt: job.createdAt,
    updatedAt: job.updatedAt,
    ...(job.finishedAt ? { finishedAt: job.finishedAt } : {}),
    ...(job.error ? { error: job.error } : {}),
  };
}

/** `[1,2,3,7,9,10]` -> `"1-3, 7, 9-10"`: part lists in messages stay short at 10,000 parts. */
export function describeRanges(numbers: number[], max = 20): string {
  const ranges: string[] = [];
  let start: number | undefined;
  let previous: number | undefined;
  for (const n of [...numbers].sort((a, b) => a - b)) {
    if (previous !== undefined && n === previous + 1) {
      previous = n;
      continue;
    }
    if (start !== undefined) ranges.push(start === previous ? `${start}` : `${start}-${previous}`);
    start = previous = n;
  }
  if (start !== undefined) ranges.push(start === previous ? `${start}` : `${start}-${previous}`);
  return ranges.length > max ? `${ranges.slice(0, max).join(', ')}, …` : ranges.join(', ');
}
