import { GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { documentClient } from '../../lib/aws/clients.ts';
import { config } from '../../lib/config.ts';
import type { WorkerEvent } from '../../lib/exports/exports.ts';
import { type RunResult, runExport } from '../../lib/exports/worker.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import { newJobId } from '../../lib/jobs/job-ids.ts';
import { exportQuota } from '../../lib/jobs/limits.ts';
import { asFunction } from './as-function.ts';
import { testBucket } from './s3.ts';

/**
 * Creates an export job as POST /export does, without starting a worker: the test runs the worker
 * in-process (lib/exports/worker.ts) and so decides when it stops, continues or dies.
 * `withChecksum: false` makes a job as POST /export made them before outputs had checksums.
 */
export async function createExportJob(
  username: string,
  filename: string,
  format: 'raw' | 'gzip',
  { withChecksum = true }: { withChecksum?: boolean } = {},
) {
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
      details: {
        format,
        sourceKey: source.key,
        sourceEtag: source.etag,
        downloadName,
        ...(withChecksum ? { checksumAlgorithm: 'CRC32' } : {}),
      },
    },
    jobId,
    exportQuota(),
  );
  return jobId;
}

/**
 * One invocation of the export worker, in-process, as the exportWorker function: the IAM check
 * holds its AWS calls to that function's role. Tests call the worker only through this.
 */
export const runExportAsWorker: typeof runExport = (event, options) =>
  asFunction('exportWorker', () => runExport(event, options));

/** Runs the worker as Lambda would, each invocation with no time left: one part, then a hand-off. */
export async function runToTheEnd(first: WorkerEvent, beforeEach?: (invocation: number) => Promise<void>) {
  let event: WorkerEvent | undefined = first;
  let invocations = 0;
  let result: RunResult = 'skipped';
  while (event) {
    invocations++;
    await beforeEach?.(invocations);
    let next: WorkerEvent | undefined;
    const invocation = event;
    result = await runExportAsWorker(invocation, {
      deadline: 0,
      continueWith: async (continuation) => {
        next = continuation;
      },
    });
    event = next;
  }
  return { result, invocations };
}

/** The lease of the job's worker ran out (as if its step outlasted it, or it died): no sleeping. */
export async function expireLease(username: string, jobId: string) {
  await documentClient().send(
    new UpdateCommand({
      TableName: config().jobsTable,
      Key: { pk: `USER#${username}`, sk: `JOB#${jobId}` },
      UpdateExpression: 'SET leaseUntil = :past',
      ExpressionAttributeValues: { ':past': Math.floor(Date.now() / 1000) - 60 },
    }),
  );
}

/** Everything under the job's export folder: finished objects and open multipart uploads. */
export async function exportLeftovers(username: string, jobId: string) {
  const prefix = `exports/${username}/${jobId}/`;
  return {
    objects: (await testBucket().list(prefix)).map((object) => object.key),
    openUploads: await testBucket().listOpenUploads(prefix),
  };
}

/** The user's running-exports counter (the item the per-user limit is enforced on). */
export async function runningExports(username: string): Promise<number> {
  const { Item } = await documentClient().send(
    new GetCommand({
      TableName: config().jobsTable,
      Key: { pk: `USER#${username}`, sk: 'RUNNING#export' },
      ConsistentRead: true,
    }),
  );
  return Number(Item?.running ?? 0);
}

/** Polls the job until it has `status` (its worker runs elsewhere, in serverless-offline) or 30 s pass; the job as last read. */
export async function waitForStatus(username: string, jobId: string, status: string) {
  const deadline = Date.now() + 30_000;
  let job = (await jobStore().get(username, jobId))!;
  while (job.status !== status && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    job = (await jobStore().get(username, jobId))!;
  }
  return job;
}
