import { randomUUID } from 'node:crypto';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { jest } from '@jest/globals';
import { documentClient } from '../../lib/aws/clients.ts';
import { config } from '../../lib/config.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import { newJobId } from '../../lib/jobs/job-ids.ts';
import type { JobRecord, JobStatus, JobType } from '../../lib/jobs/jobs-table.ts';
import { listJobs } from '../../lib/jobs/queries.ts';

/**
 * GET /jobs reads one page whatever the filter: a user's history may be long, and a client's resume
 * asks for `status=UPLOADING` every time. Jobs are written through the job store, as the routes do.
 */

const user = () => `list-${randomUUID().slice(0, 8)}`;

let clock = Date.now() - 3600_000;
async function job(username: string, type: JobType, finalStatus?: JobStatus): Promise<JobRecord> {
  clock += 1000; // distinct, increasing ids: newest first is well defined
  const now = new Date(clock).toISOString();
  const record: JobRecord = {
    jobId: newJobId(clock),
    username,
    type,
    status: type === 'upload' ? 'UPLOADING' : 'QUEUED',
    filename: `f-${randomUUID().slice(0, 6)}`,
    key: `uploads/${username}/x`,
    size: 1,
    partSize: 1,
    partCount: 1,
    partsDone: 0,
    bytesDone: 0,
    createdAt: now,
    updatedAt: now,
  };
  await jobStore().create(record, record.jobId);
  if (!finalStatus) return record;
  return jobStore().transition(username, record.jobId, {
    from: [record.status],
    to: finalStatus,
    slot: { jobId: record.jobId, type, name: record.jobId },
  });
}

/** Items DynamoDB read (ScannedCount of queries, items of batch reads) while `run` runs. */
async function itemsRead<T>(run: () => Promise<T>): Promise<{ result: T; read: number }> {
  const db = documentClient();
  const send = db.send.bind(db);
  let read = 0;
  const spy = jest.spyOn(db, 'send').mockImplementation((async (command: unknown) => {
    const output = (await send(command as never)) as Record<string, unknown>;
    read += Number(output.ScannedCount ?? 0);
    const responses = output.Responses as Record<string, unknown[]> | undefined;
    for (const items of Object.values(responses ?? {})) read += items.length;
    return output;
  }) as never);
  try {
    return { result: await run(), read };
  } finally {
    spy.mockRestore();
  }
}

describe('listing jobs', () => {
  const username = user();
  const made: JobRecord[] = [];

  beforeAll(async () => {
    // Oldest first: the one upload still in flight, then a long history of finished jobs.
    made.push(await job(username, 'upload'));
    for (let i = 0; i < 60; i++) made.push(await job(username, 'upload', 'COMPLETED'));
    for (let i = 0; i < 30; i++) made.push(await job(username, 'export', 'CANCELLED'));
    made.push(await job(username, 'upload', 'FAILED'));
    made.push(await job(username, 'export', 'FAILED'));
    made.push(await job(username, 'export'));
  }, 120_000);

  it('finds the one upload in flight behind a long history with one page of reads', async () => {
    const { result, read } = await itemsRead(() =>
      jobStore().list(username, { status: 'UPLOADING', limit: 1 }),
    );
    expect(result.jobs.map((j) => j.jobId)).toEqual([made[0]!.jobId]);
    expect(read).toBeLessThanOrEqual(2);
  });

  it('filters by type with one page of reads, newest first, and pages on with the cursor', async () => {
    const { result, read } = await itemsRead(() => listJobs(username, { type: 'upload', limit: 5 }));
    const uploads = made.filter((j) => j.type === 'upload').reverse();
    expect(result.jobs.map((j) => j.jobId)).toEqual(uploads.slice(0, 5).map((j) => j.jobId));
    expect(read).toBeLessThanOrEqual(10);
    const next = await listJobs(username, { type: 'upload', limit: 5, cursor: result.nextCursor });
    expect(next.jobs.map((j) => j.jobId)).toEqual(uploads.slice(5, 10).map((j) => j.jobId));
  });

  it('merges a status both types share, and follows the cursor to the end', async () => {
    const failed = made.filter((j) => j.status === 'FAILED').reverse();
    const first = await listJobs(username, { status: 'FAILED', limit: 1 });
    expect(first.jobs.map((j) => j.jobId)).toEqual([failed[0]!.jobId]);
    const second = await listJobs(username, { status: 'FAILED', limit: 1, cursor: first.nextCursor });
    expect(second.jobs.map((j) => j.jobId)).toEqual([failed[1]!.jobId]);
    const rest = await listJobs(username, {
      status: 'FAILED',
      limit: 5,
      ...(second.nextCursor ? { cursor: second.nextCursor } : {}),
    });
    expect(second.nextCursor === undefined || rest.jobs.length === 0).toBe(true);
    expect(
      (await listJobs(username, { type: 'export', status: 'FAILED', limit: 5 })).jobs.map((j) => j.jobId),
    ).toEqual([failed.find((j) => j.type === 'export')!.jobId]);
  });

  it('sees a status change at once (the page is read from the table, not the index)', async () => {
    const queued = made.at(-1)!;
    await jobStore().transition(username, queued.jobId, { from: ['QUEUED'], to: 'CANCELLING' });
    const { jobs } = await listJobs(username, { status: 'CANCELLING', limit: 5 });
    expect(jobs.map((j) => [j.jobId, j.status])).toEqual([[queued.jobId, 'CANCELLING']]);
    expect((await listJobs(username, { status: 'QUEUED', limit: 5 })).jobs).toEqual([]);
  });

  it('treats a job past its retention as gone, before DynamoDB TTL deletes it', async () => {
    const expired = made[1]!;
    await documentClient().send(
      new UpdateCommand({
        TableName: config().jobsTable,
        Key: { pk: `USER#${username}`, sk: `JOB#${expired.jobId}` },
        UpdateExpression: 'SET expiresAt = :past',
        ExpressionAttributeValues: { ':past': Math.floor(Date.now() / 1000) - 1 },
      }),
    );
    expect(await jobStore().get(username, expired.jobId)).toBeUndefined();
    expect((await jobStore().get(username, expired.jobId, { includeExpired: true }))?.jobId).toBe(
      expired.jobId,
    );
    const all = await listJobs(username, { type: 'upload', status: 'COMPLETED', limit: 100 });
    expect(all.jobs).toHaveLength(59);
    expect(all.jobs.map((j) => j.jobId)).not.toContain(expired.jobId);
  });
});
