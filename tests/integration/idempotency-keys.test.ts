import { randomBytes, randomUUID } from 'node:crypto';
import { jest } from '@jest/globals';
import { handler as startExportHandler } from '../../functions/export-create.ts';
import { handler as abortMultipartHandler } from '../../functions/s3-multipart-abort.ts';
import { handler as createMultipartHandler } from '../../functions/s3-multipart-create.ts';
import { handler as createUploadHandler } from '../../functions/upload-create.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import { expectSameBytes } from '../support/bytes.ts';
import { invoke } from '../support/events.ts';
import { waitForStatus } from '../support/exports.ts';
import { testBucket } from '../support/s3.ts';
import { createTestUser } from '../support/users.ts';

/**
 * POST /upload (JSON) and POST /export with an Idempotency-Key (common/idempotency.ts), in-process
 * against the real emulators (the export worker runs in the test stack's serverless-offline). The
 * key is written in the job's own creation transaction, so a repeat finds the job even when the first
 * request's answer was lost after the write, the case the chaos soak found: a 503 to the client,
 * and a job it never learned of.
 */

afterEach(() => jest.restoreAllMocks());

async function signedIn() {
  const user = await createTestUser('idem');
  return { username: user.username, token: await user.token() };
}

/** A POST of `handler`, with the caller's token and (unless undefined) the Idempotency-Key. */
const post =
  (handler: typeof createUploadHandler, path: string) =>
  (token: string, key: string | undefined, body: Record<string, unknown>) =>
    invoke(handler, {
      method: 'POST',
      path,
      routeKey: `POST ${path}`,
      headers: { authorization: `Bearer ${token}`, ...(key === undefined ? {} : { 'Idempotency-Key': key }) },
      body,
    });
const createUpload = post(createUploadHandler, '/upload');
const createMultipart = post(createMultipartHandler, '/s3/multipart');
const startExport = post(startExportHandler, '/export');

/** jobStore().create writes (the job, its slot, its key) and then its answer is lost. */
function createAnswerLost() {
  const store = jobStore();
  const create = store.create.bind(store);
  jest.spyOn(store, 'create').mockImplementationOnce(async (...args) => {
    await create(...args);
    throw Object.assign(new Error('read ECONNRESET'), {
      name: 'TimeoutError',
      code: 'ECONNRESET',
      $metadata: { attempts: 3 },
    });
  });
}

const openUploadsOf = (username: string) => testBucket().listOpenUploads(`uploads/${username}/`);

describe('POST /upload with an Idempotency-Key', () => {
  it('answers a repeat with the job the first request made, and opens nothing more', async () => {
    const { username, token } = await signedIn();
    const key = randomUUID();
    const body = { filename: 'a.bin', size: 12 * 1024 * 1024 };
    const first = await createUpload(token, key, body);
    expect(first.status).toBe(201);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    const again = await createUpload(token, key, body);
    expect(again.status).toBe(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body).toMatchObject({
      job: { jobId: first.body.job.jobId, status: 'UPLOADING' },
      uploadId: first.body.uploadId,
      key: first.body.key,
      partSize: first.body.partSize,
      partCount: first.body.partCount,
    });
    expect((await jobStore().list(username, { type: 'upload', limit: 10 })).jobs).toHaveLength(1);
    expect((await openUploadsOf(username)).map((open) => open.uploadId)).toEqual([first.body.uploadId]);
  });

  it('after a lost answer (a 503), the repeat gets the job that was written, and nothing more is opened', async () => {
    const { username, token } = await signedIn();
    const key = randomUUID();
    const bytes = randomBytes(1024);
    const body = { filename: 'lost.bin', size: bytes.length, checksumAlgorithm: 'CRC32' };
    createAnswerLost();
    const lost = await createUpload(token, key, body);
    expect(lost.status).toBe(503);
    // Without the key, this repeat would meet 409 UploadInProgress (the name is the lost job's).
    const again = await createUpload(token, key, body);
    expect(again.status).toBe(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    const jobs = (await jobStore().list(username, { type: 'upload', limit: 10 })).jobs;
    expect(jobs.map((job) => job.jobId)).toEqual([again.body.job.jobId]);
    expect((await openUploadsOf(username)).map((open) => open.uploadId)).toEqual([again.body.uploadId]);
  });

  it('refuses the key with another request (422), and a malformed key (400)', async () => {
    const { token } = await signedIn();
    const key = randomUUID();
    const first = await createUpload(token, key, { filename: 'b.bin', size: 100 });
    const other = await createUpload(token, key, { filename: 'b.bin', size: 101 });
    expect(other.status).toBe(422);
    expect(other.body.error).toMatchObject({
      code: 'IdempotencyKeyReused',
      details: { jobId: first.body.job.jobId },
    });
    for (const bad of ['has space', 'x'.repeat(256), 'ünïcode', '']) {
      const response = await createUpload(token, bad, { filename: 'c.bin', size: 100 });
      expect([bad, response.status, response.body.error.code]).toEqual([bad, 400, 'ValidationError']);
    }
  });

  it('takes the quoted form of the key as the same key', async () => {
    const { token } = await signedIn();
    const key = randomUUID();
    const body = { filename: 'q.bin', size: 100 };
    const first = await createUpload(token, key, body);
    const quoted = await createUpload(token, `"${key}"`, body);
    expect(quoted.body.job.jobId).toBe(first.body.job.jobId);
  });

  it('keeps keys per user: the same key of two users makes two jobs', async () => {
    const [a, b] = await Promise.all([signedIn(), signedIn()]);
    const key = randomUUID();
    const body = { filename: 'shared-key.bin', size: 100 };
    const [ofA, ofB] = await Promise.all([
      createUpload(a.token, key, body),
      createUpload(b.token, key, body),
    ]);
    expect([ofA.status, ofB.status]).toEqual([201, 201]);
    expect(ofA.body.job.jobId).not.toBe(ofB.body.job.jobId);
  });

  it('refuses a key with the seed form, whose file is stored by the request itself', async () => {
    const { token } = await signedIn();
    const boundary = 'x-boundary';
    const response = await invoke(createUploadHandler, {
      method: 'POST',
      path: '/upload',
      routeKey: 'POST /upload',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': `multipart/form-data; boundary=${boundary}`,
        'Idempotency-Key': randomUUID(),
      },
      body: `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.txt"\r\n\r\nhello\r\n--${boundary}--\r\n`,
    });
    expect(response.status).toBe(400);
  });
});

describe('POST /export with an Idempotency-Key', () => {
  async function withSource() {
    const user = await signedIn();
    const bytes = randomBytes(64 * 1024);
    await testBucket().putObject(`uploads/${user.username}/src.bin`, bytes);
    return { ...user, bytes };
  }

  it('answers concurrent repeats with one job', async () => {
    const { username, token } = await withSource();
    const key = randomUUID();
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => startExport(token, key, { filename: 'src.bin', format: 'gzip' })),
    );
    expect(answers.map((answer) => answer.status)).toEqual([202, 202, 202, 202, 202]);
    expect(new Set(answers.map((answer) => answer.body.job.jobId)).size).toBe(1);
    expect(answers.filter((answer) => answer.headers['idempotent-replayed'] === 'true')).toHaveLength(4);
    const jobs = (await jobStore().list(username, { type: 'export', limit: 10 })).jobs;
    expect(jobs).toHaveLength(1);
    await waitForStatus(username, jobs[0]!.jobId, 'SUCCEEDED');
  });

  it('after a lost answer, the repeat gets the job and starts it, and the export succeeds', async () => {
    const { username, token, bytes } = await withSource();
    const key = randomUUID();
    createAnswerLost();
    const lost = await startExport(token, key, { filename: 'src.bin' });
    expect(lost.status).toBe(503);
    // The first request died before starting the worker: the job waits QUEUED.
    const [queued] = (await jobStore().list(username, { type: 'export', limit: 10 })).jobs;
    expect(queued!.status).toBe('QUEUED');
    // The default format ("raw") left out or named: the same request.
    const again = await startExport(token, key, { filename: 'src.bin', format: 'raw' });
    expect(again.status).toBe(202);
    expect(again.body.job.jobId).toBe(queued!.jobId);
    const done = await waitForStatus(username, queued!.jobId, 'SUCCEEDED');
    expectSameBytes(Buffer.from((await testBucket().getObjectBytes(done.key))!), bytes);
    expect((await jobStore().list(username, { type: 'export', limit: 10 })).jobs).toHaveLength(1);
  });

  it('a repeat after the export has finished gets it as GET /jobs/{id} does, with a download URL that works', async () => {
    const { username, token, bytes } = await withSource();
    const key = randomUUID();
    const first = await startExport(token, key, { filename: 'src.bin' });
    expect(first.status).toBe(202);
    await waitForStatus(username, first.body.job.jobId, 'SUCCEEDED');
    // As POST /export's function (invoke): the IAM check holds the URL's signer to that role.
    const again = await startExport(token, key, { filename: 'src.bin' });
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body.job).toMatchObject({ jobId: first.body.job.jobId, status: 'SUCCEEDED' });
    const download = await fetch(again.body.job.downloadUrl);
    expect(download.status).toBe(200);
    expectSameBytes(Buffer.from(await download.arrayBuffer()), bytes);
  });

  it('refuses the key sent before with POST /upload', async () => {
    const { token } = await withSource();
    const key = randomUUID();
    expect((await createUpload(token, key, { filename: 'd.bin', size: 100 })).status).toBe(201);
    const response = await startExport(token, key, { filename: 'src.bin' });
    expect(response.status).toBe(422);
    expect(response.body.error.code).toBe('IdempotencyKeyReused');
  });
});

describe('POST /s3/multipart (Companion, Uppy) with an idempotency key', () => {
  /** Uppy's create: its file meta, with the key the README's snippet sets on each file. */
  const uppyCreate = (
    token: string,
    key: unknown,
    filename = 'uppy.bin',
    meta: Record<string, unknown> = {},
  ) =>
    createMultipart(token, undefined, {
      filename,
      type: 'application/octet-stream',
      metadata: { name: filename, type: 'application/octet-stream', ...meta, idempotencyKey: key },
    });

  async function abortThroughUppy(token: string, created: { key: string; uploadId: string }) {
    const response = await invoke(abortMultipartHandler, {
      method: 'DELETE',
      path: `/s3/multipart/${created.uploadId}`,
      routeKey: 'DELETE /s3/multipart/{uploadId}',
      pathParameters: { uploadId: created.uploadId },
      query: { key: created.key },
      headers: { authorization: `Bearer ${token}` },
    });
    expect(response.status).toBe(200);
  }

  it('without a key, a retry after a lost answer meets 409 UploadInProgress (the case the key is for)', async () => {
    const { token } = await signedIn();
    createAnswerLost();
    expect((await uppyCreate(token, undefined)).status).toBe(503);
    const retry = await uppyCreate(token, undefined);
    expect(retry.status).toBe(409);
    expect(retry.body.error.code).toBe('UploadInProgress');
  });

  it('with metadata.idempotencyKey, the retry after a lost answer gets the upload the lost create opened', async () => {
    const { username, token } = await signedIn();
    const key = randomUUID();
    createAnswerLost();
    expect((await uppyCreate(token, key)).status).toBe(503);
    const retry = await uppyCreate(token, key);
    expect(retry.status).toBe(200);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    const jobs = (await jobStore().list(username, { type: 'upload', limit: 10 })).jobs;
    expect(jobs.map((job) => [job.jobId, job.key, job.status])).toEqual([
      [retry.body.uploadId, retry.body.key, 'UPLOADING'],
    ]);
    expect(await openUploadsOf(username)).toHaveLength(1);
    // Uppy's other metadata may differ between tries; what the create asks for may not.
    const renamed = await uppyCreate(token, key, 'other.bin');
    expect(renamed.status).toBe(422);
    expect(renamed.body.error).toMatchObject({
      code: 'IdempotencyKeyReused',
      details: { jobId: retry.body.uploadId },
    });
  });

  it('takes the header as the same key, and refuses a malformed key or two different ones (400)', async () => {
    const { username, token } = await signedIn();
    const key = randomUUID();
    const first = await uppyCreate(token, key, 'h.bin');
    const byHeader = await createMultipart(token, key, {
      filename: 'h.bin',
      type: 'application/octet-stream',
    });
    expect(byHeader.status).toBe(200);
    expect(byHeader.body.uploadId).toBe(first.body.uploadId);
    for (const bad of ['has space', 'x'.repeat(256), '', 42, true, { key }]) {
      const response = await uppyCreate(token, bad, 'bad.bin');
      expect([bad, response.status, response.body.error?.code]).toEqual([bad, 400, 'ValidationError']);
      expect(response.body.error.details.issues).toEqual([
        { path: 'body.metadata.idempotencyKey', message: 'malformed' },
      ]);
    }
    const both = await createMultipart(token, randomUUID(), {
      filename: 'both.bin',
      metadata: { idempotencyKey: randomUUID() },
    });
    expect(both.status).toBe(400);
    expect(both.body.error.message).toContain('two keys');
    // A refused request opened nothing (Uppy's uploadId is the job's id, not S3's).
    const job = await jobStore().get(username, first.body.uploadId);
    expect((await openUploadsOf(username)).map((open) => open.uploadId)).toEqual([job!.uploadId]);
  });

  it('once the upload has ended, a retry with the key opens a new one (the key names the upload in flight)', async () => {
    const { username, token } = await signedIn();
    const key = randomUUID();
    const first = (await uppyCreate(token, key, 'again.bin')).body;
    await abortThroughUppy(token, first);
    const renewed = await uppyCreate(token, key, 'again.bin');
    expect(renewed.status).toBe(200);
    expect(renewed.headers['idempotent-replayed']).toBeUndefined();
    expect(renewed.body.uploadId).not.toBe(first.uploadId);
    const repeat = await uppyCreate(token, key, 'again.bin');
    expect(repeat.headers['idempotent-replayed']).toBe('true');
    expect(repeat.body.uploadId).toBe(renewed.body.uploadId);
    const statuses = (await jobStore().list(username, { type: 'upload', limit: 10 })).jobs
      .map((job) => [job.jobId, job.status])
      .sort();
    expect(statuses).toEqual(
      [
        [first.uploadId, 'ABORTED'],
        [renewed.body.uploadId, 'UPLOADING'],
      ].sort(),
    );
  });

  it('answers concurrent retries after the end with one new upload', async () => {
    const { username, token } = await signedIn();
    const key = randomUUID();
    const first = (await uppyCreate(token, key, 'race.bin')).body;
    await abortThroughUppy(token, first);
    const answers = await Promise.all(Array.from({ length: 5 }, () => uppyCreate(token, key, 'race.bin')));
    expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200, 200, 200]);
    const uploadIds = new Set(answers.map((answer) => answer.body.uploadId));
    expect(uploadIds.size).toBe(1);
    expect(uploadIds.has(first.uploadId)).toBe(false);
    expect(answers.filter((answer) => answer.headers['idempotent-replayed'] === 'true')).toHaveLength(4);
    const open = await openUploadsOf(username);
    expect(open).toHaveLength(1);
    const active = (await jobStore().list(username, { type: 'upload', limit: 10 })).jobs.filter(
      (job) => job.status === 'UPLOADING',
    );
    expect(active.map((job) => job.jobId)).toEqual([...uploadIds]);
  });
});
