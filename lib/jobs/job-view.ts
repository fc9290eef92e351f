import type { Checksum, ChecksumAlgorithm } from '../../common/checksums.ts';
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
  /** The algorithm an upload's parts are checked with, if it was created with one. */
  checksumAlgorithm?: ChecksumAlgorithm;
  /** The checksum of the finished file (upload) or output (export), as S3 reports it. */
  checksum?: Checksum;
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
    ...(job.checksumAlgorithm ? { checksumAlgorithm: job.checksumAlgorithm } : {}),
    ...(job.checksum ? { checksum: job.checksum } : {}),
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
