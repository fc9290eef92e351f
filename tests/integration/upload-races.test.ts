import { randomBytes, randomUUID } from 'node:crypto';
import { MiB } from '../../common/part-plan.ts';
import { HttpError } from '../../lib/http/errors.ts';
import { jobStore, partRecords } from '../../lib/jobs/index.ts';
import {
  abortUpload,
  completeUpload,
  createUpload,
  killUploads,
  recordProgress,
} from '../../lib/uploads/uploads.ts';
import { putPart, testBucket } from '../support/s3.ts';

/**
 * Races between the state changes of one upload, run against DynamoDB Local and moto through the
 * domain functions the handlers call. Whatever the interleaving, exactly one transition wins and
 * S3 ends in the state the winner's status says.
 */

const user = () => `race-${randomUUID().slice(0, 8)}`;

async function readyUpload(username: string, bytes = randomBytes(64)) {
  const created = await createUpload(username, {
    filename: `f-${randomUUID().slice(0, 6)}.bin`,
    size: bytes.length,
  });
  await putPart(created.parts[0]!.url, bytes);
  return { ...created, bytes };
}

const outcome = async <T>(promise: Promise<T>) => {
  try {
    return { ok: true as const, value: await promise };
  } catch (error) {
    if (error instanceof HttpError) return { ok: false as const, status: error.status, code: error.code };
    throw error;
  }
};

/** The job's status, checked against what S3 holds: the file, and whether the multipart upload is open. */
async function settledState(username: string, upload: Awaited<ReturnType<typeof readyUpload>>) {
  const job = (await jobStore().get(username, upload.job.jobId))!;
  const object = await testBucket().getObjectBytes(upload.key);
  const openParts = await testBucket().listParts(upload.key, upload.uploadId);
  return { status: job.status, object, uploadOpen: openParts !== undefined };
}

function expectConsistent(state: Awaited<ReturnType<typeof settledState>>, bytes: Buffer) {
  if (state.status === 'COMPLETED') {
    expect(Buffer.compare(Buffer.from(state.object!), bytes)).toBe(0);
  } else {
    expect(state.status).toBe('ABORTED');
    expect(state.object).toBeUndefined();
  }
  expect(state.uploadOpen).toBe(false);
}

describe('upload state races', () => {
  it('100 concurrent complete-vs-kill pairs each end with one winner and S3 to match', async () => {
    const pairs = 100;
    const users = Array.from({ length: pairs }, user);
    const uploads = [];
    // Prepare in small batches so that the emulator is not the bottleneck being measured.
    for (let i = 0; i < pairs; i += 20) {
      uploads.push(...(await Promise.all(users.slice(i, i + 20).map((name) => readyUpload(name)))));
    }

    // In waves of 10 pairs: 200 requests at once queue for seconds on a slow emulator (LocalStack),
    // and no delay below then decides the order. Within a wave, delay the start of one side,
    // alternating which, so that both orders occur: a completion reads the job and writes
    // COMPLETING, a kill reads its slots and the job first, so a kill started with it may still
    // lose; the delays spread over 0-400 ms.
    const jitter = () => new Promise((resolve) => setTimeout(resolve, Math.random() * 400));
    const results = [];
    for (let wave = 0; wave < pairs; wave += 10) {
      results.push(
        ...(await Promise.all(
          uploads.slice(wave, wave + 10).map(async (upload, offset) => {
            const index = wave + offset;
            const username = users[index]!;
            const [complete, kill] = await Promise.all([
              (index % 2 === 0 ? jitter() : Promise.resolve()).then(() =>
                outcome(completeUpload(username, upload.job.jobId)),
              ),
              (index % 2 === 1 ? jitter() : Promise.resolve()).then(() => outcome(killUploads(username))),
            ]);
            return { username, upload, complete, kill };
          }),
        )),
      );
    }

    let completions = 0;
    let kills = 0;
    for (const { username, upload, complete, kill } of results) {
      const state = await settledState(username, upload);
      expectConsistent(state, upload.bytes);
      const killWon = kill.ok && kill.value.aborted.some((entry) => entry.jobId === upload.job.jobId);
      const completeWon = complete.ok && complete.value.status === 'COMPLETED';
      // Exactly one side won, and the status says which.
      expect([completeWon, killWon].filter(Boolean)).toHaveLength(1);
      expect(state.status).toBe(completeWon ? 'COMPLETED' : 'ABORTED');
      if (completeWon) {
        completions++;
        expect(kill).toEqual({ ok: false, status: 404, code: 'NoUploadFound' });
      } else {
        kills++;
        expect(complete.ok).toBe(false);
      }
    }
    expect(completions + kills).toBe(pairs);
    // Both orders really happened (seen here: 18 to 50 of 100 pairs won by the kill).
    expect(Math.min(completions, kills)).toBeGreaterThan(0);
  });

  it('complete vs complete: one completion, the other sees it finished or in progress', async () => {
    for (let round = 0; round < 20; round++) {
      const username = user();
      const upload = await readyUpload(username);
      const [a, b] = await Promise.all([
        outcome(completeUpload(username, upload.job.jobId)),
        outcome(completeUpload(username, upload.job.jobId)),
      ]);
      const succeeded = [a, b].filter((result) => result.ok);
      expect(succeeded.length).toBeGreaterThanOrEqual(1);
      for (const result of [a, b]) {
        if (!result.ok) expect(result).toEqual({ ok: false, status: 409, code: 'CompletionInProgress' });
      }
      const state = await settledState(username, upload);
      expect(state.status).toBe('COMPLETED');
      expectConsistent(state, upload.bytes);
    }
  });

  it('a completion that crashed after S3 completed (job left COMPLETING) is recorded on the next call', async () => {
    const username = user();
    const upload = await readyUpload(username);
    await jobStore().transition(username, upload.job.jobId, { from: ['UPLOADING'], to: 'COMPLETING' });
    const parts = (await testBucket().listParts(upload.key, upload.uploadId))!;
    await testBucket().completeMultipartUpload(upload.key, upload.uploadId, parts);
    // ...and the Lambda died here, before writing COMPLETED.
    const view = await completeUpload(username, upload.job.jobId);
    expect(view.status).toBe('COMPLETED');
    expectConsistent(await settledState(username, upload), upload.bytes);
  });

  it('an upload removed from S3 under a live job fails it with UploadGone', async () => {
    const username = user();
    const upload = await readyUpload(username);
    await testBucket().abortMultipartUpload(upload.key, upload.uploadId);
    expect(await outcome(completeUpload(username, upload.job.jobId))).toEqual({
      ok: false,
      status: 409,
      code: 'UploadGone',
    });
    const job = (await jobStore().get(username, upload.job.jobId))!;
    expect(job.status).toBe('FAILED');
    // The failed job freed its file: a new upload of the same name may start.
    await expect(createUpload(username, { filename: upload.job.filename, size: 1 })).resolves.toBeDefined();
  });

  it('kill vs kill: the upload is aborted once, the other kill finds nothing', async () => {
    for (let round = 0; round < 10; round++) {
      const username = user();
      const upload = await readyUpload(username);
      const [a, b] = await Promise.all([outcome(killUploads(username)), outcome(killUploads(username))]);
      const winners = [a, b].filter((result) => result.ok);
      expect(winners).toHaveLength(1);
      expect([a, b].filter((result) => !result.ok)).toEqual([
        { ok: false, status: 404, code: 'NoUploadFound' },
      ]);
      const state = await settledState(username, upload);
      expect(state.status).toBe('ABORTED');
      expectConsistent(state, upload.bytes);
    }
  });

  it('abort by id vs complete: one wins, S3 matches', async () => {
    for (let round = 0; round < 10; round++) {
      const username = user();
      const upload = await readyUpload(username);
      await Promise.all([
        outcome(abortUpload(username, upload.job.jobId)),
        outcome(completeUpload(username, upload.job.jobId)),
      ]);
      expectConsistent(await settledState(username, upload), upload.bytes);
    }
  });

  it('progress recorded concurrently for the same and different parts counts each part once', async () => {
    const username = user();
    const size = 20 * 5 * MiB;
    const created = await createUpload(username, { filename: 'counted.bin', size, partSize: 5 * MiB });
    const parts = Array.from({ length: 20 }, (_, index) => ({
      partNumber: index + 1,
      etag: `"etag-${index + 1}"`,
      size: 5 * MiB,
    }));
    // Every part reported three times, all at once.
    await Promise.all(
      [...parts, ...parts, ...parts].map((part) => recordProgress(username, created.job.jobId, [part])),
    );
    const job = (await jobStore().get(username, created.job.jobId))!;
    expect({ partsDone: job.partsDone, bytesDone: job.bytesDone }).toEqual({
      partsDone: 20,
      bytesDone: size,
    });
    expect(await partRecords().list(created.job.jobId)).toHaveLength(20);

    // A part sent again (new ETag) replaces its record without being counted twice.
    await recordProgress(username, created.job.jobId, [
      { partNumber: 1, etag: '"etag-again"', size: 5 * MiB },
    ]);
    const after = (await jobStore().get(username, created.job.jobId))!;
    expect({ partsDone: after.partsDone, bytesDone: after.bytesDone }).toEqual({
      partsDone: 20,
      bytesDone: size,
    });
    expect((await partRecords().list(created.job.jobId))[0]!.etag).toBe('"etag-again"');
    await abortUpload(username, created.job.jobId);
  });

  it('progress after a kill is refused and does not change the counters', async () => {
    const username = user();
    const created = await createUpload(username, { filename: 'late.bin', size: 10 * MiB, partSize: 5 * MiB });
    await killUploads(username);
    const late = await outcome(
      recordProgress(username, created.job.jobId, [{ partNumber: 1, etag: '"x"', size: 5 * MiB }]),
    );
    expect(late).toEqual({ ok: false, status: 409, code: 'JobNotActive' });
    expect((await jobStore().get(username, created.job.jobId))!.partsDone).toBe(0);
  });
});

describe('progress at S3 scale', () => {
  it('records 10,000 parts (1,000 per request) in DynamoDB Local, one item per part', async () => {
    const username = user();
    const partSize = 5 * MiB;
    const size = 10_000 * partSize;
    const created = await createUpload(username, { filename: 'huge.bin', size, partSize });
    expect(created.partCount).toBe(10_000);
    expect(created.parts).toHaveLength(100);
    for (let start = 1; start <= 10_000; start += 1000) {
      const batch = Array.from({ length: 1000 }, (_, index) => ({
        partNumber: start + index,
        etag: `"${randomBytes(16).toString('hex')}"`,
        size: partSize,
      }));
      await recordProgress(username, created.job.jobId, batch);
    }
    const job = (await jobStore().get(username, created.job.jobId))!;
    expect({ partsDone: job.partsDone, bytesDone: job.bytesDone }).toEqual({
      partsDone: 10_000,
      bytesDone: size,
    });
    const parts = await partRecords().list(created.job.jobId);
    expect(parts).toHaveLength(10_000);
    expect(parts[9_999]!.partNumber).toBe(10_000);
    await abortUpload(username, created.job.jobId);
  }, 180_000);
});
