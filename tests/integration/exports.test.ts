import { randomBytes, randomUUID } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { MiB } from '../../common/part-plan.ts';
import { config } from '../../lib/config.ts';
import { cancelExport, killExports, startExport, type WorkerEvent } from '../../lib/exports/exports.ts';
import { HttpError } from '../../lib/http/errors.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import { LimitReached } from '../../lib/jobs/jobs-table.ts';
import { expectSameBytes } from '../support/bytes.ts';
import { createExportJob as createJob, runExportAsWorker, runToTheEnd } from '../support/exports.ts';
import { testBucket } from '../support/s3.ts';

/**
 * The export worker run in-process against the emulators, with its time budget and hand-offs under
 * the test's control. (The asynchronous start through Lambda is covered over HTTP in tests/e2e.)
 */

const user = () => `exp-${randomUUID().slice(0, 8)}`;

async function sourceFile(username: string, bytes: Buffer, name = 'source.bin') {
  await testBucket().putObject(`uploads/${username}/${name}`, bytes);
  return name;
}

async function leftovers(username: string, jobId: string) {
  const prefix = `exports/${username}/${jobId}/`;
  return {
    objects: await testBucket().list(prefix),
    openUploads: await testBucket().listOpenUploads(prefix),
  };
}

describe('the export worker', () => {
  it.each(['raw', 'gzip'] as const)(
    'exports %s in several invocations of one part each, byte for byte',
    async (format) => {
      const username = user();
      const bytes = randomBytes(12 * MiB + 12345);
      const filename = await sourceFile(username, bytes);
      const jobId = await createJob(username, filename, format);

      const { result, invocations } = await runToTheEnd({ username, jobId });
      expect(result).toBe('succeeded');
      expect(invocations).toBeGreaterThanOrEqual(3);

      const job = (await jobStore().get(username, jobId))!;
      expect(job).toMatchObject({ status: 'SUCCEEDED', partsDone: 3, partCount: 3, bytesDone: bytes.length });
      expect(job.invocations).toBe(invocations);
      const output = Buffer.from((await testBucket().getObjectBytes(job.key))!);
      expectSameBytes(format === 'gzip' ? gunzipSync(output) : output, bytes);
      expect((await leftovers(username, jobId)).openUploads).toEqual([]);
      // The source is untouched.
      expectSameBytes((await testBucket().getObjectBytes(`uploads/${username}/${filename}`))!, bytes);
    },
  );

  it('gathers small gzip members into parts of at least 5 MiB (compressible data)', async () => {
    const username = user();
    const bytes = Buffer.alloc(16 * MiB, 'all work and no play makes jack a dull boy\n');
    const jobId = await createJob(username, await sourceFile(username, bytes), 'gzip');
    const { result } = await runToTheEnd({ username, jobId });
    expect(result).toBe('succeeded');
    const job = (await jobStore().get(username, jobId))!;
    const output = Buffer.from((await testBucket().getObjectBytes(job.key))!);
    expect(output.length).toBeLessThan(MiB);
    expectSameBytes(gunzipSync(output), bytes);
  });

  it('exports an empty file', async () => {
    const username = user();
    const jobId = await createJob(username, await sourceFile(username, Buffer.alloc(0)), 'gzip');
    expect((await runToTheEnd({ username, jobId })).result).toBe('succeeded');
    const job = (await jobStore().get(username, jobId))!;
    expect(gunzipSync(Buffer.from((await testBucket().getObjectBytes(job.key))!)).length).toBe(0);
  });

  it('stops at a kill between parts: CANCELLED, no multipart upload, no object, source intact', async () => {
    const username = user();
    const bytes = randomBytes(16 * MiB);
    const filename = await sourceFile(username, bytes);
    const jobId = await createJob(username, filename, 'raw');
    const { result } = await runToTheEnd({ username, jobId }, async (invocation) => {
      // After two parts, the user kills the export while its worker holds a live lease.
      if (invocation === 3) {
        const killed = await killExports(username);
        expect(killed.cancelled).toEqual([{ jobId, filename, status: 'CANCELLING' }]);
      }
    });
    expect(result).toBe('cancelled');
    expect((await jobStore().get(username, jobId))!.status).toBe('CANCELLED');
    expect(await leftovers(username, jobId)).toEqual({ objects: [], openUploads: [] });
    expectSameBytes((await testBucket().getObjectBytes(`uploads/${username}/${filename}`))!, bytes);
    await expect(killExports(username)).rejects.toMatchObject({ status: 404, code: 'NoExportFound' });
  });

  it('cleans up at once when the job has no live worker (never started)', async () => {
    const username = user();
    const jobId = await createJob(username, await sourceFile(username, randomBytes(1024)), 'raw');
    const cancelled = await cancelExport(username, jobId);
    expect(cancelled.job.status).toBe('CANCELLED');
    // A worker that starts late finds nothing to do.
    expect(
      await runExportAsWorker(
        { username, jobId },
        { deadline: Date.now() + 60_000, continueWith: async () => {} },
      ),
    ).toBe('skipped');
  });

  it('fails with a reason and cleans up when the source is deleted mid-way', async () => {
    const username = user();
    const filename = await sourceFile(username, randomBytes(12 * MiB));
    const jobId = await createJob(username, filename, 'raw');
    const { result } = await runToTheEnd({ username, jobId }, async (invocation) => {
      if (invocation === 2) await testBucket().deleteObject(`uploads/${username}/${filename}`);
    });
    expect(result).toBe('failed');
    const job = (await jobStore().get(username, jobId))!;
    expect(job.status).toBe('FAILED');
    expect(job.error).toMatch(/source file was (deleted|changed)/);
    expect(await leftovers(username, jobId)).toEqual({ objects: [], openUploads: [] });
  });

  it('fails when the source changes mid-way (its ETag no longer matches)', async () => {
    const username = user();
    const filename = await sourceFile(username, randomBytes(12 * MiB));
    const jobId = await createJob(username, filename, 'gzip');
    const { result } = await runToTheEnd({ username, jobId }, async (invocation) => {
      if (invocation === 2) await sourceFile(username, randomBytes(12 * MiB), filename);
    });
    expect(result).toBe('failed');
    expect((await jobStore().get(username, jobId))!.error).toBe('the source file changed during the export');
    expect(await leftovers(username, jobId)).toEqual({ objects: [], openUploads: [] });
  });

  it('ignores a duplicate delivery of the same event while the first worker holds the job', async () => {
    const username = user();
    const jobId = await createJob(username, await sourceFile(username, randomBytes(12 * MiB)), 'raw');
    let handedTo: WorkerEvent | undefined;
    await runExportAsWorker(
      { username, jobId },
      {
        deadline: 0,
        continueWith: async (next) => {
          handedTo = next;
        },
      },
    );
    // The original event again (Lambda may deliver an asynchronous event twice): not claimable.
    expect(await runExportAsWorker({ username, jobId }, { deadline: 0, continueWith: async () => {} })).toBe(
      'skipped',
    );
    const { result } = await runToTheEnd(handedTo!);
    expect(result).toBe('succeeded');
  });
});

describe('the per-user limit of running exports', () => {
  it('admits at most EXPORT_MAX_RUNNING at once, and frees a place when one ends', async () => {
    const username = user();
    const filename = await sourceFile(username, randomBytes(1024));
    const max = config().exports.maxRunning;
    const jobs = [];
    for (let i = 0; i < max; i++) jobs.push(await createJob(username, filename, 'raw'));
    await expect(createJob(username, filename, 'raw')).rejects.toBeInstanceOf(LimitReached);
    await cancelExport(username, jobs[0]!);
    const again = await createJob(username, filename, 'raw');
    for (const jobId of [...jobs.slice(1), again]) await cancelExport(username, jobId);
  });

  it('answers POST /export past the limit with 429', async () => {
    const username = user();
    const filename = await sourceFile(username, randomBytes(1024));
    for (let i = 0; i < config().exports.maxRunning; i++) await createJob(username, filename, 'raw');
    const error = await startExport(username, filename, 'raw').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HttpError);
    expect(error).toMatchObject({ status: 429, code: 'TooManyRequests' });
    expect((error as HttpError).headers['retry-after']).toBeDefined();
    await killExports(username);
  });
});
