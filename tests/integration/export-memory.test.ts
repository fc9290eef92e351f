import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createGunzip } from 'node:zlib';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { jest } from '@jest/globals';
import { MiB } from '../../common/part-plan.ts';
import { config, EXPORT_WINDOW_LIMITS } from '../../lib/config.ts';
import { GZIP_SLICE_TARGET, STEPS_AHEAD } from '../../lib/exports/gzip-members.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import { createExportJob, runExportAsWorker } from '../support/exports.ts';
import { testBucket } from '../support/s3.ts';
import { testStack } from '../support/stack-env.ts';

/**
 * A gzip export holds a bounded number of slices in memory, whatever the source's size: with both
 * windows at their maximum, a 1 GiB source (more than twice the bound below; about 40 s since the
 * export reads its source with one GET, where moto served each ranged GET by copying the whole
 * object) never costs more than about the source steps that the threads + 2 slices in flight fall in
 * and the one after them, their members, and (uploads + 2) parts: the one being gathered, its
 * concatenation, and the parts uploading (lib/exports/gzip-members.ts).
 */

jest.setTimeout(10 * 60_000);

// V8's gc(), which Jest's workers do not expose: a context made after the flag is set has it.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

const BLOCK = 8 * MiB;
const SOURCE_SIZE = 1024 * MiB;

/** SOURCE_SIZE of a repeated random block, assembled inside S3 (UploadPartCopy), so it never passes through here. */
async function bigSource(key: string): Promise<{ sha256: string; size: number }> {
  const bucket = testBucket();
  const block = randomBytes(BLOCK);
  const blockKey = `${key}.block`;
  await bucket.putObject(blockKey, block);
  const uploadId = await bucket.createMultipartUpload(key);
  const count = SOURCE_SIZE / BLOCK;
  const hash = createHash('sha256');
  for (let partNumber = 1; partNumber <= count; partNumber++) {
    await bucket.uploadPartCopy(key, uploadId, partNumber, { key: blockKey, start: 0, end: BLOCK - 1 });
    hash.update(block);
  }
  await bucket.completeMultipartUpload(key, uploadId, (await bucket.listParts(key, uploadId))!);
  await bucket.deleteObject(blockKey);
  return { sha256: hash.digest('hex'), size: count * BLOCK };
}

/** The output, decompressed as a stream, hashed: the check itself must not hold a gigabyte. */
async function sha256OfGunzipped(key: string): Promise<string> {
  const stack = testStack();
  const s3 = new S3Client({ region: stack.region, endpoint: stack.s3Endpoint, forcePathStyle: true });
  const { Body } = await s3.send(new GetObjectCommand({ Bucket: stack.bucket, Key: key }));
  const hash = createHash('sha256');
  await pipeline(Body as Readable, createGunzip(), hash);
  return hash.digest('hex');
}

// A gigabyte through the emulator: once per CI run (the moto suite) is enough.
const onMoto = testStack().emulator?.s3 === 'localstack' ? it.skip : it;

onMoto(
  `a gzip export of ${SOURCE_SIZE / MiB} MiB with the windows at their maximum stays within its memory bound`,
  async () => {
    const username = `memory-${randomUUID().slice(0, 8)}`;
    const t0 = Date.now();
    const source = await bigSource(`uploads/${username}/big.bin`);
    const t1 = Date.now();
    const jobId = await createExportJob(username, 'big.bin', 'gzip');
    const { partSize } = config().exports;
    config().exports.gzipWindow = {
      threads: EXPORT_WINDOW_LIMITS.gzipThreads,
      uploads: EXPORT_WINDOW_LIMITS.gzipUploads,
    };
    const { threads, uploads } = config().exports.gzipWindow;
    // The steps of the slices in flight and the one read ahead (one slice per step at this part size),
    // their members, and the parts gathering and uploading. A member is counted twice: zlib joins its
    // chunks into one buffer. (Measured as what survives a collection, below, so garbage is not.)
    const inFlight = threads + 2;
    const slice = Math.min(GZIP_SLICE_TARGET, partSize);
    const steps = Math.ceil((inFlight * slice) / partSize) + STEPS_AHEAD;
    const bound = steps * partSize + 2 * inFlight * slice + (uploads + 2) * partSize;
    // The bound depends on the windows and the part size, not on the source, and is below the source's
    // size: within it, the export cannot be holding the file.
    expect(bound).toBeLessThan(source.size);

    collectGarbage();
    const baseline = process.memoryUsage().arrayBuffers;
    // Buffers the export has let go of count until the GC frees them, and when it does depends on the
    // machine's load: the same export peaked at 214-443 MiB of buffers, garbage included. So past half
    // the bound (at most every 50 ms) and always past the bound, a full collection tells what the
    // export still holds; below half the bound, a sample counts as it is.
    let held = 0;
    let seen = 0;
    let collections = 0;
    let lastCollection = 0;
    const sampler = setInterval(() => {
      const buffers = process.memoryUsage().arrayBuffers - baseline;
      seen = Math.max(seen, buffers);
      if (buffers < bound / 2) held = Math.max(held, buffers);
      else if (buffers >= bound || Date.now() - lastCollection >= 50) {
        collectGarbage();
        collections++;
        lastCollection = Date.now();
        held = Math.max(held, process.memoryUsage().arrayBuffers - baseline);
      }
    }, 5);
    try {
      const result = await runExportAsWorker(
        { username, jobId },
        { deadline: Infinity, continueWith: async () => {} },
      );
      expect(result).toBe('succeeded');
    } finally {
      clearInterval(sampler);
    }
    const t2 = Date.now();
    process.stderr.write(`source ${t1 - t0} ms, export ${t2 - t1} ms
`);
    process.stderr.write(
      `gzip export of ${source.size / MiB} MiB: at most ${(held / MiB).toFixed(0)} MiB of buffers held ` +
        `(${(seen / MiB).toFixed(0)} MiB with garbage; ${collections} forced collections), bound ${bound / MiB} MiB ` +
        `(${threads} threads compressing slices of ${GZIP_SLICE_TARGET / MiB} MiB, ${uploads} parts of ${partSize / MiB} MiB uploading)\n`,
    );
    expect(held).toBeLessThan(bound);

    const job = (await jobStore().get(username, jobId))!;
    expect(job).toMatchObject({ status: 'SUCCEEDED', bytesDone: source.size });
    expect(await sha256OfGunzipped(job.key)).toBe(source.sha256);
    await testBucket().deletePrefix(`exports/${username}/`);
    await testBucket().deleteObject(`uploads/${username}/big.bin`);
  },
);
