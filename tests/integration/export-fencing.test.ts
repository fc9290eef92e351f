import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes, randomUUID } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { jest } from '@jest/globals';
import { MiB } from '../../common/part-plan.ts';
import { cleanUpOutput, finishCancel, killExports } from '../../lib/exports/exports.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import type { JobRecord } from '../../lib/jobs/jobs-table.ts';
import { transferFileStore } from '../../lib/storage/index.ts';
import { expectSameBytes } from '../support/bytes.ts';
import {
  createExportJob,
  expireLease,
  exportLeftovers,
  runExportAsWorker,
  runToTheEnd,
} from '../support/exports.ts';
import { janitorFor, janitorOver } from '../support/janitor.ts';
import { testBucket } from '../support/s3.ts';

/**
 * Two export workers on one job: the first one's step outlasts its lease (it is paused inside an S3
 * call), the janitor starts a second one, and then the first one wakes up. Whatever order they end
 * in, the job ends SUCCEEDED with its output byte for byte, or FAILED / CANCELLED with nothing left;
 * never SUCCEEDED without its object. Workers run in-process, told apart by an AsyncLocalStorage
 * name, so the test decides exactly where each one pauses; S3 and DynamoDB are the real emulators.
 */

const user = () => `fence-${randomUUID().slice(0, 8)}`;
const worker = new AsyncLocalStorage<string>();

type Step = 'uploadPartCopy' | 'uploadPart' | 'listParts' | 'completeMultipartUpload';

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const restores: Array<() => void> = [];
afterEach(() => {
  while (restores.length) restores.pop()!();
  jest.restoreAllMocks();
});

/**
 * Pauses worker `who` in its `nth` call of a FileStore method, before or after the real S3 call.
 * `release()` lets it go on; `release(error)` makes the call fail instead (after the pause).
 */
function pauseAt(step: Step, who: string, nth: number, when: 'before' | 'after') {
  const store = transferFileStore() as unknown as Record<Step, (...args: unknown[]) => Promise<unknown>>;
  const own = Object.hasOwn(store, step);
  const inner = store[step];
  const reached = deferred<void>();
  const released = deferred<Error | undefined>();
  let calls = 0;
  store[step] = async function (this: unknown, ...args: unknown[]) {
    if (worker.getStore() !== who || ++calls !== nth) return inner.apply(this, args);
    const result = when === 'after' ? await inner.apply(this, args) : undefined;
    reached.resolve();
    const error = await released.promise;
    if (error) throw error;
    return when === 'before' ? inner.apply(this, args) : result;
  };
  restores.push(() => {
    if (own) store[step] = inner;
    else delete (store as Partial<typeof store>)[step];
  });
  return { reached: reached.promise, release: (error?: Error) => released.resolve(error) };
}

async function newExport(format: 'raw' | 'gzip', size = 12 * MiB + 321) {
  const username = user();
  const bytes = randomBytes(size);
  await testBucket().putObject(`uploads/${username}/src.bin`, bytes);
  const jobId = await createExportJob(username, 'src.bin', format);
  return { username, jobId, bytes, format };
}

/** SUCCEEDED with the output byte for byte, or FAILED/CANCELLED with nothing left; returns the status. */
async function expectConsistent({ username, jobId, bytes, format }: Awaited<ReturnType<typeof newExport>>) {
  const job = (await jobStore().get(username, jobId))!;
  const left = await exportLeftovers(username, jobId);
  if (job.status === 'SUCCEEDED') {
    expect(left).toEqual({ objects: [job.key], openUploads: [] });
    const output = Buffer.from((await testBucket().getObjectBytes(job.key))!);
    expectSameBytes(format === 'gzip' ? gunzipSync(output) : output, bytes);
  } else {
    expect(['FAILED', 'CANCELLED']).toContain(job.status);
    expect(left).toEqual({ objects: [], openUploads: [] });
  }
  return job;
}

const partStep = (format: 'raw' | 'gzip'): Step => (format === 'raw' ? 'uploadPartCopy' : 'uploadPart');

describe.each(['raw', 'gzip'] as const)('a %s export worker that outlasts its lease', (format) => {
  it('wakes up after its successor finished: it leaves the finished output alone', async () => {
    const job = await newExport(format);
    const { username, jobId } = job;
    const first = pauseAt(partStep(format), 'A', 2, 'before');
    const a = worker.run('A', () => runToTheEnd({ username, jobId }));
    await first.reached;

    await expireLease(username, jobId);
    const { report, started } = await janitorFor(username);
    expect(report.exportsRestarted).toBe(1);
    expect(started).toEqual([{ username, jobId }]);
    expect((await worker.run('B', () => runToTheEnd(started[0]!))).result).toBe('succeeded');

    first.release();
    expect((await a).result).toBe('skipped');
    expect((await expectConsistent(job)).status).toBe('SUCCEEDED');
  });

  it.each([
    ['its part lands', undefined],
    [
      'its part fails in S3',
      Object.assign(new Error('We encountered an internal error'), { name: 'InternalError' }),
    ],
  ])('wakes up while its successor runs (%s): the successor finishes', async (_, error) => {
    const job = await newExport(format);
    const { username, jobId } = job;
    const first = pauseAt(partStep(format), 'A', 2, 'before');
    const a = worker.run('A', () => runToTheEnd({ username, jobId }));
    await first.reached;

    await expireLease(username, jobId);
    const { started } = await janitorFor(username);
    // The successor resumes at part 2 and pauses before part 3.
    const second = pauseAt(partStep(format), 'B', 2, 'before');
    const b = worker.run('B', () => runToTheEnd(started[0]!));
    await second.reached;

    first.release(error);
    expect((await a).result).toBe('skipped');
    expect((await jobStore().get(username, jobId))!.status).toBe('RUNNING');
    second.release();
    expect((await b).result).toBe('succeeded');
    expect((await expectConsistent(job)).status).toBe('SUCCEEDED');
  });

  it.each(['first', 'last'] as const)(
    'paused between CompleteMultipartUpload and SUCCEEDED, it wakes up %s: SUCCEEDED, output intact',
    async (order) => {
      const job = await newExport(format);
      const { username, jobId } = job;
      const first = pauseAt('completeMultipartUpload', 'A', 1, 'after');
      const a = worker.run('A', () => runToTheEnd({ username, jobId }));
      await first.reached;

      await expireLease(username, jobId);
      const { started } = await janitorFor(username);
      if (order === 'last') {
        expect((await worker.run('B', () => runToTheEnd(started[0]!))).result).toBe('succeeded');
        first.release();
        expect((await a).result).toBe('skipped');
      } else {
        // The successor has claimed the job and is about to look for the multipart upload.
        const second = pauseAt('listParts', 'B', 1, 'before');
        const b = worker.run('B', () => runToTheEnd(started[0]!));
        await second.reached;
        first.release();
        expect((await a).result).toBe('skipped');
        second.release();
        expect((await b).result).toBe('succeeded');
      }
      expect((await expectConsistent(job)).status).toBe('SUCCEEDED');
    },
  );
});

describe('fencing of the final transitions', () => {
  it("a hand-off whose self-invoke fails (and its restart's too) leaves the job RUNNING, its lease given up, for the janitor", async () => {
    const job = await newExport('raw');
    const { username, jobId } = job;
    const result = await runExportAsWorker(
      { username, jobId },
      {
        deadline: 0,
        continueWith: async () => {
          throw Object.assign(new Error('Rate exceeded'), { name: 'TooManyRequestsException' });
        },
        // Time for a restart (its pause and margin), and for trying each invoke for 6.5 s.
        remainingMs: () => 16_500,
      },
    );
    expect(result).toBe('interrupted');
    const handedOff = (await jobStore().get(username, jobId))!;
    expect(handedOff).toMatchObject({
      status: 'RUNNING',
      partsDone: 1,
      restarts: 1,
      restartsSinceProgress: 1,
    });
    expect(handedOff.leaseUntil).toBeLessThan(Date.now() / 1000);
    expect((await exportLeftovers(username, jobId)).openUploads).toHaveLength(1);

    // No aging: the janitor sees at once that nobody holds the job.
    const { report, started } = await janitorFor(username);
    expect(report.exportsRestarted).toBe(1);
    expect((await runToTheEnd(started[0]!)).result).toBe('succeeded');
    // The worker's own restart (whose invoke failed too), then the janitor's.
    expect(await expectConsistent(job)).toMatchObject({ status: 'SUCCEEDED', restarts: 2 });
  });

  it("the janitor does not fail an export that a new worker claimed since the janitor's scan", async () => {
    const job = await newExport('raw');
    const { username, jobId } = job;
    await runExportAsWorker({ username, jobId }, { deadline: 0, continueWith: async () => {} }); // hand-off lost
    await expireLease(username, jobId);

    // The janitor reads the job with its dead worker's token; then a restarted worker claims it.
    const store = jobStore();
    const live = pauseAt('uploadPartCopy', 'C', 1, 'before');
    let c: Promise<Awaited<ReturnType<typeof runToTheEnd>>> | undefined;
    const report = await janitorOver(username, {
      settings: { prefixes: [], maxExportRestarts: 0 },
      scan: async (theirs) => {
        const seen = await theirs();
        c = worker.run('C', () => runToTheEnd({ username, jobId }));
        await live.reached;
        return seen;
      },
    });
    expect(report.exportsFailed).toBe(0);
    expect((await store.get(username, jobId))!.status).toBe('RUNNING');

    live.release();
    expect((await c!).result).toBe('succeeded');
    expect((await expectConsistent(job)).status).toBe('SUCCEEDED');
  });

  it('a kill that lands after CompleteMultipartUpload wins: CANCELLED, the output removed', async () => {
    const job = await newExport('gzip');
    const { username, jobId } = job;
    const paused = pauseAt('completeMultipartUpload', 'A', 1, 'after');
    const a = worker.run('A', () => runToTheEnd({ username, jobId }));
    await paused.reached;
    expect((await killExports(username)).cancelled).toMatchObject([{ jobId, status: 'CANCELLING' }]);
    paused.release();
    expect((await a).result).toBe('cancelled');
    expect((await expectConsistent(job)).status).toBe('CANCELLED');
  });

  it('cleanup never touches a SUCCEEDED export, even when asked with a stale record', async () => {
    const job = await newExport('raw', 6 * MiB);
    const { username, jobId } = job;
    expect((await runToTheEnd({ username, jobId })).result).toBe('succeeded');
    const done = (await jobStore().get(username, jobId))!;
    const stale: JobRecord = { ...done, status: 'CANCELLING' };
    await finishCancel(stale);
    await cleanUpOutput(stale);
    expect((await expectConsistent(job)).status).toBe('SUCCEEDED');
  });
});
