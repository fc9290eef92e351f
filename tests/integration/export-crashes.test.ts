import { randomBytes, randomUUID } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { jest } from '@jest/globals';
import { MiB } from '../../common/part-plan.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import type { FileStore } from '../../lib/storage/file-store.ts';
import { transferFileStore } from '../../lib/storage/index.ts';
import { expectSameBytes } from '../support/bytes.ts';
import { createExportJob, expireLease, exportLeftovers, runToTheEnd } from '../support/exports.ts';
import { testBucket } from '../support/s3.ts';

/**
 * An export worker can die between any S3 call and the job write that records it. Each case lets
 * the real S3 call happen, then crashes the worker right after it: either it throws (an error the
 * worker sees) or it never returns (the Lambda was killed: no code of the worker runs again). A
 * new invocation after the lease ran out must then finish the export from whatever S3 holds:
 * SUCCEEDED, the output byte for byte, no open multipart upload and nothing else under the folder.
 */

type Step =
  | 'createMultipartUpload'
  | 'uploadPartCopy'
  | 'uploadPart'
  | 'listParts'
  | 'completeMultipartUpload'
  | 'putObject';
type Crash = 'throw' | 'hang';

const user = () => `crash-${randomUUID().slice(0, 8)}`;

/** Lets the `nth` call of a FileStore method reach S3, then crashes the caller; resolves when it did. */
function crashAfter(step: Step, nth: number, crash: Crash): Promise<void> {
  const store = transferFileStore();
  const real = (store[step] as (...args: unknown[]) => Promise<unknown>).bind(store);
  let calls = 0;
  return new Promise((crashed) => {
    jest.spyOn(store as FileStore, step).mockImplementation((async (...args: unknown[]) => {
      const result = await real(...args);
      if (++calls !== nth) return result;
      crashed();
      if (crash === 'throw') throw new Error(`injected crash after ${step}`);
      return new Promise(() => {});
    }) as never);
  });
}

const cases: Array<{ format: 'raw' | 'gzip'; step: Step; nth: number; size: number }> = [
  { format: 'raw', step: 'createMultipartUpload', nth: 1, size: 11 * MiB + 123 },
  { format: 'raw', step: 'uploadPartCopy', nth: 2, size: 11 * MiB + 123 },
  { format: 'raw', step: 'listParts', nth: 1, size: 11 * MiB + 123 },
  { format: 'raw', step: 'completeMultipartUpload', nth: 1, size: 11 * MiB + 123 },
  { format: 'raw', step: 'putObject', nth: 1, size: 0 },
  { format: 'gzip', step: 'createMultipartUpload', nth: 1, size: 11 * MiB + 123 },
  { format: 'gzip', step: 'uploadPart', nth: 2, size: 11 * MiB + 123 },
  { format: 'gzip', step: 'listParts', nth: 1, size: 11 * MiB + 123 },
  { format: 'gzip', step: 'completeMultipartUpload', nth: 1, size: 11 * MiB + 123 },
  { format: 'gzip', step: 'putObject', nth: 1, size: 0 },
];

afterEach(() => jest.restoreAllMocks());

describe.each(['throw', 'hang'] as const)('an export worker that crashes (%s)', (crash) => {
  it.each(cases)(
    '$format: after $step (call $nth), a new invocation finishes it',
    async ({ format, step, nth, size }) => {
      const username = user();
      const bytes = randomBytes(size);
      await testBucket().putObject(`uploads/${username}/src.bin`, bytes);
      const jobId = await createExportJob(username, 'src.bin', format);

      const crashed = crashAfter(step, nth, crash);
      const first = runToTheEnd({ username, jobId });
      if (crash === 'throw') {
        // The worker sees the error: its first stop since its last part, so it restarts itself (the
        // next invocation of runToTheEnd) from its checkpoint.
        expect((await first).result).toBe('succeeded');
        expect((await jobStore().get(username, jobId))!.restarts).toBe(1);
      } else {
        // A hung worker never returns: go on once it crashed. A new invocation after its lease ran out.
        await Promise.race([crashed, first]);
        await crashed;
        jest.restoreAllMocks();
        await expireLease(username, jobId);
        expect((await runToTheEnd({ username, jobId })).result).toBe('succeeded');
      }

      const job = (await jobStore().get(username, jobId))!;
      expect(job).toMatchObject({ status: 'SUCCEEDED', bytesDone: size });
      const output = Buffer.from((await testBucket().getObjectBytes(job.key))!);
      expectSameBytes(format === 'gzip' ? gunzipSync(output) : output, bytes);
      expect(await exportLeftovers(username, jobId)).toEqual({ objects: [job.key], openUploads: [] });
      expectSameBytes((await testBucket().getObjectBytes(`uploads/${username}/src.bin`))!, bytes);
    },
  );
});
