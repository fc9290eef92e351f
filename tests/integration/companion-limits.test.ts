import { randomBytes } from 'node:crypto';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { MiB } from '../../common/part-plan.ts';
import { documentClient } from '../../lib/aws/clients.ts';
import {
  type CreateMultipartInput,
  completeMultipart,
  createMultipart,
  listParts,
  multipartRequest,
  signPart,
} from '../../lib/companion/companion.ts';
import { config } from '../../lib/config.ts';
import { HttpError } from '../../lib/http/errors.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import { abortUpload, createUpload } from '../../lib/uploads/uploads.ts';
import { janitorOver } from '../support/janitor.ts';
import { userPartition } from '../support/partition.ts';
import { putPart, testBucket } from '../support/s3.ts';
import { createTestUser } from '../support/users.ts';

/**
 * The rules that need a size, for uploads through the Companion routes (which learn their size from
 * S3 at completion): the per-user bytes limit at completion, the janitor for idle ones, and every end
 * giving the user's share back. In-process, with this file's own small limits.
 */

const limits = config().limits;
const defaults = { ...limits };
afterEach(() => Object.assign(limits, defaults));

/** POST /s3/multipart's body in, Uppy's {key, uploadId} out. */
const create = async (username: string, input: CreateMultipartInput) =>
  (await createMultipart(username, multipartRequest(input))).created;

const newUser = async () => (await createTestUser('climit')).username;

/** The user's upload counter (RUNNING#upload) and active slots. */
async function counters(username: string) {
  const { uploads, slots } = await userPartition(username);
  return { ...uploads, slots };
}

/** Sends `sizes` as parts 1..N through the Companion routes; returns Uppy's complete list. */
async function sendParts(username: string, up: { key: string; uploadId: string }, sizes: number[]) {
  const parts: { PartNumber: number; ETag: string }[] = [];
  for (const [index, size] of sizes.entries()) {
    const { url } = await signPart(username, up.uploadId, index + 1, up.key);
    parts.push({ PartNumber: index + 1, ETag: await putPart(url, randomBytes(size)) });
  }
  return parts;
}

const refusal = (promise: Promise<unknown>) =>
  promise.then(
    () => {
      throw new Error('expected a refusal');
    },
    (error: unknown) => {
      if (!(error instanceof HttpError)) throw error;
      return { status: error.status, code: error.code, message: error.message, details: error.details };
    },
  );

describe('Companion uploads under the per-user limits', () => {
  it('a file over the whole bytes limit is refused at completion: 413, parts deleted, job FAILED, share back', async () => {
    limits.uploadBytesInFlight = 8 * MiB;
    const username = await newUser();
    const up = await create(username, { filename: 'big.bin', type: 'application/octet-stream' });
    expect(await counters(username)).toEqual({ running: 1, bytes: 0, slots: 1 });
    const parts = await sendParts(username, up, [5 * MiB, 5 * MiB]);

    expect(await refusal(completeMultipart(username, up.uploadId, up.key, parts))).toMatchObject({
      status: 413,
      code: 'PayloadTooLarge',
      details: { limit: 'uploadBytesInFlight', max: 8 * MiB },
    });
    expect((await jobStore().get(username, up.uploadId))?.status).toBe('FAILED');
    expect(await testBucket().listOpenUploads(`uploads/${username}/`)).toEqual([]);
    expect(await testBucket().head(up.key)).toBeUndefined();
    expect(await counters(username)).toEqual({ running: 0, bytes: 0, slots: 0 });
  });

  it('a file that does not fit beside the others in flight gets 429 and completes once they end', async () => {
    limits.uploadBytesInFlight = 16 * MiB;
    const username = await newUser();
    const other = await createUpload(username, { filename: 'other.bin', size: 8 * MiB });
    const up = await create(username, { filename: 'uppy.bin' });
    const parts = await sendParts(username, up, [5 * MiB, 5 * MiB]);

    expect(await refusal(completeMultipart(username, up.uploadId, up.key, parts))).toMatchObject({
      status: 429,
      code: 'TooManyRequests',
      details: { limit: 'uploadBytesInFlight' },
    });
    expect((await jobStore().get(username, up.uploadId))?.status).toBe('UPLOADING');
    // Still resumable: the parts are there.
    expect((await listParts(username, up.uploadId, up.key)).map((part) => part.Size)).toEqual([
      5 * MiB,
      5 * MiB,
    ]);

    await abortUpload(username, other.job.jobId);
    const done = await completeMultipart(username, up.uploadId, up.key, parts, {
      apiOrigin: 'https://api.example.com',
    });
    expect(done).toMatchObject({
      location: `https://api.example.com/jobs/${up.uploadId}`,
      job: { status: 'COMPLETED', size: 10 * MiB, partSize: 5 * MiB, partCount: 2 },
    });
    expect(await counters(username)).toEqual({ running: 0, bytes: 0, slots: 0 });
  });

  it('a declared size counts from the start: a user at the limit is refused at creation', async () => {
    limits.uploadBytesInFlight = 16 * MiB;
    const username = await newUser();
    await create(username, { filename: 'a.bin', metadata: { size: '10485760' } });
    expect(await counters(username)).toMatchObject({ running: 1, bytes: 10 * MiB });
    expect(
      await refusal(create(username, { filename: 'b.bin', metadata: { size: 10 * MiB } })),
    ).toMatchObject({ status: 429, details: { limit: 'uploadBytesInFlight' } });
    expect(await refusal(create(username, { filename: 'c.bin', metadata: { size: 'lots' } }))).toMatchObject({
      status: 400,
    });
  });

  it('the janitor expires an idle Companion upload and gives its share back', async () => {
    const username = await newUser();
    const up = await create(username, { filename: 'idle.bin' });
    await documentClient().send(
      new UpdateCommand({
        TableName: config().jobsTable,
        Key: { pk: `USER#${username}`, sk: `JOB#${up.uploadId}` },
        UpdateExpression: 'SET updatedAt = :old',
        ExpressionAttributeValues: { ':old': new Date(Date.now() - 48 * 3600_000).toISOString() },
      }),
    );
    const report = await janitorOver(username, { settings: { prefixes: [`uploads/${username}/`] } });
    expect(report.uploadsExpired).toBeGreaterThanOrEqual(1);
    expect((await jobStore().get(username, up.uploadId))?.status).toBe('EXPIRED');
    expect(await testBucket().listOpenUploads(`uploads/${username}/`)).toEqual([]);
    expect(await counters(username)).toEqual({ running: 0, bytes: 0, slots: 0 });
    expect(await refusal(signPart(username, up.uploadId, 1, up.key))).toMatchObject({
      status: 409,
      code: 'JobNotActive',
    });
  });
});
