import { randomBytes, randomUUID } from 'node:crypto';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { MiB } from '../../common/part-plan.ts';
import { documentClient } from '../../lib/aws/clients.ts';
import { config } from '../../lib/config.ts';
import { cancelExport, type WorkerEvent } from '../../lib/exports/exports.ts';
import type { JanitorSettings } from '../../lib/janitor/janitor.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import { createUpload } from '../../lib/uploads/uploads.ts';
import { createExportJob, runExportAsWorker, waitForStatus } from '../support/exports.ts';
import { janitorOver } from '../support/janitor.ts';
import { testBucket } from '../support/s3.ts';

/**
 * The janitor against the emulators. Jobs are aged by rewriting their timestamps (as if a day had
 * passed), never by sleeping; orphan uploads by a zero grace period. Each janitor sees only its
 * test's user and folder, so that other tests running at the same time are not swept.
 */

const user = () => `jan-${randomUUID().slice(0, 8)}`;

async function age(username: string, jobId: string, fields: { updatedAt?: string; leaseUntil?: number }) {
  const sets = Object.keys(fields).map((field) => `${field} = :${field}`);
  await documentClient().send(
    new UpdateCommand({
      TableName: config().jobsTable,
      Key: { pk: `USER#${username}`, sk: `JOB#${jobId}` },
      UpdateExpression: `SET ${sets.join(', ')}`,
      ExpressionAttributeValues: Object.fromEntries(
        Object.entries(fields).map(([key, value]) => [`:${key}`, value]),
      ),
    }),
  );
}

const twoDaysAgo = () => new Date(Date.now() - 48 * 3600 * 1000).toISOString();
/** The janitor over `username`'s jobs and one of their folders, orphans swept at once. */
const janitorIn = (
  username: string,
  folder: 'uploads' | 'exports',
  settings: Partial<JanitorSettings> = {},
) =>
  janitorOver(username, {
    settings: { orphanGraceSeconds: 0, prefixes: [`${folder}/${username}/`], ...settings },
  });

describe('the janitor', () => {
  it('expires an idle upload and aborts an orphan multipart upload, then finds nothing more to do', async () => {
    const username = user();
    const prefix = `uploads/${username}/`;
    // (Its parts would count as activity: janitor-activity.test.ts expires one with old parts.)
    const idle = await createUpload(username, { filename: 'idle.bin', size: 6 * MiB, partSize: 5 * MiB });
    const fresh = await createUpload(username, { filename: 'fresh.bin', size: 10 });
    await age(username, idle.job.jobId, { updatedAt: twoDaysAgo() });
    // An upload that no job owns: a crash between CreateMultipartUpload and writing the job.
    const orphanId = await testBucket().createMultipartUpload(`${prefix}orphan.bin`);

    const first = await janitorIn(username, 'uploads');
    expect(first.uploadsExpired).toBe(1);
    expect(first.orphanUploadsAborted).toBe(1);
    expect((await jobStore().get(username, idle.job.jobId))!.status).toBe('EXPIRED');
    expect(await testBucket().listParts(idle.key, idle.uploadId)).toBeUndefined();
    expect(await testBucket().listParts(`${prefix}orphan.bin`, orphanId)).toBeUndefined();
    // The fresh upload is untouched, and still open in S3.
    expect((await jobStore().get(username, fresh.job.jobId))!.status).toBe('UPLOADING');
    expect((await testBucket().listOpenUploads(prefix)).map((upload) => upload.uploadId)).toEqual([
      fresh.uploadId,
    ]);

    const second = await janitorIn(username, 'uploads');
    expect(second).toMatchObject({ uploadsExpired: 0, orphanUploadsAborted: 0 });
    expect((await testBucket().listOpenUploads(prefix)).map((upload) => upload.uploadId)).toEqual([
      fresh.uploadId,
    ]);
  });

  it('does each thing once when two janitors run at the same time', async () => {
    const username = user();
    const idle = await createUpload(username, { filename: 'twice.bin', size: 10 });
    await age(username, idle.job.jobId, { updatedAt: twoDaysAgo() });
    const prefix = `uploads/${username}/`;
    const orphanId = await testBucket().createMultipartUpload(`${prefix}orphan.bin`);
    const [a, b] = await Promise.all([janitorIn(username, 'uploads'), janitorIn(username, 'uploads')]);
    expect(a.uploadsExpired + b.uploadsExpired).toBe(1);
    expect(a.errors + b.errors).toBe(0);
    expect((await jobStore().get(username, idle.job.jobId))!.status).toBe('EXPIRED');
    expect(await testBucket().listParts(`${prefix}orphan.bin`, orphanId)).toBeUndefined();
  });

  it('finishes the cleanup of an export stuck in CANCELLING after its worker died', async () => {
    const username = user();
    await testBucket().putObject(`uploads/${username}/src.bin`, randomBytes(12 * MiB));
    const jobId = await createExportJob(username, 'src.bin', 'raw');
    // The worker does one part and hands off; the hand-off never runs (the worker "died").
    await runExportAsWorker({ username, jobId }, { deadline: 0, continueWith: async () => {} });
    const cancelled = await cancelExport(username, jobId);
    expect(cancelled.job.status).toBe('CANCELLING'); // the lease says a worker is alive
    await age(username, jobId, { leaseUntil: Math.floor(Date.now() / 1000) - 60 });

    const report = await janitorIn(username, 'exports');
    expect(report.exportCancelsFinished).toBeGreaterThanOrEqual(1);
    expect((await jobStore().get(username, jobId))!.status).toBe('CANCELLED');
    expect(await testBucket().listOpenUploads(`exports/${username}/`)).toEqual([]);
    expect(await testBucket().list(`exports/${username}/`)).toEqual([]);
  });

  it('restarts an export whose worker died, which then finishes from its checkpoint', async () => {
    const username = user();
    const bytes = randomBytes(12 * MiB);
    await testBucket().putObject(`uploads/${username}/src.bin`, bytes);
    const jobId = await createExportJob(username, 'src.bin', 'raw');
    let handOff: WorkerEvent | undefined;
    await runExportAsWorker(
      { username, jobId },
      {
        deadline: 0,
        continueWith: async (next) => {
          handOff = next;
        },
      },
    );
    expect(handOff).toBeDefined(); // ...and lost: nobody runs it
    await age(username, jobId, { leaseUntil: Math.floor(Date.now() / 1000) - 60 });

    const report = await janitorIn(username, 'exports');
    expect(report.exportsRestarted).toBeGreaterThanOrEqual(1);
    // The restarted worker runs in serverless-offline, started through its Lambda invoke API.
    const job = await waitForStatus(username, jobId, 'SUCCEEDED');
    expect(job).toMatchObject({ status: 'SUCCEEDED', restarts: 1 });
    expect(Buffer.compare(Buffer.from((await testBucket().getObjectBytes(job.key))!), bytes)).toBe(0);
  });

  it('fails an export whose worker keeps dying, with cleanup', async () => {
    const username = user();
    await testBucket().putObject(`uploads/${username}/src.bin`, randomBytes(12 * MiB));
    const jobId = await createExportJob(username, 'src.bin', 'raw');
    await runExportAsWorker({ username, jobId }, { deadline: 0, continueWith: async () => {} });
    await age(username, jobId, { leaseUntil: Math.floor(Date.now() / 1000) - 60 });

    const report = await janitorIn(username, 'exports', { maxExportRestarts: 0 });
    expect(report.exportsFailed).toBeGreaterThanOrEqual(1);
    const job = (await jobStore().get(username, jobId))!;
    expect(job.status).toBe('FAILED');
    expect(job.error).toMatch(/worker stopped/);
    expect(await testBucket().listOpenUploads(`exports/${username}/`)).toEqual([]);
  });
});
