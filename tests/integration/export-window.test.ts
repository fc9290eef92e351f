import { randomBytes, randomUUID } from 'node:crypto';
import { gunzipSync, inflateRawSync } from 'node:zlib';
import { jest } from '@jest/globals';
import { MiB } from '../../common/part-plan.ts';
import { config } from '../../lib/config.ts';
import type { WorkerEvent } from '../../lib/exports/exports.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import type { FileStore } from '../../lib/storage/file-store.ts';
import { transferFileStore } from '../../lib/storage/index.ts';
import { expectSameBytes } from '../support/bytes.ts';
import {
  createExportJob,
  expireLease,
  exportLeftovers,
  runExportAsWorker,
  runToTheEnd,
} from '../support/exports.ts';
import { testBucket } from '../support/s3.ts';

/**
 * A raw export copies several parts at once (a window of EXPORT_COPY_WINDOW UploadPartCopy calls),
 * so parts finish out of order, and a worker that stops (hands off, crashes, hangs) may leave parts
 * above its checkpoint. The checkpoint must be the end of the lowest contiguous run of finished
 * parts, so that the next worker resumes exactly and the output is byte-identical.
 */

const user = () => `window-${randomUUID().slice(0, 8)}`;
const partSize = () => config().exports.partSize;

/** A source of `parts` whole parts and a tail, uploaded as the user's file; its export job. */
async function exportOf(format: 'raw' | 'gzip', parts = 7) {
  const username = user();
  const bytes = randomBytes(parts * partSize() + 4321);
  await testBucket().putObject(`uploads/${username}/src.bin`, bytes);
  const jobId = await createExportJob(username, 'src.bin', format);
  return { username, jobId, bytes };
}

type Gate = { opened: Promise<void>; open: () => void };
const gate = (): Gate => {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
};

/**
 * Holds part 2's copy back until parts 3 and 4 (its neighbours above) have reached S3, then lets
 * `part2` decide what happens to it; every other call goes straight through. Records the order in
 * which parts finished.
 */
function holdPartTwo(part2: (copy: () => Promise<unknown>) => Promise<unknown>) {
  const store = transferFileStore();
  const real = store.uploadPartCopy.bind(store);
  const finished: number[] = [];
  const neighbours = [gate(), gate()];
  jest.spyOn(store as FileStore, 'uploadPartCopy').mockImplementation((async (...args) => {
    const partNumber = args[2];
    const copy = async () => {
      const result = await real(...args);
      finished.push(partNumber);
      return result;
    };
    if (partNumber === 2) {
      await Promise.all(neighbours.map((neighbour) => neighbour.opened));
      return part2(copy);
    }
    const result = await copy();
    if (partNumber === 3 || partNumber === 4) neighbours[partNumber - 3]!.open();
    return result;
  }) as FileStore['uploadPartCopy']);
  return finished;
}

async function expectExported(username: string, jobId: string, bytes: Buffer) {
  const job = (await jobStore().get(username, jobId))!;
  expect(job).toMatchObject({ status: 'SUCCEEDED', bytesDone: bytes.length, partsDone: job.partCount });
  const output = Buffer.from((await testBucket().getObjectBytes(job.key))!);
  expectSameBytes(detailsFormat(job) === 'gzip' ? gunzipSync(output) : output, bytes);
  expect(await exportLeftovers(username, jobId)).toEqual({ objects: [job.key], openUploads: [] });
}

const detailsFormat = (job: { details?: Record<string, unknown> }) => job.details?.format;

afterEach(() => jest.restoreAllMocks());

it('the copy window is 4 by default', () => {
  expect(config().exports.copyWindow).toBe(4);
});

describe('a raw export with a copy window of 4', () => {
  it('that crashes at part 2 after parts 3 and 4 finished resumes at part 2, byte-identical', async () => {
    const { username, jobId, bytes } = await exportOf('raw');
    const finished = holdPartTwo(async () => {
      throw new Error('injected crash while copying part 2');
    });

    // Its restart (continueWith) is dropped: the next invocation comes after the lease runs out.
    const first = await runExportAsWorker(
      { username, jobId },
      { deadline: Infinity, continueWith: async () => {} },
    );
    expect(first).toBe('restarted');
    // Its neighbours finished before it failed; nothing new started once it had.
    expect(finished).toEqual(expect.arrayContaining([1, 3, 4]));
    expect(finished).not.toContain(2);
    const stopped = (await jobStore().get(username, jobId))!;
    expect(stopped.status).toBe('RUNNING');
    expect(stopped.checkpoint).toEqual({ offset: partSize(), partNumber: 2 });
    const inS3 = await testBucket().listParts(stopped.key, stopped.uploadId!);
    expect(inS3!.map((part) => part.partNumber)).toEqual(expect.arrayContaining([1, 3, 4]));
    expect(inS3!.map((part) => part.partNumber)).not.toContain(2);

    jest.restoreAllMocks();
    await expireLease(username, jobId);
    expect((await runToTheEnd({ username, jobId })).result).toBe('succeeded');
    await expectExported(username, jobId, bytes);
  });

  it('whose worker hangs at part 2 while the others finish records part 2 as its checkpoint', async () => {
    const { username, jobId, bytes } = await exportOf('raw');
    const hung = gate();
    const finished = holdPartTwo(() => {
      hung.open();
      return new Promise(() => {}); // the Lambda died mid-call: nothing of it runs again
    });

    void runExportAsWorker({ username, jobId }, { deadline: Infinity, continueWith: async () => {} });
    await hung.opened;
    // Let the rest of the window finish and record itself (the hung call holds only its own place).
    const partsButOne = Math.ceil(bytes.length / partSize()) - 1;
    for (let tries = 0; (await jobStore().get(username, jobId))!.partsDone < partsButOne; tries++) {
      if (tries > 200) throw new Error('the other parts never finished');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(finished).not.toContain(2);
    const stalled = (await jobStore().get(username, jobId))!;
    expect(stalled.checkpoint).toEqual({ offset: partSize(), partNumber: 2 });
    expect(stalled.bytesDone).toBe(bytes.length - partSize());

    jest.restoreAllMocks();
    await expireLease(username, jobId);
    expect((await runToTheEnd({ username, jobId })).result).toBe('succeeded');
    await expectExported(username, jobId, bytes);
  });

  it('that hands off while parts finish out of order continues at the lowest unfinished part', async () => {
    const { username, jobId, bytes } = await exportOf('raw');
    const store = transferFileStore();
    const real = store.uploadPartCopy.bind(store);
    const started: number[] = [];
    const finished: number[] = [];
    // Part 1 finishes last of the first four.
    const laterParts = gate();
    jest.spyOn(store as FileStore, 'uploadPartCopy').mockImplementation((async (...args) => {
      started.push(args[2]);
      if (args[2] === 1) await laterParts.opened;
      const result = await real(...args);
      finished.push(args[2]);
      if (finished.length === 3 && !finished.includes(1)) laterParts.open();
      return result;
    }) as FileStore['uploadPartCopy']);

    let next: WorkerEvent | undefined;
    // Time runs out once the first four parts are in flight.
    const options = {
      get deadline() {
        return started.length >= 4 ? 0 : Infinity;
      },
      continueWith: async (event: WorkerEvent) => {
        next = event;
      },
    };
    expect(await runExportAsWorker({ username, jobId }, options)).toBe('continued');
    expect(started).toEqual([1, 2, 3, 4]);
    expect(finished[3]).toBe(1);
    const handedOff = (await jobStore().get(username, jobId))!;
    expect(handedOff.checkpoint).toEqual({ offset: 4 * partSize(), partNumber: 5 });

    jest.restoreAllMocks();
    expect((await runToTheEnd(next!)).result).toBe('succeeded');
    await expectExported(username, jobId, bytes);
  });
});

describe('a gzip export', () => {
  it('compresses several slices at once and still writes them in order', async () => {
    const { username, jobId, bytes } = await exportOf('gzip', 5);
    expect(
      await runExportAsWorker({ username, jobId }, { deadline: Infinity, continueWith: async () => {} }),
    ).toBe('succeeded');
    await expectExported(username, jobId, bytes);
  });

  describe('whose parts hold several slices each (20 MiB steps: 3 members of 8 MiB or less)', () => {
    const configured = config().exports.partSize;
    beforeEach(() => {
      config().exports.partSize = 20 * MiB;
    });
    afterEach(() => {
      config().exports.partSize = configured;
    });

    it('handed off after every part writes the very bytes of a run that never stopped', async () => {
      const whole = await exportOf('gzip', 2);
      expect(await runExportAsWorker(whole, { deadline: Infinity, continueWith: async () => {} })).toBe(
        'succeeded',
      );
      await expectExported(whole.username, whole.jobId, whole.bytes);
      const wholeJob = (await jobStore().get(whole.username, whole.jobId))!;
      const wholeOutput = Buffer.from((await testBucket().getObjectBytes(wholeJob.key))!);

      const username = user();
      await testBucket().putObject(`uploads/${username}/src.bin`, whole.bytes);
      const jobId = await createExportJob(username, 'src.bin', 'gzip');
      const { result, invocations } = await runToTheEnd({ username, jobId });
      expect(result).toBe('succeeded');
      // One part per invocation: two whole steps and the tail.
      expect(invocations).toBe(3);
      await expectExported(username, jobId, whole.bytes);
      const resumedJob = (await jobStore().get(username, jobId))!;
      expectSameBytes(Buffer.from((await testBucket().getObjectBytes(resumedJob.key))!), wholeOutput);
      // Members of at most 8 MiB: more of them than parts (a member's header starts 1f 8b 08).
      expect(countGzipMembers(wholeOutput)).toBeGreaterThanOrEqual(7);
    });
  });
});

/** gzip members in `bytes`: a member decompresses to its end, and the next starts there. */
function countGzipMembers(bytes: Buffer): number {
  let members = 0;
  for (let offset = 0; offset < bytes.length; members++) {
    // The member's deflate stream starts after the 10-byte header (no optional fields here) and
    // is followed by an 8-byte trailer.
    const result = inflateRawSync(bytes.subarray(offset + 10), { info: true }) as unknown as {
      engine: { bytesWritten: number };
    };
    offset += 10 + result.engine.bytesWritten + 8;
  }
  return members;
}
