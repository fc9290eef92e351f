import { randomBytes, randomUUID } from 'node:crypto';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { jest } from '@jest/globals';
import { MiB } from '../../common/part-plan.ts';
import { documentClient } from '../../lib/aws/clients.ts';
import { config } from '../../lib/config.ts';
import { HttpError } from '../../lib/http/errors.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import type { JobStore, TransitionOptions } from '../../lib/jobs/job-store.ts';
import type { FileStore } from '../../lib/storage/file-store.ts';
import { fileStore } from '../../lib/storage/index.ts';
import { completeUpload, createFormUpload, createUpload } from '../../lib/uploads/uploads.ts';
import { asFunction } from '../support/as-function.ts';
import { expectSameBytes } from '../support/bytes.ts';
import { janitorOver } from '../support/janitor.ts';
import { putPart, testBucket } from '../support/s3.ts';

/**
 * A completion (POST /upload/{jobId}/complete) or a form upload can die between any S3 call and the
 * job write after it. Each case lets the real call happen, then crashes: the call "throws" (the
 * request sees an error after S3 or DynamoDB did the work) or, for a write, the process dies just
 * before it. Then the same completion is asked again, or the janitor runs (in-process, its clock a
 * day ahead, seeing only this test's jobs so that other tests' jobs are left alone). Every case must
 * converge: COMPLETED with the file byte for byte, or a finished non-COMPLETED job with no multipart
 * upload left, its file name free, and no file of its making in the uploads folder.
 */

const user = () => `crash-up-${randomUUID().slice(0, 8)}`;

class Crash extends Error {
  override name = 'Crash';
}

type Method<T> = { [K in keyof T]: T[K] extends (...args: never[]) => Promise<unknown> ? K : never }[keyof T];

/** The real call happens, then (once, when `when` says so) the caller sees a crash instead of its result. */
function crashAfter<T extends object>(
  target: T,
  method: Method<T>,
  when: (...args: any[]) => boolean = () => true,
) {
  const real = (target[method] as (...args: unknown[]) => Promise<unknown>).bind(target);
  const spy = jest.spyOn(target, method as never).mockImplementation((async (...args: unknown[]) => {
    const result = await real(...args);
    if (!when(...args)) return result;
    spy.mockRestore();
    throw new Crash(`crash after ${String(method)}`);
  }) as never);
}

/** The process dies just before the call (once, when `when` says so): it never happens. */
function crashBefore<T extends object>(
  target: T,
  method: Method<T>,
  when: (...args: any[]) => boolean = () => true,
) {
  const real = (target[method] as (...args: unknown[]) => Promise<unknown>).bind(target);
  const spy = jest.spyOn(target, method as never).mockImplementation((async (...args: unknown[]) => {
    if (!when(...args)) return real(...args);
    spy.mockRestore();
    throw new Crash(`crash before ${String(method)}`);
  }) as never);
}

const to =
  (status: string) =>
  (_username: string, _jobId: string, options: TransitionOptions): boolean =>
    options.to === status;

const outcome = async <T>(promise: Promise<T>) => {
  try {
    return { ok: true as const, value: await promise };
  } catch (error) {
    if (error instanceof HttpError) return { ok: false as const, status: error.status, code: error.code };
    if (error instanceof Crash) return { ok: false as const, crash: error.message };
    throw error;
  }
};

/** The janitor as the schedule runs it, a day later, over this user's jobs and folder only. */
async function janitorLater(username: string) {
  const report = await janitorOver(username, {
    settings: { prefixes: [`uploads/${username}/`] },
    now: Date.now() + 25 * 3600 * 1000,
  });
  expect(report.errors).toBe(0);
  return report;
}

/**
 * A form upload's writing request has surely ended once the API's timeout has passed: until then a
 * /complete must not declare its file unwritten. Moves the job's clock back past that grace.
 */
async function formWriterEnded(username: string, jobId: string) {
  await documentClient().send(
    new UpdateCommand({
      TableName: config().jobsTable,
      Key: { pk: `USER#${username}`, sk: `JOB#${jobId}` },
      UpdateExpression: 'SET updatedAt = :then',
      ExpressionAttributeValues: { ':then': new Date(Date.now() - 120_000).toISOString() },
    }),
  );
}

async function rerun(mode: 'complete' | 'janitor', username: string, jobId: string) {
  if (mode === 'complete') await outcome(completeUpload(username, jobId));
  else await janitorLater(username);
}

/** The job's final state and what S3 holds, checked to agree. */
async function expectConverged(
  username: string,
  jobId: string,
  bytes: Buffer,
  before: Uint8Array | undefined = undefined,
) {
  const job = (await jobStore().get(username, jobId))!;
  const object = await testBucket().getObjectBytes(job.key);
  expect(await testBucket().listOpenUploads(`uploads/${username}/`)).toEqual([]);
  expect((await jobStore().activeSlots(username, 'upload')).map((slot) => slot.jobId)).not.toContain(jobId);
  if (job.status === 'COMPLETED') {
    expectSameBytes(object!, bytes);
    expect({ partsDone: job.partsDone, bytesDone: job.bytesDone }).toEqual({
      partsDone: job.partCount,
      bytesDone: bytes.length,
    });
  } else {
    expect(['FAILED', 'EXPIRED', 'ABORTED']).toContain(job.status);
    // Nothing of this job's making: the folder holds what it held before.
    if (before) expectSameBytes(object!, before);
    else expect(object).toBeUndefined();
  }
  return job.status;
}

const partOf = (bytes: Buffer, partSize: number, partNumber: number) =>
  bytes.subarray((partNumber - 1) * partSize, partNumber * partSize);

/** An upload of 11 MiB in three parts, all in S3, ready to complete. */
async function readyUpload(username: string) {
  const bytes = randomBytes(11 * MiB);
  const created = await createUpload(username, {
    filename: 'data.bin',
    size: bytes.length,
    partSize: 5 * MiB,
  });
  for (const part of created.parts) await putPart(part.url, partOf(bytes, 5 * MiB, part.partNumber));
  return { ...created, bytes };
}

/** A completion that dies right after its COMPLETING write: the job is left COMPLETING. */
async function leftCompleting(username: string, jobId: string) {
  crashAfter(jobStore() as JobStore, 'transition', to('COMPLETING'));
  await outcome(completeUpload(username, jobId));
  jest.restoreAllMocks();
}

type Mode = 'complete' | 'janitor';
const modes: Mode[] = ['complete', 'janitor'];

afterEach(() => jest.restoreAllMocks());

describe('a completion that crashes', () => {
  const steps = [
    {
      step: 'ListParts -> COMPLETING write',
      crash: () => crashAfter(fileStore() as FileStore, 'listParts'),
      // The job is still UPLOADING: completed when asked again; expired by the janitor once idle.
      expected: { complete: 'COMPLETED', janitor: 'EXPIRED' },
    },
    {
      step: 'COMPLETING write -> CompleteMultipartUpload',
      crash: () => crashAfter(jobStore() as JobStore, 'transition', to('COMPLETING')),
      expected: { complete: 'COMPLETED', janitor: 'COMPLETED' },
    },
    {
      step: 'CompleteMultipartUpload -> COMPLETED write',
      crash: () => crashAfter(fileStore() as FileStore, 'completeMultipartUpload'),
      expected: { complete: 'COMPLETED', janitor: 'COMPLETED' },
    },
    {
      step: 'dies before the COMPLETED write',
      crash: () => crashBefore(jobStore() as JobStore, 'transition', to('COMPLETED')),
      expected: { complete: 'COMPLETED', janitor: 'COMPLETED' },
    },
  ];

  for (const mode of modes) {
    it.each(steps)(
      `$step, then ${mode === 'complete' ? 'the same /complete' : 'the janitor'}`,
      async ({ crash, expected }) => {
        const username = user();
        const upload = await readyUpload(username);
        crash();
        expect(await outcome(completeUpload(username, upload.job.jobId))).toMatchObject({
          ok: false,
          crash: expect.any(String),
        });
        jest.restoreAllMocks();
        await rerun(mode, username, upload.job.jobId);
        expect(await expectConverged(username, upload.job.jobId, upload.bytes)).toBe(expected[mode]);
        // Asking again changes nothing.
        await rerun(mode, username, upload.job.jobId);
        expect(await expectConverged(username, upload.job.jobId, upload.bytes)).toBe(expected[mode]);
      },
    );
  }
});

describe('a form upload that crashes', () => {
  const steps = [
    {
      step: 'dies before the COMPLETING write',
      crash: () => crashBefore(jobStore() as JobStore, 'transition', to('COMPLETING')),
      // Nothing was stored; a completion fails it, the janitor expires it once idle.
      expected: { complete: 'FAILED', janitor: 'EXPIRED' },
    },
    {
      step: 'COMPLETING write -> PutObject',
      crash: () => crashAfter(jobStore() as JobStore, 'transition', to('COMPLETING')),
      expected: { complete: 'FAILED', janitor: 'FAILED' },
    },
    {
      step: 'PutObject never reaches S3',
      crash: () => crashBefore(fileStore() as FileStore, 'putObject'),
      expected: { complete: 'FAILED', janitor: 'FAILED' },
    },
    {
      step: 'PutObject -> COMPLETED write',
      crash: () => crashAfter(fileStore() as FileStore, 'putObject'),
      expected: { complete: 'COMPLETED', janitor: 'COMPLETED' },
    },
    {
      step: 'dies before the COMPLETED write',
      crash: () => crashBefore(jobStore() as JobStore, 'transition', to('COMPLETED')),
      expected: { complete: 'COMPLETED', janitor: 'COMPLETED' },
    },
  ];

  for (const mode of modes) {
    it.each(steps)(
      `$step, then ${mode === 'complete' ? 'POST /upload/{jobId}/complete' : 'the janitor'}`,
      async ({ crash, expected }) => {
        const username = user();
        const bytes = randomBytes(2048);
        crash();
        await outcome(createFormUpload(username, { filename: 'form.bin', content: bytes }, false));
        jest.restoreAllMocks();
        const { jobs } = await jobStore().list(username, { type: 'upload', limit: 10 });
        expect(jobs).toHaveLength(1);
        const jobId = jobs[0]!.jobId;
        // The janitor, a day later by its clock, must see for itself that the writer has ended.
        if (mode === 'complete') await formWriterEnded(username, jobId);
        await rerun(mode, username, jobId);
        expect(await expectConverged(username, jobId, bytes)).toBe(expected[mode]);
        await rerun(mode, username, jobId);
        expect(await expectConverged(username, jobId, bytes)).toBe(expected[mode]);
        // Its file name is free again (or holds its file): a new upload of it may start.
        await expect(
          createFormUpload(username, { filename: 'form.bin', content: bytes }, true),
        ).resolves.toMatchObject({
          job: { status: 'COMPLETED' },
        });
      },
    );
  }

  it('a crash before storing an overwrite does not take the earlier file of the same size for its own', async () => {
    const username = user();
    const earlier = randomBytes(2048);
    await testBucket().putObject(`uploads/${username}/form.bin`, earlier);
    const bytes = randomBytes(2048);
    crashAfter(jobStore() as JobStore, 'transition', to('COMPLETING'));
    await outcome(createFormUpload(username, { filename: 'form.bin', content: bytes }, true));
    jest.restoreAllMocks();
    const { jobs } = await jobStore().list(username, { type: 'upload', limit: 10 });
    await formWriterEnded(username, jobs[0]!.jobId);
    expect(await outcome(completeUpload(username, jobs[0]!.jobId))).toEqual({
      ok: false,
      status: 409,
      code: 'UploadGone',
    });
    expect(await expectConverged(username, jobs[0]!.jobId, bytes, earlier)).toBe('FAILED');
  });

  describe('sent again after its first request died', () => {
    /** The first request dies once its job is COMPLETING: before (or after) it wrote its file. */
    async function firstDies(username: string, bytes: Buffer, wroteFile: boolean) {
      if (wroteFile) crashBefore(jobStore() as JobStore, 'transition', to('COMPLETED'));
      else crashAfter(jobStore() as JobStore, 'transition', to('COMPLETING'));
      expect(
        await outcome(createFormUpload(username, { filename: 'form.bin', content: bytes }, false)),
      ).toMatchObject({ ok: false, crash: expect.any(String) });
      jest.restoreAllMocks();
      const { jobs } = await jobStore().list(username, { type: 'upload', limit: 10 });
      expect(jobs.map((job) => job.status)).toEqual(['COMPLETING']);
      return jobs[0]!.jobId;
    }

    it('while the first may still be writing: 409 UploadInProgress naming it; once it cannot, the name is taken over', async () => {
      const username = user();
      const first = await firstDies(username, randomBytes(2048), false);
      const bytes = randomBytes(4096);
      // As POST /upload's function, so the IAM check holds the settle it may now do to that role.
      const again = () =>
        asFunction('uploadCreate', () =>
          createFormUpload(username, { filename: 'form.bin', content: bytes }, false),
        );
      const refused = await again().catch((error: HttpError) => error);
      expect(refused).toMatchObject({ status: 409, code: 'UploadInProgress', details: { jobId: first } });
      // It says when the first request can no longer be writing (60 s after it began).
      const wait = Number((refused as HttpError).headers['retry-after']);
      expect(wait).toBeGreaterThanOrEqual(30);
      expect(wait).toBeLessThanOrEqual(60);
      expect((refused as HttpError).message).toContain(`send it again in ${wait} s`);
      expect((await jobStore().get(username, first))!.status).toBe('COMPLETING');
      await formWriterEnded(username, first);
      const second = await again();
      expect(second.job.status).toBe('COMPLETED');
      expect((await jobStore().get(username, first))!.status).toBe('FAILED');
      expect(await expectConverged(username, second.job.jobId, bytes)).toBe('COMPLETED');
    });

    it("the first's file did land: COMPLETED, and the second answers FileExists (or replaces it with overwrite)", async () => {
      const username = user();
      const firstBytes = randomBytes(2048);
      const first = await firstDies(username, firstBytes, true);
      await formWriterEnded(username, first);
      const bytes = randomBytes(4096);
      // The file is already there: refused before the name is even looked at.
      expect(
        await outcome(createFormUpload(username, { filename: 'form.bin', content: bytes }, false)),
      ).toEqual({ ok: false, status: 409, code: 'FileExists' });
      expect((await jobStore().get(username, first))!.status).toBe('COMPLETING');
      const second = await asFunction('uploadCreate', () =>
        createFormUpload(username, { filename: 'form.bin', content: bytes }, true),
      );
      expect(second.job.status).toBe('COMPLETED');
      // The first was settled by S3 on the way: its file had landed, and then the second replaced it.
      expect((await jobStore().get(username, first))!).toMatchObject({
        status: 'COMPLETED',
        bytesDone: firstBytes.length,
      });
      expect(await expectConverged(username, second.job.jobId, bytes)).toBe('COMPLETED');
    });
  });

  it('a /complete while the form request may still be writing its file waits for it instead of failing it', async () => {
    const username = user();
    const bytes = randomBytes(2048);
    crashAfter(jobStore() as JobStore, 'transition', to('COMPLETING'));
    await outcome(createFormUpload(username, { filename: 'form.bin', content: bytes }, false));
    jest.restoreAllMocks();
    const { jobs } = await jobStore().list(username, { type: 'upload', limit: 10 });
    const jobId = jobs[0]!.jobId;
    // Within the writer's time the job is left as it is, so a file that lands later is not orphaned.
    expect(await outcome(completeUpload(username, jobId))).toEqual({
      ok: false,
      status: 409,
      code: 'CompletionInProgress',
    });
    expect((await jobStore().get(username, jobId))!.status).toBe('COMPLETING');
    await testBucket().putObject(`uploads/${username}/form.bin`, bytes);
    expect(await outcome(completeUpload(username, jobId))).toMatchObject({ ok: true });
    expect(await expectConverged(username, jobId, bytes)).toBe('COMPLETED');
  });
});

describe('the janitor judges a completion in flight by its own clock', () => {
  it('COMPLETING, its multipart upload gone and no file in S3: the janitor a day later fails it', async () => {
    const username = user();
    const upload = await readyUpload(username);
    await leftCompleting(username, upload.job.jobId);
    const job = (await jobStore().get(username, upload.job.jobId))!;
    expect(job.status).toBe('COMPLETING');
    // Gone from S3 without a file: aborted by hand, or by the bucket's lifecycle rule.
    await fileStore().abortMultipartUpload(job.key, job.uploadId!);
    // Asked now, S3 may still be assembling the file: not yet the time to fail it.
    expect(await outcome(completeUpload(username, job.jobId))).toEqual({
      ok: false,
      status: 409,
      code: 'CompletionInProgress',
    });
    const report = await janitorLater(username);
    expect(report.completionsRetried).toBe(1);
    expect(await expectConverged(username, job.jobId, upload.bytes)).toBe('FAILED');
  });
});

describe('a retried completion checks the parts again', () => {
  it('a part sent again with another size while COMPLETING: 409 PartsIncomplete, back to UPLOADING, then completes', async () => {
    const username = user();
    const upload = await readyUpload(username);
    await leftCompleting(username, upload.job.jobId);
    // Part 2 again, wrong bytes and too few of them. Its part URL binds the planned length (a
    // signature-checking S3 refuses this body: signatures.test.ts), so it goes straight to S3, as
    // through a URL that binds no length (the Companion routes'): the service must not rely on it.
    await testBucket().uploadPart(upload.key, upload.uploadId, 2, randomBytes(1024));

    const retried = await outcome(completeUpload(username, upload.job.jobId));
    expect(retried).toEqual({ ok: false, status: 409, code: 'PartsIncomplete' });
    const job = (await jobStore().get(username, upload.job.jobId))!;
    expect(job.status).toBe('UPLOADING');
    // Nothing was completed, and the upload is still open for the part to be sent right.
    expect(await testBucket().head(upload.key)).toBeUndefined();
    expect(await testBucket().listParts(upload.key, upload.uploadId)).toHaveLength(3);

    await putPart(upload.parts[1]!.url, partOf(upload.bytes, 5 * MiB, 2));
    expect((await completeUpload(username, upload.job.jobId)).status).toBe('COMPLETED');
    expect(await expectConverged(username, upload.job.jobId, upload.bytes)).toBe('COMPLETED');
  });

  it('the last part sent again with another size while COMPLETING is not completed and recorded as planned', async () => {
    const username = user();
    const bytes = randomBytes(64);
    const created = await createUpload(username, { filename: 'small.bin', size: bytes.length });
    await putPart(created.parts[0]!.url, bytes);
    await leftCompleting(username, created.job.jobId);
    // Straight to S3, for the reason above.
    await testBucket().uploadPart(created.key, created.uploadId, 1, bytes.subarray(0, 32));

    expect(await outcome(completeUpload(username, created.job.jobId))).toEqual({
      ok: false,
      status: 409,
      code: 'PartsIncomplete',
    });
    expect((await jobStore().get(username, created.job.jobId))!.status).toBe('UPLOADING');
    expect(await testBucket().head(created.key)).toBeUndefined();
    // The janitor's retry of a stuck completion would have done the same: nothing recorded unverified.
    await putPart(created.parts[0]!.url, bytes);
    expect((await completeUpload(username, created.job.jobId)).status).toBe('COMPLETED');
    expectSameBytes((await testBucket().getObjectBytes(created.key))!, bytes);
  });

  it('a part sent again between ListParts and CompleteMultipartUpload: S3 refuses (InvalidPart), 409 not 500', async () => {
    const username = user();
    const upload = await readyUpload(username);
    const store = fileStore() as FileStore;
    const real = store.listParts.bind(store);
    const newer = randomBytes(5 * MiB);
    const list = jest.spyOn(store, 'listParts').mockImplementation(async (key, uploadId) => {
      const parts = await real(key, uploadId);
      list.mockRestore();
      // Same size, other bytes: the ETag just listed no longer names the part S3 holds.
      await putPart(upload.parts[0]!.url, newer);
      return parts;
    });

    const first = await outcome(completeUpload(username, upload.job.jobId));
    expect(first).toEqual({ ok: false, status: 409, code: 'PartsIncomplete' });
    expect((await jobStore().get(username, upload.job.jobId))!.status).toBe('UPLOADING');

    // Completing again takes the parts S3 holds now.
    expect((await completeUpload(username, upload.job.jobId)).status).toBe('COMPLETED');
    const expected = Buffer.concat([newer, upload.bytes.subarray(5 * MiB)]);
    expect(await expectConverged(username, upload.job.jobId, expected)).toBe('COMPLETED');
  });
});
