import { randomBytes, randomUUID } from 'node:crypto';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { MiB } from '../../common/part-plan.ts';
import { documentClient } from '../../lib/aws/clients.ts';
import { config } from '../../lib/config.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import type { JobRecord } from '../../lib/jobs/jobs-table.ts';
import { createUpload, recordProgress } from '../../lib/uploads/uploads.ts';
import { janitorOver } from '../support/janitor.ts';
import { putPart, testBucket } from '../support/s3.ts';

/**
 * The janitor expires uploads by inactivity, and inactivity is judged on what it read: progress
 * recorded after its scan, or parts S3 received from a client that reports no progress (Uppy),
 * keep an upload alive. The scan is narrowed to this test's job so other tests' jobs are not swept.
 */

const user = () => `act-${randomUUID().slice(0, 8)}`;
const twoDaysAgo = () => new Date(Date.now() - 48 * 3600 * 1000).toISOString();

async function setUpdatedAt(username: string, jobId: string, updatedAt: string) {
  await documentClient().send(
    new UpdateCommand({
      TableName: config().jobsTable,
      Key: { pk: `USER#${username}`, sk: `JOB#${jobId}` },
      UpdateExpression: 'SET updatedAt = :updatedAt',
      ExpressionAttributeValues: { ':updatedAt': updatedAt },
    }),
  );
}

/** The job as the janitor's scan will see it: as it is now, whatever happens before the janitor runs. */
const scanned = async (username: string, jobId: string) => (await jobStore().get(username, jobId))!;

/** The janitor over the user's uploads, at `now`, its scan answering `seen`. */
const janitorSeeing = (username: string, seen: JobRecord, now = Date.now()) =>
  janitorOver(username, { settings: { prefixes: [`uploads/${username}/`] }, now, scan: async () => [seen] });

describe('the janitor and upload activity', () => {
  it('does not expire an upload whose progress was recorded after the scan read it', async () => {
    const username = user();
    const upload = await createUpload(username, { filename: 'busy.bin', size: 6 * MiB, partSize: 5 * MiB });
    await setUpdatedAt(username, upload.job.jobId, twoDaysAgo());
    const seen = await scanned(username, upload.job.jobId);
    // Progress lands between the scan and the janitor's write.
    const etag = await putPart(upload.parts[0]!.url, randomBytes(5 * MiB));
    await recordProgress(username, upload.job.jobId, [{ partNumber: 1, etag, size: 5 * MiB }]);
    // …but the part is older than the janitor thinks "now" is, so only the updatedAt check saves it.
    const report = await janitorSeeing(username, seen, Date.now() + 25 * 3600 * 1000);

    expect(report.uploadsExpired).toBe(0);
    expect((await jobStore().get(username, upload.job.jobId))!.status).toBe('UPLOADING');
    expect(
      (await testBucket().listParts(upload.key, upload.uploadId))!.map((part) => part.partNumber),
    ).toEqual([1]);
  });

  it('does not expire an upload whose parts reach S3 without progress reports', async () => {
    const username = user();
    const upload = await createUpload(username, { filename: 'quiet.bin', size: 6 * MiB, partSize: 5 * MiB });
    await putPart(upload.parts[0]!.url, randomBytes(5 * MiB));
    await setUpdatedAt(username, upload.job.jobId, twoDaysAgo());
    const seen = await scanned(username, upload.job.jobId);

    const report = await janitorSeeing(username, seen);
    expect(report.uploadsExpired).toBe(0);
    expect((await jobStore().get(username, upload.job.jobId))!.status).toBe('UPLOADING');
  });

  it('expires the same upload once its last part is older than the idle limit', async () => {
    const username = user();
    const upload = await createUpload(username, { filename: 'gone.bin', size: 6 * MiB, partSize: 5 * MiB });
    await putPart(upload.parts[0]!.url, randomBytes(5 * MiB));
    await setUpdatedAt(username, upload.job.jobId, twoDaysAgo());
    const seen = await scanned(username, upload.job.jobId);

    const report = await janitorSeeing(username, seen, Date.now() + 25 * 3600 * 1000);
    expect(report.uploadsExpired).toBe(1);
    expect((await jobStore().get(username, upload.job.jobId))!.status).toBe('EXPIRED');
    expect(await testBucket().listParts(upload.key, upload.uploadId)).toBeUndefined();
  });
});
