import { randomBytes, randomUUID } from 'node:crypto';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { jest } from '@jest/globals';
import { MiB } from '../../common/part-plan.ts';
import { documentClient } from '../../lib/aws/clients.ts';
import { config } from '../../lib/config.ts';
import { type JanitorSettings, janitorSettings, runJanitor } from '../../lib/janitor/janitor.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import { createUpload, recordProgress } from '../../lib/uploads/uploads.ts';
import { putPart, testBucket } from '../support/s3.ts';

/**
 * The janitor expires uploads by inactivity, and inactivity is judged on what it read: progress
 * recorded after its scan, or parts S3 received from a client that reports no progress (Uppy),
 * keep an upload alive. The scan is narrowed to this test's job so other tests' jobs are not swept.
 */

const user = () => `act-${randomUUID().slice(0, 8)}`;
const twoDaysAgo = () => new Date(Date.now() - 48 * 3600 * 1000).toISOString();
const settingsFor = (username: string): JanitorSettings => ({
  ...janitorSettings(),
  prefixes: [`uploads/${username}/`],
});

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

/** The janitor's scan sees only `jobId`, as it was when read. */
async function scanSeesOnly(username: string, jobId: string) {
  const seen = (await jobStore().get(username, jobId))!;
  jest.spyOn(jobStore(), 'allActive').mockResolvedValueOnce([seen]);
  return seen;
}

afterEach(() => jest.restoreAllMocks());

describe('the janitor and upload activity', () => {
  it('does not expire an upload whose progress was recorded after the scan read it', async () => {
    const username = user();
    const upload = await createUpload(username, { filename: 'busy.bin', size: 6 * MiB, partSize: 5 * MiB });
    await setUpdatedAt(username, upload.job.jobId, twoDaysAgo());
    await scanSeesOnly(username, upload.job.jobId);
    // Progress lands between the scan and the janitor's write.
    const etag = await putPart(upload.parts[0]!.url, randomBytes(5 * MiB));
    await recordProgress(username, upload.job.jobId, [{ partNumber: 1, etag, size: 5 * MiB }]);
    // …but the part is older than the janitor thinks "now" is, so only the updatedAt check saves it.
    const report = await runJanitor(settingsFor(username), Date.now() + 25 * 3600 * 1000);

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
    await scanSeesOnly(username, upload.job.jobId);

    const report = await runJanitor(settingsFor(username));
    expect(report.uploadsExpired).toBe(0);
    expect((await jobStore().get(username, upload.job.jobId))!.status).toBe('UPLOADING');
  });

  it('expires the same upload once its last part is older than the idle limit', async () => {
    const username = user();
    const upload = await createUpload(username, { filename: 'gone.bin', size: 6 * MiB, partSize: 5 * MiB });
    await putPart(upload.parts[0]!.url, randomBytes(5 * MiB));
    await setUpdatedAt(username, upload.job.jobId, twoDaysAgo());
    await scanSeesOnly(username, upload.job.jobId);

    const report = await runJanitor(settingsFor(username), Date.now() + 25 * 3600 * 1000);
    expect(report.uploadsExpired).toBe(1);
    expect((await jobStore().get(username, upload.job.jobId))!.status).toBe('EXPIRED');
    expect(await testBucket().listParts(upload.key, upload.uploadId)).toBeUndefined();
  });
});
