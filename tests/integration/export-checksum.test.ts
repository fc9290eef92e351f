import { randomBytes, randomUUID } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { jest } from '@jest/globals';
import { checksumOf } from '../../common/checksums.ts';
import { MiB } from '../../common/part-plan.ts';
import { exportView } from '../../lib/exports/exports.ts';
import type { RunResult } from '../../lib/exports/worker.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import type { FileStore } from '../../lib/storage/file-store.ts';
import { transferFileStore } from '../../lib/storage/index.ts';
import { expectSameBytes } from '../support/bytes.ts';
import { createExportJob, exportLeftovers, runExportAsWorker, runToTheEnd } from '../support/exports.ts';
import { testBucket } from '../support/s3.ts';
import { testStack } from '../support/stack-env.ts';

/**
 * An export's output carries a full-object CRC32 that the job reports: S3 checks every output part
 * (raw: it computes the copied parts' CRCs itself; gzip: against the CRC the worker computed of the
 * compressed bytes) and the whole object at completion. The reported value must be the CRC32 of the
 * bytes a user downloads, also when the output was written by several invocations (hand-offs) or
 * completed by a worker that died before recording it. moto neither checks part checksums nor lists
 * them, so it gives a multipart output no checksum: these run where S3 does as AWS does, LocalStack
 * (TEST_EMULATOR=localstack npm test).
 */

const s3 = testStack().emulator?.s3;
const describeOnCheckingS3 = s3 === 'localstack' ? describe : describe.skip;
const title =
  s3 === 'localstack'
    ? 'export output checksums against a checksum-checking S3 (LocalStack)'
    : `export output checksums (skipped: S3 here is ${s3 ?? 'unknown'}, which neither checks nor lists part checksums, so multipart outputs get none; run TEST_EMULATOR=localstack npm test)`;

const user = () => `sum-${randomUUID().slice(0, 8)}`;

/** Base64 lines of random bytes: text that gzip shrinks by a quarter, so members gather into parts. */
function textLike(size: number): Buffer {
  const lines: string[] = [];
  let length = 0;
  while (length < size) {
    const line = `${randomBytes(57).toString('base64')}\n`;
    lines.push(line);
    length += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, size);
}

const sources = {
  random: () => randomBytes(12 * MiB + 4321),
  text: () => textLike(16 * MiB + 99),
};

/** S3's own answer, straight from HeadObject with ChecksumMode ENABLED (not through the FileStore). */
async function headChecksum(key: string) {
  const stack = testStack();
  const client = new S3Client({ region: stack.region, endpoint: stack.s3Endpoint, forcePathStyle: true });
  const head = await client.send(
    new HeadObjectCommand({ Bucket: stack.bucket, Key: key, ChecksumMode: 'ENABLED' }),
  );
  return { crc32: head.ChecksumCRC32, type: head.ChecksumType, etag: head.ETag };
}

async function exportOf(format: 'raw' | 'gzip', bytes: Buffer, options?: { withChecksum?: boolean }) {
  const username = user();
  await testBucket().putObject(`uploads/${username}/src.txt`, bytes);
  const jobId = await createExportJob(username, 'src.txt', format, options);
  return { username, jobId };
}

/** The finished job and the bytes a user downloads, checked against the source. */
async function finished(username: string, jobId: string, bytes: Buffer) {
  const job = (await jobStore().get(username, jobId))!;
  expect(job.status).toBe('SUCCEEDED');
  const output = Buffer.from((await testBucket().getObjectBytes(job.key))!);
  const format = (job.details as { format: string }).format;
  expectSameBytes(format === 'gzip' ? gunzipSync(output) : output, bytes);
  expect(await exportLeftovers(username, jobId)).toEqual({ objects: [job.key], openUploads: [] });
  return { job, output };
}

/** The job reports the CRC32 of the downloaded bytes, S3 says the same, and so does GET /jobs/{id}. */
async function expectChecksumOf(username: string, jobId: string, bytes: Buffer) {
  const { job, output } = await finished(username, jobId, bytes);
  const expected = { algorithm: 'CRC32', type: 'FULL_OBJECT', value: await checksumOf('CRC32', output) };
  expect(job.checksum).toEqual(expected);
  expect(await headChecksum(job.key)).toMatchObject({ crc32: expected.value, type: 'FULL_OBJECT' });
  expect((await exportView(job)).checksum).toEqual(expected);
  return job;
}

const cases = [
  { format: 'raw', source: 'random' },
  { format: 'gzip', source: 'random' },
  { format: 'gzip', source: 'text' },
] as const;

afterEach(() => jest.restoreAllMocks());

describeOnCheckingS3(title, () => {
  it.each(cases)(
    '$format of $source bytes, one part per invocation (a hand-off after each): the CRC32 of the download',
    async ({ format, source }) => {
      const bytes = sources[source]();
      const { username, jobId } = await exportOf(format, bytes);
      const { result, invocations } = await runToTheEnd({ username, jobId });
      expect(result).toBe('succeeded');
      expect(invocations).toBeGreaterThanOrEqual(2);
      const job = await expectChecksumOf(username, jobId, bytes);
      expect(job.partCount).toBeGreaterThanOrEqual(3);
      // Several parts, each checked: a multipart ETag, not one PutObject.
      expect((await headChecksum(job.key)).etag).toMatch(/-[2-9]"?$/);
    },
  );

  it.each(cases)(
    '$format of $source bytes, in one invocation with parts in flight together: the CRC32 of the download',
    async ({ format, source }) => {
      const bytes = sources[source]();
      const { username, jobId } = await exportOf(format, bytes);
      const result = await runExportAsWorker(
        { username, jobId },
        {
          deadline: Number.POSITIVE_INFINITY,
          continueWith: async () => {
            throw new Error('no hand-off expected');
          },
        },
      );
      expect(result).toBe('succeeded');
      await expectChecksumOf(username, jobId, bytes);
    },
  );

  it.each(['raw', 'gzip'] as const)(
    '%s: a worker that dies after completing the output leaves the checksum to its successor',
    async (format) => {
      const bytes = sources.random();
      const { username, jobId } = await exportOf(format, bytes);
      const store = transferFileStore();
      const complete = store.completeMultipartUpload.bind(store);
      jest.spyOn(store as FileStore, 'completeMultipartUpload').mockImplementation(async (...args) => {
        await complete(...args);
        throw new Error('injected crash after the completion');
      });
      // Its first stop since its last part: it restarts itself, and the restart finds the output
      // completed and reads its checksum from S3.
      expect((await runToTheEnd({ username, jobId })).result).toBe('succeeded');
      expect((await jobStore().get(username, jobId))!.restarts).toBe(1);
      await expectChecksumOf(username, jobId, bytes);
    },
  );

  it('gzip: S3 refuses a part whose bytes are not those the worker compressed; a restart rewrites it', async () => {
    const bytes = sources.random();
    const { username, jobId } = await exportOf('gzip', bytes);
    const store = transferFileStore();
    const uploadPart = store.uploadPart.bind(store);
    const refusals: unknown[] = [];
    jest
      .spyOn(store as FileStore, 'uploadPart')
      .mockImplementation(async (key, uploadId, partNumber, body, checksum) => {
        if (partNumber !== 2) return uploadPart(key, uploadId, partNumber, body, checksum);
        // One bit flipped on the way, after the worker computed the part's checksum.
        const damaged = Buffer.from(body);
        damaged[damaged.length >> 1]! ^= 0x10;
        try {
          return await uploadPart(key, uploadId, partNumber, damaged, checksum);
        } catch (error) {
          refusals.push(error);
          throw error;
        }
      });
    let result: RunResult = (await runToTheEnd({ username, jobId })).result;
    // Refused once, and once more in the worker's own restart (the damage here is not passing).
    expect(result).toBe('interrupted');
    expect(refusals).toHaveLength(2);
    expect(refusals[0]).toMatchObject({ $metadata: { httpStatusCode: 400 } });
    expect((await jobStore().get(username, jobId))!).toMatchObject({
      status: 'RUNNING',
      checkpoint: { partNumber: 2 },
    });
    jest.restoreAllMocks();

    // The janitor's restart (the interrupted worker gave up its lease).
    result = (await runToTheEnd({ username, jobId })).result;
    expect(result).toBe('succeeded');
    await expectChecksumOf(username, jobId, bytes);
  });

  it.each(['raw', 'gzip'] as const)(
    '%s: an empty source exports with the CRC32 of its output',
    async (format) => {
      const { username, jobId } = await exportOf(format, Buffer.alloc(0));
      expect((await runToTheEnd({ username, jobId })).result).toBe('succeeded');
      await expectChecksumOf(username, jobId, Buffer.alloc(0));
    },
  );

  it.each(['raw', 'gzip'] as const)(
    '%s: an export created before outputs had checksums still finishes across hand-offs',
    async (format) => {
      const bytes = sources.random();
      const { username, jobId } = await exportOf(format, bytes, { withChecksum: false });
      const { result, invocations } = await runToTheEnd({ username, jobId });
      expect(result).toBe('succeeded');
      expect(invocations).toBeGreaterThanOrEqual(2);
      const { job, output } = await finished(username, jobId, bytes);
      // Its output upload was opened without an algorithm: S3 gives the object its default checksum
      // (CRC64NVME, as AWS does since 2025) and the job reports that one.
      expect(job.checksum).toEqual({
        algorithm: 'CRC64NVME',
        type: 'FULL_OBJECT',
        value: await checksumOf('CRC64NVME', output),
      });
      expect((await testBucket().head(job.key, { checksum: true }))!.checksum).toEqual(job.checksum);
    },
  );
});
