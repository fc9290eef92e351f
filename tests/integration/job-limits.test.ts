import { randomBytes } from 'node:crypto';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { jest } from '@jest/globals';
import { MiB } from '../../common/part-plan.ts';
import { handler as createExportHandler } from '../../functions/export-create.ts';
import { handler as abortHandler } from '../../functions/upload-abort.ts';
import { handler as completeHandler } from '../../functions/upload-complete.ts';
import { handler as createUploadHandler } from '../../functions/upload-create.ts';
import { handler as killHandler } from '../../functions/upload-kill.ts';
import { documentClient } from '../../lib/aws/clients.ts';
import { config } from '../../lib/config.ts';
import { killExports } from '../../lib/exports/exports.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import { createFormUpload } from '../../lib/uploads/uploads.ts';
import { slowToGzip } from '../support/bytes.ts';
import { invoke } from '../support/events.ts';
import { janitorOver } from '../support/janitor.ts';
import { userPartition } from '../support/partition.ts';
import { putPart, testBucket } from '../support/s3.ts';
import { createTestUser } from '../support/users.ts';

/**
 * Per-user limits on new jobs: uploads in flight, their declared bytes, jobs per minute, running
 * exports. Each refusal is 429 with Retry-After and names the limit, and leaves nothing behind (no
 * multipart upload, no job, slot or count); every way a job ends gives its share back.
 *
 * The handlers run in this process with this file's own small limits (config() is parsed once per
 * test file), so other test files sharing the stack keep the defaults.
 */

const limits = config().limits;
const defaults = { ...limits };
afterEach(() => Object.assign(limits, defaults));

async function newUser() {
  const user = await createTestUser('limits');
  return { username: user.username, token: await user.token() };
}
type User = Awaited<ReturnType<typeof newUser>>;

const auth = (user: User) => ({ authorization: `Bearer ${user.token}` });

const startUpload = (user: User, filename: string, size: number) =>
  invoke(createUploadHandler, {
    method: 'POST',
    path: '/upload',
    headers: auth(user),
    body: { filename, size },
  });

const abort = (user: User, jobId: string) =>
  invoke(abortHandler, {
    method: 'DELETE',
    path: `/upload/${jobId}`,
    pathParameters: { jobId },
    headers: auth(user),
  });

const partition = userPartition;

const openUploads = async (username: string) =>
  (await testBucket().listOpenUploads(`uploads/${username}/`)).map((upload) => upload.uploadId).sort();

function expectRefusal(response: Awaited<ReturnType<typeof startUpload>>, limit: string) {
  expect({
    status: response.status,
    code: response.body.error.code,
    details: response.body.error.details,
  }).toEqual({ status: 429, code: 'TooManyRequests', details: { limit, max: expect.any(Number) } });
  expect(response.body.error.message).toContain(`limit ${limit}`);
  expect(Number(response.headers['retry-after'])).toBeGreaterThanOrEqual(1);
}

describe('per-user limits on new jobs', () => {
  it('uploads in flight: the one past the limit is 429, leaves nothing, and an abort makes room', async () => {
    limits.uploadsInFlight = 2;
    const user = await newUser();
    const accepted = [await startUpload(user, 'a.bin', 10), await startUpload(user, 'b.bin', 10)];
    expect(accepted.map((response) => response.status)).toEqual([201, 201]);
    const before = { table: await partition(user.username), s3: await openUploads(user.username) };
    expect(before.table).toEqual({ jobs: 2, slots: 2, uploads: { running: 2, bytes: 20 }, created: 2 });

    const refused = await startUpload(user, 'c.bin', 10);
    expectRefusal(refused, 'uploadsInFlight');
    expect(refused.body.error.details.max).toBe(2);
    // Nothing left by the refusal: the same jobs, slots and counts, no new multipart upload.
    expect(await partition(user.username)).toEqual(before.table);
    expect(await openUploads(user.username)).toEqual(before.s3);

    expect((await abort(user, accepted[0]!.body.job.jobId)).status).toBe(200);
    expect((await partition(user.username)).uploads).toEqual({ running: 1, bytes: 10 });
    expect((await startUpload(user, 'c.bin', 10)).status).toBe(201);
  });

  it('refused by the transaction after the preliminary read let it through: its multipart upload is aborted', async () => {
    limits.uploadsInFlight = 1;
    const user = await newUser();
    const first = await startUpload(user, 'first.bin', 10);
    expect(first.status).toBe(201);
    // As if another request took the last place between the read and the transaction.
    const check = jest.spyOn(jobStore(), 'checkQuota').mockResolvedValue(undefined);
    try {
      const refused = await startUpload(user, 'second.bin', 10);
      expectRefusal(refused, 'uploadsInFlight');
      expect(check).toHaveBeenCalled();
    } finally {
      check.mockRestore();
    }
    expect(await openUploads(user.username)).toEqual([first.body.uploadId]);
    expect(await partition(user.username)).toEqual({
      jobs: 1,
      slots: 1,
      uploads: { running: 1, bytes: 10 },
      created: 1,
    });
  });

  it('two at once past the limit: one is created, the other refused, one multipart upload left', async () => {
    limits.uploadsInFlight = 1;
    const user = await newUser();
    // Two at once: both pass the preliminary read, one wins the transaction.
    const answers = await Promise.all([startUpload(user, 'x.bin', 10), startUpload(user, 'y.bin', 10)]);
    expect(answers.map((answer) => answer.status).sort()).toEqual([201, 429]);
    expectRefusal(answers.find((answer) => answer.status === 429)!, 'uploadsInFlight');
    const winner = answers.find((answer) => answer.status === 201)!.body;
    expect(await openUploads(user.username)).toEqual([winner.uploadId]);
    expect(await partition(user.username)).toEqual({
      jobs: 1,
      slots: 1,
      uploads: { running: 1, bytes: 10 },
      created: 1,
    });
  });

  it('bytes in flight: counts declared sizes, refuses what would pass the limit, and a completion gives them back', async () => {
    limits.uploadBytesInFlight = 12 * MiB;
    const user = await newUser();
    const first = await startUpload(user, 'small.bin', 2 * MiB);
    expect(first.status).toBe(201);
    expect((await startUpload(user, 'big.bin', 6 * MiB)).status).toBe(201);

    const refused = await startUpload(user, 'more.bin', 4 * MiB + 1);
    expectRefusal(refused, 'uploadBytesInFlight');
    expect(refused.body.error.details.max).toBe(12 * MiB);
    expect(await openUploads(user.username)).toHaveLength(2);
    // Exactly up to the limit fits.
    expect((await startUpload(user, 'exact.bin', 4 * MiB)).status).toBe(201);
    expect((await partition(user.username)).uploads).toEqual({ running: 3, bytes: 12 * MiB });

    // Completing the 2 MiB upload gives its 2 MiB back.
    const [part] = first.body.parts;
    await putPart(part.url, randomBytes(2 * MiB));
    const jobId = first.body.job.jobId;
    const completed = await invoke(completeHandler, {
      method: 'POST',
      path: `/upload/${jobId}/complete`,
      pathParameters: { jobId },
      headers: auth(user),
    });
    expect(completed.body.job.status).toBe('COMPLETED');
    expect((await partition(user.username)).uploads).toEqual({ running: 2, bytes: 10 * MiB });
    expect((await startUpload(user, 'more.bin', 2 * MiB)).status).toBe(201);
  });

  it('a form upload counts as an upload in flight too, and gives its share back once stored', async () => {
    limits.uploadsInFlight = 1;
    const user = await newUser();
    const open = await startUpload(user, 'open.bin', 10);
    const form = () =>
      createFormUpload(user.username, { filename: 'form.txt', content: Buffer.from('hello') }, false);
    const refused = await form().catch((error: unknown) => error);
    expect(refused).toMatchObject({ status: 429, details: { limit: 'uploadsInFlight', max: 1 } });
    expect((await partition(user.username)).jobs).toBe(1);

    expect((await abort(user, open.body.job.jobId)).status).toBe(200);
    expect((await form()).job.status).toBe('COMPLETED');
    expect((await partition(user.username)).uploads).toEqual({ running: 0, bytes: 0 });
  });

  it('an upload larger than the whole bytes limit is a 400, not a 429 (waiting would not help)', async () => {
    limits.uploadBytesInFlight = 8 * MiB;
    const user = await newUser();
    const response = await startUpload(user, 'huge.bin', 8 * MiB + 1);
    expect({ status: response.status, code: response.body.error.code }).toEqual({
      status: 400,
      code: 'ValidationError',
    });
    expect(response.headers['retry-after']).toBeUndefined();
    expect(await openUploads(user.username)).toEqual([]);
    expect((await partition(user.username)).jobs).toBe(0);
  });

  it('jobs per minute: uploads and exports together; the refusal waits for the next minute', async () => {
    limits.jobsPerMinute = 3;
    const user = await newUser();
    await testBucket().putObject(`uploads/${user.username}/src.bin`, randomBytes(1024));
    // Early in a minute, so that the three land in the same one.
    if (Date.now() % 60_000 > 50_000)
      await new Promise((resolve) => setTimeout(resolve, 60_000 - (Date.now() % 60_000)));
    expect((await startUpload(user, 'one.bin', 10)).status).toBe(201);
    const exported = await invoke(createExportHandler, {
      method: 'POST',
      path: '/export',
      headers: auth(user),
      body: { filename: 'src.bin', format: 'raw' },
    });
    expect(exported.status).toBe(202);
    expect((await startUpload(user, 'two.bin', 10)).status).toBe(201);

    const refused = await startUpload(user, 'three.bin', 10);
    expectRefusal(refused, 'jobsPerMinute');
    const secondsLeft = 60 - Math.floor((Date.now() % 60_000) / 1000);
    expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(secondsLeft + 1);
    const refusedExport = await invoke(createExportHandler, {
      method: 'POST',
      path: '/export',
      headers: auth(user),
      body: { filename: 'src.bin', format: 'raw' },
    });
    expectRefusal(refusedExport, 'jobsPerMinute');
    expect(await openUploads(user.username)).toHaveLength(2);
    expect(await partition(user.username)).toMatchObject({ jobs: 3, created: 3 });
    await killExports(user.username).catch(() => {});
  });

  it('running exports: the same 429 shape, naming exportsRunning', async () => {
    const user = await newUser();
    await testBucket().putObject(`uploads/${user.username}/src.bin`, slowToGzip(64 * MiB));
    const start = () =>
      invoke(createExportHandler, {
        method: 'POST',
        path: '/export',
        headers: auth(user),
        body: { filename: 'src.bin', format: 'gzip' },
      });
    const max = config().exports.maxRunning;
    for (let i = 0; i < max; i++) expect((await start()).status).toBe(202);
    const refused = await start();
    expectRefusal(refused, 'exportsRunning');
    expect(refused.body.error.details.max).toBe(max);
    await killExports(user.username);
  });

  it('a kill and the janitor give the shares back: the counters end at zero', async () => {
    limits.uploadsInFlight = 3;
    const user = await newUser();
    for (const name of ['k1.bin', 'k2.bin', 'k3.bin'])
      expect((await startUpload(user, name, 100)).status).toBe(201);
    expectRefusal(await startUpload(user, 'k4.bin', 100), 'uploadsInFlight');

    const killed = await invoke(killHandler, { method: 'DELETE', path: '/upload/kill', headers: auth(user) });
    expect(killed.body.aborted).toHaveLength(3);
    expect((await partition(user.username)).uploads).toEqual({ running: 0, bytes: 0 });

    // The janitor expires an idle upload: its share comes back too.
    const idle = await startUpload(user, 'idle.bin', 100);
    expect(idle.status).toBe(201);
    expect((await partition(user.username)).uploads).toEqual({ running: 1, bytes: 100 });
    await documentClient().send(
      new UpdateCommand({
        TableName: config().jobsTable,
        Key: { pk: `USER#${user.username}`, sk: `JOB#${idle.body.job.jobId}` },
        UpdateExpression: 'SET updatedAt = :old',
        ExpressionAttributeValues: { ':old': new Date(Date.now() - 48 * 3600_000).toISOString() },
      }),
    );
    const report = await janitorOver(user.username, {
      settings: { prefixes: [`uploads/${user.username}/`] },
    });
    expect(report.uploadsExpired).toBeGreaterThanOrEqual(1);
    expect(await partition(user.username)).toMatchObject({ slots: 0, uploads: { running: 0, bytes: 0 } });
    expect(await openUploads(user.username)).toEqual([]);
    for (const name of ['k1.bin', 'k2.bin', 'k3.bin'])
      expect((await startUpload(user, name, 100)).status).toBe(201);
  });
});
