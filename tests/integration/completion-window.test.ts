import { randomBytes, randomUUID } from 'node:crypto';
import { jest } from '@jest/globals';
import {
  completeMultipart,
  createMultipart,
  multipartRequest,
  signPart,
} from '../../lib/companion/companion.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import { fileStore } from '../../lib/storage/index.ts';
import { completeUpload, createUpload } from '../../lib/uploads/uploads.ts';
import { putPart } from '../support/s3.ts';

/**
 * moto removes a multipart upload from its list before it stores the completed object (seconds for
 * a large one: moto_server's complete_multipart_upload deletes the upload, then put_object copies the
 * bytes). A completion asked again in that window (its first try timed out) found the upload gone and
 * no object, and marked the job FAILED, while the file then appeared in the uploads folder
 * (bench/upload.ts hit it at 1 GiB on a loaded machine). It must answer CompletionInProgress and
 * complete on a later try.
 */

afterEach(() => jest.restoreAllMocks());

it('a completion asked again while S3 is still storing the object waits for it, then records COMPLETED', async () => {
  const username = `window-${randomUUID().slice(0, 8)}`;
  const bytes = randomBytes(2000);
  const created = await createUpload(username, { filename: 'window.bin', size: bytes.length });
  const [part] = created.parts;
  expect((await fetch(part!.url, { method: 'PUT', body: bytes, headers: part!.headers })).status).toBe(200);
  const store = fileStore();
  const stored = (await store.listParts(created.key, created.uploadId))!;

  // The first try: the job is COMPLETING, and S3's answer does not come in time.
  jest.spyOn(store, 'completeMultipartUpload').mockRejectedValueOnce(new Error('timed out'));
  await expect(completeUpload(username, created.job.jobId)).rejects.toThrow('timed out');
  expect((await jobStore().get(username, created.job.jobId))?.status).toBe('COMPLETING');

  // Asked again in the window: S3 no longer lists the upload, and the object is not there yet.
  jest.spyOn(store, 'listParts').mockResolvedValueOnce(undefined);
  jest.spyOn(store, 'head').mockResolvedValueOnce(undefined);
  await expect(completeUpload(username, created.job.jobId)).rejects.toMatchObject({
    status: 409,
    code: 'CompletionInProgress',
  });
  expect((await jobStore().get(username, created.job.jobId))?.status).toBe('COMPLETING');

  // S3 finishes; the next try records the completion.
  jest.restoreAllMocks();
  await store.completeMultipartUpload(created.key, created.uploadId, stored);
  const job = await completeUpload(username, created.job.jobId);
  expect(job.status).toBe('COMPLETED');
  expect(Buffer.from((await store.getObjectBytes(created.key))!)).toEqual(bytes);
});

/**
 * The routes wait for a completion in flight instead of answering 409 CompletionInProgress at once:
 * Uppy does not retry a failed completion, so there a 409 is a file shown as failed that then
 * completes. Seen in the soak: a completion whose connection broke after it reached the service,
 * retried by the user while S3 was still storing the object.
 */
describe('a completion meeting another in flight', () => {
  async function readyUpload(name: string) {
    const username = `inflight-${randomUUID().slice(0, 8)}`;
    const bytes = randomBytes(3000);
    const created = await createUpload(username, { filename: `${name}.bin`, size: bytes.length });
    const [part] = created.parts;
    expect((await fetch(part!.url, { method: 'PUT', body: bytes, headers: part!.headers })).status).toBe(200);
    return { username, bytes, created };
  }

  it('one that read the job before the other moved it to COMPLETING waits, and both answer COMPLETED', async () => {
    const { username, bytes, created } = await readyUpload('race');
    const jobId = created.job.jobId;
    const beforeEither = (await jobStore().get(username, jobId))!;
    const store = fileStore();
    const complete = store.completeMultipartUpload.bind(store);
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let entered!: () => void;
    const firstInS3 = new Promise<void>((resolve) => {
      entered = resolve;
    });
    jest.spyOn(store, 'completeMultipartUpload').mockImplementationOnce(async (...args) => {
      entered();
      await released;
      return complete(...args);
    });
    const first = completeUpload(username, jobId);
    await firstInS3;
    expect((await jobStore().get(username, jobId))?.status).toBe('COMPLETING');

    // The second read the job while it was still UPLOADING: its own move to COMPLETING is refused.
    jest.spyOn(jobStore(), 'get').mockResolvedValueOnce(beforeEither);
    await expect(completeUpload(username, jobId)).rejects.toMatchObject({
      status: 409,
      code: 'CompletionInProgress',
    });
    jest.spyOn(jobStore(), 'get').mockResolvedValueOnce(beforeEither);
    const second = await completeUpload(username, jobId, { awaitInFlightMs: 20_000 });
    expect(second.status).toBe('COMPLETED');

    release();
    expect((await first).status).toBe('COMPLETED');
    expect(Buffer.from((await store.getObjectBytes(created.key))!)).toEqual(bytes);
  });

  it("Uppy's retried completion, while S3 still stores the first one's object, answers the location", async () => {
    const username = `inflight-${randomUUID().slice(0, 8)}`;
    const bytes = randomBytes(3000);
    const { created } = await createMultipart(
      username,
      multipartRequest({ filename: 'uppy.bin', type: 'application/octet-stream' }),
    );
    const { url } = await signPart(username, created.uploadId, 1, created.key);
    const parts = [{ PartNumber: 1, ETag: await putPart(url, bytes) }];
    const store = fileStore();

    // The first try reaches S3 and its answer is lost: the job is COMPLETING.
    jest.spyOn(store, 'completeMultipartUpload').mockRejectedValueOnce(new Error('socket hang up'));
    await expect(completeMultipart(username, created.uploadId, created.key, parts)).rejects.toThrow(
      'socket hang up',
    );

    // The retry comes while S3 no longer lists the upload and has not stored the object yet.
    jest.spyOn(store, 'listParts').mockResolvedValueOnce(undefined);
    jest.spyOn(store, 'head').mockResolvedValueOnce(undefined);
    const done = await completeMultipart(username, created.uploadId, created.key, parts, {
      awaitInFlightMs: 20_000,
    });
    expect(done).toMatchObject({
      location: expect.stringMatching(/^\/jobs\//),
      job: { status: 'COMPLETED' },
    });
    expect(Buffer.from((await store.getObjectBytes(created.key))!)).toEqual(bytes);
  });

  it('waits no longer than it was given: a completion that does not end within it is still 409', async () => {
    const { username, created } = await readyUpload('stuck');
    const jobId = created.job.jobId;
    const store = fileStore();
    jest.spyOn(store, 'completeMultipartUpload').mockRejectedValueOnce(new Error('timed out'));
    await expect(completeUpload(username, jobId)).rejects.toThrow('timed out');
    const lists = jest.spyOn(store, 'listParts').mockResolvedValue(undefined);
    jest.spyOn(store, 'head').mockResolvedValue(undefined);
    await expect(completeUpload(username, jobId, { awaitInFlightMs: 1000 })).rejects.toMatchObject({
      status: 409,
      code: 'CompletionInProgress',
    });
    // It asked again while it waited, and left the job as it found it.
    expect(lists.mock.calls.length).toBeGreaterThan(1);
    expect((await jobStore().get(username, jobId))?.status).toBe('COMPLETING');
  });
});
