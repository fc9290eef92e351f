import { randomBytes, randomUUID } from 'node:crypto';
import { DeleteCommand } from '@aws-sdk/lib-dynamodb';
import { MiB } from '../../common/part-plan.ts';
import { documentClient } from '../../lib/aws/clients.ts';
import { config } from '../../lib/config.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import { getJob } from '../../lib/jobs/queries.ts';
import { createExportJob, runExportAsWorker } from '../support/exports.ts';
import { janitorOver } from '../support/janitor.ts';
import { testBucket } from '../support/s3.ts';

/**
 * An export's output lives exactly as long as its job: kept while the job is readable, deleted by
 * the janitor once the job's retention has run out (S3's lifecycle rule on exports/ is the backstop
 * in AWS; the emulators run no lifecycle rules). Time passes by handing the janitor a later `now`.
 */

const user = () => `ret-${randomUUID().slice(0, 8)}`;
const DAY = 24 * 3600 * 1000;
/** The janitor at `now`, over the user's jobs and exports. */
const janitorAt = (username: string, now: number) =>
  janitorOver(username, { settings: { prefixes: [`exports/${username}/`] }, now });

async function finishedExport(username: string) {
  await testBucket().putObject(`uploads/${username}/src.bin`, randomBytes(6 * MiB));
  const jobId = await createExportJob(username, 'src.bin', 'raw');
  const result = await runExportAsWorker(
    { username, jobId },
    { deadline: Date.now() + 60_000, continueWith: async () => {} },
  );
  expect(result).toBe('succeeded');
  const job = (await jobStore().get(username, jobId))!;
  expect(await testBucket().head(job.key)).toBeDefined();
  return job;
}

describe('export outputs and their jobs', () => {
  const retentionMs = config().jobRetentionSeconds * 1000;

  it('keeps the output while its job lives and deletes it once the job has expired', async () => {
    const username = user();
    const job = await finishedExport(username);

    for (const now of [Date.now(), Date.now() + retentionMs - DAY]) {
      const report = await janitorAt(username, now);
      expect(report.exportOutputsDeleted).toBe(0);
      expect(await testBucket().head(job.key)).toBeDefined();
    }

    const later = await janitorAt(username, Date.now() + retentionMs + DAY);
    expect(later.exportOutputsDeleted).toBe(1);
    expect(await testBucket().list(`exports/${username}/`)).toEqual([]);
    expect(await testBucket().listOpenUploads(`exports/${username}/`)).toEqual([]);
  });

  it('deletes the output of a job that DynamoDB TTL already removed', async () => {
    const username = user();
    const job = await finishedExport(username);
    await documentClient().send(
      new DeleteCommand({
        TableName: config().jobsTable,
        Key: { pk: `USER#${username}`, sk: `JOB#${job.jobId}` },
      }),
    );
    await expect(getJob(username, job.jobId)).rejects.toMatchObject({ status: 404 });
    const report = await janitorAt(username, Date.now() + retentionMs + DAY);
    expect(report.exportOutputsDeleted).toBe(1);
    expect(await testBucket().list(`exports/${username}/`)).toEqual([]);
  });
});
