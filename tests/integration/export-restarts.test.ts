import { randomBytes, randomUUID } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { jest } from '@jest/globals';
import { config } from '../../lib/config.ts';
import { cancelExport, type WorkerEvent } from '../../lib/exports/exports.ts';
import { jobStore, workerLeases } from '../../lib/jobs/index.ts';
import { metrics } from '../../lib/metrics.ts';
import type { FileStore } from '../../lib/storage/file-store.ts';
import { fileStore, transferFileStore } from '../../lib/storage/index.ts';
import { expectSameBytes } from '../support/bytes.ts';
import { createExportJob, exportLeftovers, runExportAsWorker, runToTheEnd } from '../support/exports.ts';
import { janitorFor } from '../support/janitor.ts';
import { testBucket } from '../support/s3.ts';

/**
 * An export worker interrupted by an error a retry may get past (S3's 500, a dropped connection)
 * restarts itself from its checkpoint after EXPORT_RESTART_DELAY_SECONDS (1 s in the test stack),
 * the first time since its last finished part; a second stop in a row is left to the janitor, which
 * gives up after JANITOR_MAX_EXPORT_RESTARTS stops in a row. Workers run in-process against the real
 * emulators; the faults are injected into the worker's S3 store.
 */

const user = () => `restart-${randomUUID().slice(0, 8)}`;
const partSize = () => config().exports.partSize;

afterEach(() => jest.restoreAllMocks());

async function newExport(format: 'raw' | 'gzip', parts = 3) {
  const username = user();
  const bytes = randomBytes(parts * partSize() - 1234);
  await testBucket().putObject(`uploads/${username}/src.bin`, bytes);
  const jobId = await createExportJob(username, 'src.bin', format);
  return { username, jobId, bytes, format };
}

async function expectExported({ username, jobId, bytes, format }: Awaited<ReturnType<typeof newExport>>) {
  const job = (await jobStore().get(username, jobId))!;
  expect(job.status).toBe('SUCCEEDED');
  const output = Buffer.from((await testBucket().getObjectBytes(job.key))!);
  expectSameBytes(format === 'gzip' ? gunzipSync(output) : output, bytes);
  expect(await exportLeftovers(username, jobId)).toEqual({ objects: [job.key], openUploads: [] });
  return job;
}

const s3InternalError = () =>
  Object.assign(new Error('We encountered an internal error. Please try again.'), {
    name: 'InternalError',
    $metadata: { httpStatusCode: 500 },
  });

/**
 * Makes the worker's part calls (UploadPartCopy for raw, UploadPart for gzip) fail as `failing`
 * says, by the part's number and how many times that part was tried before; the others reach S3.
 */
function partFaults(format: 'raw' | 'gzip', failing: (partNumber: number, tries: number) => boolean) {
  const store = transferFileStore() as FileStore;
  const tries = new Map<number, number>();
  const failed: number[] = [];
  const failedAt: number[] = [];
  const method = format === 'raw' ? 'uploadPartCopy' : 'uploadPart';
  const real = (store[method] as (...args: unknown[]) => Promise<unknown>).bind(store);
  jest.spyOn(store, method).mockImplementation((async (...args: unknown[]) => {
    const partNumber = args[2] as number;
    const before = tries.get(partNumber) ?? 0;
    tries.set(partNumber, before + 1);
    if (failing(partNumber, before)) {
      failed.push(partNumber);
      failedAt.push(Date.now());
      throw s3InternalError();
    }
    return real(...args);
  }) as never);
  return Object.assign(failed, { at: failedAt });
}

describe.each(['raw', 'gzip'] as const)('a %s export worker', (format) => {
  it('meeting a passing fault restarts itself from its checkpoint after the pause, and finishes', async () => {
    const job = await newExport(format);
    const { username, jobId } = job;
    const failed = partFaults(format, (partNumber, tries) => partNumber === 2 && tries === 0);
    const counted = jest.spyOn(metrics, 'addMetric');

    const restarted: { event: WorkerEvent; pausedMs: number; lease: number; token?: string }[] = [];
    let event: WorkerEvent | undefined = { username, jobId };
    const results: string[] = [];
    while (event) {
      let next: WorkerEvent | undefined;
      results.push(
        await runExportAsWorker(event, {
          deadline: Infinity,
          continueWith: async (continuation) => {
            next = continuation;
            const held = (await jobStore().get(username, jobId))!;
            restarted.push({
              event: continuation,
              pausedMs: Date.now() - failed.at[0]!,
              lease: held.leaseUntil! - Date.now() / 1000,
              ...(held.workerToken ? { token: held.workerToken } : {}),
            });
          },
        }),
      );
      event = next;
    }

    expect([...failed]).toEqual([2]);
    expect(results).toEqual(['restarted', 'succeeded']);
    expect(restarted).toHaveLength(1);
    const [restart] = restarted;
    // Handed to the new invocation by token, under a lease that outlasted the pause.
    expect(restart!.event).toEqual({ username, jobId, token: restart!.token });
    expect(restart!.lease).toBeGreaterThan(config().exports.leaseSeconds - 30);
    // Not at once: EXPORT_RESTART_DELAY_SECONDS (1 s here) after the fault.
    expect(config().exports.restartDelaySeconds).toBe(1);
    expect(restart!.pausedMs).toBeGreaterThanOrEqual(990);
    expect(counted.mock.calls.filter(([name]) => name === 'ExportsRestarted')).toHaveLength(1);
    const done = await expectExported(job);
    expect(done.restarts).toBe(1);
    // The restarted worker finished parts: the stops in a row start again from zero.
    expect(done.restartsSinceProgress ?? 0).toBe(0);
  });

  it('meeting a fault that persists restarts once, then leaves it to the janitor, which gives up after its limit', async () => {
    const job = await newExport(format);
    const { username, jobId } = job;
    const failed = partFaults(format, (partNumber) => partNumber === 2);

    // Part 1, a hand-off; part 2 fails, a restart; part 2 fails again: the lease is given up.
    const first = await runToTheEnd({ username, jobId });
    expect(first).toEqual({ result: 'interrupted', invocations: 3 });
    let stopped = (await jobStore().get(username, jobId))!;
    expect(stopped).toMatchObject({
      status: 'RUNNING',
      restarts: 1,
      restartsSinceProgress: 1,
      checkpoint: { partNumber: 2 },
    });
    expect(stopped.leaseUntil).toBeLessThan(Date.now() / 1000);

    // The janitor restarts it twice more (3 stops in a row), then fails it.
    for (const inARow of [2, 3]) {
      const { report, started } = await janitorFor(username, { maxExportRestarts: 3 });
      expect(report.exportsRestarted).toBe(1);
      expect(await runToTheEnd(started[0]!)).toEqual({ result: 'interrupted', invocations: 1 });
      stopped = (await jobStore().get(username, jobId))!;
      expect(stopped).toMatchObject({ status: 'RUNNING', restartsSinceProgress: inARow });
    }
    const { report } = await janitorFor(username, { maxExportRestarts: 3 });
    expect(report).toMatchObject({ exportsRestarted: 0, exportsFailed: 1 });
    const failedJob = (await jobStore().get(username, jobId))!;
    expect(failedJob.status).toBe('FAILED');
    expect(failedJob.error).toBe('the export worker stopped 3 times in a row without finishing a part');
    expect(await exportLeftovers(username, jobId)).toEqual({ objects: [], openUploads: [] });
    expect([...failed]).toEqual([2, 2, 2, 2]);
  });
});

it('an export that meets a fault at every part finishes: only stops without progress count toward the limit', async () => {
  const job = await newExport('raw', 6);
  const { username, jobId } = job;
  const failed = partFaults('raw', (_, tries) => tries === 0);
  const maxExportRestarts = config().janitor.maxExportRestarts;

  // One part per invocation (runToTheEnd leaves each no time): every part fails once, then lands.
  const { result } = await runToTheEnd({ username, jobId });
  expect(result).toBe('succeeded');
  expect([...failed]).toEqual([1, 2, 3, 4, 5, 6]);
  const done = await expectExported(job);
  // More restarts in all than the janitor allows in a row, and none of them left to the janitor.
  expect(done.restarts).toBe(6);
  expect(done.restarts).toBeGreaterThan(maxExportRestarts);
  expect(done.restartsSinceProgress ?? 0).toBe(0);
});

it('a kill while the worker pauses to restart: the restarted worker finishes the cancel, nothing is left', async () => {
  const job = await newExport('raw');
  const { username, jobId } = job;
  partFaults('raw', (partNumber) => partNumber === 2);

  const { result } = await runToTheEnd({ username, jobId }, async (invocation) => {
    // Invocation 2 fails at part 2 and pauses; the third is the restart it starts.
    if (invocation === 3) expect((await cancelExport(username, jobId)).job.status).toBe('CANCELLING');
  });
  expect(result).toBe('cancelled');
  expect((await jobStore().get(username, jobId))!.status).toBe('CANCELLED');
  expect(await exportLeftovers(username, jobId)).toEqual({ objects: [], openUploads: [] });
});

it('a janitor run during the pause leaves the job alone: the lease covers the pause', async () => {
  const job = await newExport('raw');
  const { username, jobId } = job;
  partFaults('raw', (partNumber, tries) => partNumber === 2 && tries === 0);

  let next: WorkerEvent | undefined;
  const first = runExportAsWorker(
    { username, jobId },
    {
      deadline: Infinity,
      continueWith: async (event) => {
        next = event;
      },
    },
  );
  // The restart is recorded before the pause.
  for (let tries = 0; !(await jobStore().get(username, jobId))!.restarts; tries++) {
    if (tries > 200) throw new Error('the worker never recorded its restart');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  expect(next).toBeUndefined();
  const { report, started } = await janitorFor(username, { maxExportRestarts: 3 });
  expect(report.exportsRestarted).toBe(0);
  expect(started).toEqual([]);

  expect(await first).toBe('restarted');
  expect((await runToTheEnd(next!)).result).toBe('succeeded');
  expect((await expectExported(job)).restarts).toBe(1);
});

it('with too little time left for the pause, the worker gives up its lease to the janitor at once', async () => {
  const job = await newExport('raw');
  const { username, jobId } = job;
  partFaults('raw', (partNumber, tries) => partNumber === 2 && tries === 0);

  const result = await runExportAsWorker(
    { username, jobId },
    {
      deadline: Infinity,
      continueWith: async () => {
        throw new Error('no restart expected');
      },
      remainingMs: () => 10_000,
    },
  );
  expect(result).toBe('interrupted');
  const stopped = (await jobStore().get(username, jobId))!;
  expect(stopped.restarts).toBeUndefined();
  expect(stopped.leaseUntil).toBeLessThan(Date.now() / 1000);

  const { started } = await janitorFor(username, { maxExportRestarts: 3 });
  expect((await runToTheEnd(started[0]!)).result).toBe('succeeded');
  expect((await expectExported(job)).restarts).toBe(1);
});

/**
 * The worker's bookkeeping around a stop meets an outage longer than the SDK's own retries (about
 * 6 s): it is tried again with backoff (lib/exports/persistently.ts) instead of leaving the job to
 * wait for its lease to run out and for the janitor.
 */
describe('bookkeeping through an outage', () => {
  const refused = () =>
    Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8000'), { code: 'ECONNREFUSED' });

  /**
   * Spies on `object[method]`: calls for which `when` holds fail `times` times, then reach the
   * emulator. Returns the calls' arguments.
   */
  function failing<T extends object>(
    object: T,
    method: keyof T & string,
    when: (...args: unknown[]) => boolean,
    times: number,
    landFirst = false,
  ) {
    const real = (object[method] as (...args: unknown[]) => Promise<unknown>).bind(object);
    let failures = 0;
    const calls: unknown[][] = [];
    jest.spyOn(object, method as never).mockImplementation((async (...args: unknown[]) => {
      calls.push(args);
      if (failures < times && when(...args)) {
        failures++;
        // landFirst: the write lands, and only its answer is lost.
        if (landFirst) await real(...args);
        throw refused();
      }
      return real(...args);
    }) as never);
    return calls;
  }

  const isRestart = (...args: unknown[]) => (args[3] as { restart?: boolean }).restart === true;

  it('records its restart once DynamoDB answers again, and the export finishes', async () => {
    const job = await newExport('raw');
    partFaults('raw', (partNumber, tries) => partNumber === 2 && tries === 0);
    const heartbeat = failing(workerLeases(), 'heartbeat', isRestart, 3);
    const { result } = await runToTheEnd({ username: job.username, jobId: job.jobId });
    expect(result).toBe('succeeded');
    expect(heartbeat.filter((call) => isRestart(...call))).toHaveLength(4);
    expect((await expectExported(job)).restarts).toBe(1);
  });

  it('goes on with its restart when the write landed and only its answer was lost', async () => {
    const job = await newExport('raw');
    partFaults('raw', (partNumber, tries) => partNumber === 2 && tries === 0);
    failing(workerLeases(), 'heartbeat', isRestart, 1, true);
    const { result } = await runToTheEnd({ username: job.username, jobId: job.jobId });
    expect(result).toBe('succeeded');
    expect((await expectExported(job)).restarts).toBe(1);
  });

  it('finishes a cancel whose cleanup meets an S3 outage', async () => {
    const { username, jobId } = await newExport('raw');
    const abort = failing(fileStore(), 'abortMultipartUpload', () => true, 2);
    const { result } = await runToTheEnd({ username, jobId }, async (invocation) => {
      // Invocation 1 handed off under a live lease: the cancel is the next invocation's to finish.
      if (invocation === 2) expect((await cancelExport(username, jobId)).job.status).toBe('CANCELLING');
    });
    expect(result).toBe('cancelled');
    expect(abort.length).toBeGreaterThanOrEqual(3);
    expect((await jobStore().get(username, jobId))!.status).toBe('CANCELLED');
    expect(await exportLeftovers(username, jobId)).toEqual({ objects: [], openUploads: [] });
  });

  it('records a failure once DynamoDB answers again, and leaves nothing behind', async () => {
    const { username, jobId } = await newExport('raw');
    const store = transferFileStore() as FileStore;
    jest.spyOn(store, 'uploadPartCopy').mockImplementation(async () => {
      throw Object.assign(new Error('The specified key does not exist.'), { name: 'NoSuchKey' });
    });
    const toFailed = (...args: unknown[]) => (args[2] as { to: string }).to === 'FAILED';
    const transition = failing(jobStore(), 'transition', toFailed, 2);
    const { result } = await runToTheEnd({ username, jobId });
    expect(result).toBe('failed');
    expect(transition.filter((call) => toFailed(...call))).toHaveLength(3);
    expect((await jobStore().get(username, jobId))!).toMatchObject({
      status: 'FAILED',
      error: 'the source file was deleted during the export',
    });
    expect(await exportLeftovers(username, jobId)).toEqual({ objects: [], openUploads: [] });
  });
});
