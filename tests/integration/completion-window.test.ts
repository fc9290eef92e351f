import { randomBytes, randomUUID } from 'node:crypto';
import { jest } from '@jest/globals';
import { jobStore } from '../../lib/jobs/index.ts';
import { fileStore } from '../../lib/storage/index.ts';
import { completeUpload, createUpload } from '../../lib/uploads/uploads.ts';

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
