import { config } from '../../lib/config.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import { newJobId } from '../../lib/jobs/job-ids.ts';
import { testBucket } from './s3.ts';

/**
 * Creates an export job as POST /export does, without starting a worker: the test runs the worker
 * in-process (lib/exports/worker.ts) and so decides when it stops, continues or dies.
 */
export async function createExportJob(username: string, filename: string, format: 'raw' | 'gzip') {
  const store = jobStore();
  const source = (await testBucket().head(`uploads/${username}/${filename}`))!;
  const jobId = newJobId();
  const partSize = config().exports.partSize;
  const now = new Date().toISOString();
  const downloadName = format === 'gzip' ? `${filename}.gz` : filename;
  await store.create(
    {
      jobId,
      username,
      type: 'export',
      status: 'QUEUED',
      filename,
      key: `exports/${username}/${jobId}/${downloadName}`,
      size: source.size,
      partSize: Math.max(1, Math.min(partSize, source.size)),
      partCount: Math.max(1, Math.ceil(source.size / partSize)),
      partsDone: 0,
      bytesDone: 0,
      createdAt: now,
      updatedAt: now,
      details: { format, sourceKey: source.key, sourceEtag: source.etag, downloadName },
    },
    jobId,
    config().exports.maxRunning,
  );
  return jobId;
}
