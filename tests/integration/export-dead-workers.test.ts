import { randomBytes, randomUUID } from 'node:crypto';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { jest } from '@jest/globals';
import { handler as worker } from '../../functions/export-worker.ts';
import { handler } from '../../functions/export-worker-failed.ts';
import { documentClient } from '../../lib/aws/clients.ts';
import { config } from '../../lib/config.ts';
import { recoverFailedWorker } from '../../lib/exports/dead-workers.ts';
import { cancelExport, type WorkerEvent } from '../../lib/exports/exports.ts';
import { jobStore, workerLeases } from '../../lib/jobs/index.ts';
import { type JobRecord, TransitionRejected } from '../../lib/jobs/jobs-table.ts';
import type { FileStore } from '../../lib/storage/file-store.ts';
import { transferFileStore } from '../../lib/storage/index.ts';
import { asFunction } from '../support/as-function.ts';
import { expectSameBytes } from '../support/bytes.ts';
import { lambdaContext } from '../support/events.ts';
import {
  createExportJob,
  exportLeftovers,
  runExportAsWorker,
  runToTheEnd,
  waitForStatus,
} from '../support/exports.ts';
import { testBucket } from '../support/s3.ts';

/**
 * A worker invocation that Lambda reports failed (the worker's on-failure destination,
 * functions/export-worker-failed.ts): if that invocation still holds the job, the export is revived
 * at once, although its lease has not run out. The dying worker runs in-process and hangs inside
 * S3 (as a killed Lambda would: nothing of it runs again); S3 and DynamoDB are the real emulators.
 * Lambda's delivery itself cannot run here (serverless-offline has no destinations): the record is
 * the one Lambda documents, built by failureRecord.
 */

const user = () => `dead-${randomUUID().slice(0, 8)}`;
const partSize = () => config().exports.partSize;

afterEach(() => jest.restoreAllMocks());

async function newExport() {
  const username = user();
  const bytes = randomBytes(3 * partSize() - 777);
  await testBucket().putObject(`uploads/${username}/src.bin`, bytes);
  const jobId = await createExportJob(username, 'src.bin', 'raw');
  return { username, jobId, bytes };
}

/** What Lambda sends the destination for a failed asynchronous invocation of the worker. */
function failureRecord(requestId: string, event: WorkerEvent) {
  return {
    version: '1.0',
    timestamp: new Date().toISOString(),
    requestContext: {
      requestId,
      functionArn: 'arn:aws:lambda:us-east-1:123456789012:function:file-jobs-test-exportWorker:$LATEST',
      condition: 'RetriesExhausted',
      approximateInvokeCount: 1,
    },
    requestPayload: event,
    responseContext: { statusCode: 200, executedVersion: '$LATEST', functionError: 'Unhandled' },
    responsePayload: {
      errorType: 'Runtime.ExitError',
      errorMessage: 'Error: Runtime exited with error: signal: killed',
    },
  };
}

/**
 * Starts the worker as invocation `requestId`, which dies inside its copy of part 2; answers once it
 * holds the job with part 1 recorded.
 */
async function workerDyingAtPartTwo(event: WorkerEvent, requestId: string) {
  const { username, jobId } = event;
  const store = transferFileStore() as FileStore;
  const real = store.uploadPartCopy.bind(store);
  // Every part from 2 on hangs, not part 2 alone: with a copy window, a part after 2 could otherwise
  // finish (and be recorded as progress) after the test has set what the worker did before it died
  // (seen once on LocalStack: restartsSinceProgress went back to 0 behind the test's back).
  jest.spyOn(store, 'uploadPartCopy').mockImplementation(async (...args) => {
    if (Number(args[2]) >= 2) return new Promise(() => {});
    return real(...args);
  });
  void runExportAsWorker(event, { deadline: Infinity, continueWith: async () => {}, requestId });
  let job: JobRecord | undefined;
  for (let tries = 0; !(job && job.partsDone >= 1 && job.workerRequestId === requestId); tries++) {
    if (tries > 300) throw new Error('the worker never recorded part 1');
    await new Promise((resolve) => setTimeout(resolve, 20));
    job = await jobStore().get(username, jobId);
  }
  jest.restoreAllMocks();
  return job;
}

it('a worker reported dead while it holds the job: the export resumes at once, in a new worker, byte-identical', async () => {
  const { username, jobId, bytes } = await newExport();
  const held = await workerDyingAtPartTwo({ username, jobId }, 'req-dying');
  expect(held).toMatchObject({ status: 'RUNNING', workerRequestId: 'req-dying' });
  // Its lease has minutes to run: the janitor would not touch it yet.
  expect(held.leaseUntil).toBeGreaterThan(Date.now() / 1000 + 60);

  // Through the handler Lambda invokes; it starts the worker through serverless-offline's invoke API.
  const answer = await asFunction('exportWorkerFailed', () =>
    handler(failureRecord('req-dying', { username, jobId }), lambdaContext()),
  );
  expect(answer).toEqual({ result: 'restarted' });

  const done = await waitForStatus(username, jobId, 'SUCCEEDED');
  expect(done).toMatchObject({ status: 'SUCCEEDED', restarts: 1 });
  expectSameBytes(Buffer.from((await testBucket().getObjectBytes(done.key))!), bytes);
  expect(await exportLeftovers(username, jobId)).toEqual({ objects: [done.key], openUploads: [] });
});

it('the reported invocation is fenced: a late write of it is refused, and the restarted worker finishes', async () => {
  const { username, jobId, bytes } = await newExport();
  const held = await workerDyingAtPartTwo({ username, jobId }, 'req-late');
  const started: WorkerEvent[] = [];
  const result = await recoverFailedWorker(failureRecord('req-late', { username, jobId }), async (event) => {
    started.push(event);
  });
  expect(result).toBe('restarted');

  // However late (here the in-process worker's other parts still land and record themselves, as a
  // truly dead invocation could not), its heartbeat no longer holds the job.
  await expect(
    workerLeases().heartbeat(username, jobId, held.workerToken!, {
      partsDone: held.partsDone,
      bytesDone: held.bytesDone,
      checkpoint: held.checkpoint!,
      leaseSeconds: 600,
    }),
  ).rejects.toBeInstanceOf(TransitionRejected);
  expect((await runToTheEnd(started[0]!)).result).toBe('succeeded');
  const done = (await jobStore().get(username, jobId))!;
  expectSameBytes(Buffer.from((await testBucket().getObjectBytes(done.key))!), bytes);
});

it('a report for an invocation that no longer holds the job changes nothing', async () => {
  const { username, jobId } = await newExport();
  // Invocation A hands the job off after part 1; invocation B takes it with A's token, and runs.
  let next: WorkerEvent | undefined;
  await runExportAsWorker(
    { username, jobId },
    {
      deadline: 0,
      continueWith: async (event) => {
        next = event;
      },
      requestId: 'req-a',
    },
  );
  const before = await workerDyingAtPartTwo(next!, 'req-b');

  const started: WorkerEvent[] = [];
  // A's own event was the first one (no token); B's is the hand-off.
  const result = await recoverFailedWorker(failureRecord('req-a', { username, jobId }), async (event) => {
    started.push(event);
  });
  expect(result).toBe('not held by it');
  expect(started).toEqual([]);
  // B still holds it, under its lease (B's own parts may have landed meanwhile).
  const after = (await jobStore().get(username, jobId))!;
  const holder = ({ status, workerToken, workerRequestId, restarts }: JobRecord) => ({
    status,
    workerToken,
    workerRequestId,
    restarts,
  });
  expect(holder(after)).toEqual(holder(before));
  expect(after.leaseUntil).toBeGreaterThan(Date.now() / 1000 + 60);
});

it('a worker reported dead in the middle of a kill: the cancel is finished, nothing is left', async () => {
  const { username, jobId } = await newExport();
  await workerDyingAtPartTwo({ username, jobId }, 'req-killed');
  // The kill waits for the worker, whose lease is alive, to notice it.
  expect((await cancelExport(username, jobId)).job.status).toBe('CANCELLING');

  const result = await recoverFailedWorker(failureRecord('req-killed', { username, jobId }), async () => {
    throw new Error('no worker expected');
  });
  expect(result).toBe('cancel finished');
  expect((await jobStore().get(username, jobId))!.status).toBe('CANCELLED');
  expect(await exportLeftovers(username, jobId)).toEqual({ objects: [], openUploads: [] });
});

it('a report of an invocation that failed after the export finished changes nothing', async () => {
  const { username, jobId } = await newExport();
  const result = await runExportAsWorker(
    { username, jobId },
    { deadline: Infinity, continueWith: async () => {}, requestId: 'req-finished' },
  );
  expect(result).toBe('succeeded');
  const before = (await jobStore().get(username, jobId))!;

  expect(
    await recoverFailedWorker(failureRecord('req-finished', { username, jobId }), async () => {
      throw new Error('no worker expected');
    }),
  ).toBe('not held by it');
  expect(await jobStore().get(username, jobId)).toEqual(before);
});

it('a worker reported dead after JANITOR_MAX_EXPORT_RESTARTS stops in a row without progress: the export fails, nothing is left', async () => {
  const { username, jobId } = await newExport();
  await workerDyingAtPartTwo({ username, jobId }, 'req-last');
  await documentClient().send(
    new UpdateCommand({
      TableName: config().jobsTable,
      Key: { pk: `USER#${username}`, sk: `JOB#${jobId}` },
      UpdateExpression: 'SET restartsSinceProgress = :max',
      ExpressionAttributeValues: { ':max': config().janitor.maxExportRestarts },
    }),
  );

  const result = await recoverFailedWorker(failureRecord('req-last', { username, jobId }), async () => {
    throw new Error('no worker expected');
  });
  expect(result).toBe('failed');
  const failed = (await jobStore().get(username, jobId))!;
  expect(failed.status).toBe('FAILED');
  expect(failed.error).toMatch(/stopped \d+ times in a row/);
  expect(await exportLeftovers(username, jobId)).toEqual({ objects: [], openUploads: [] });
});

it('a first invocation that died before it claimed the job: the queued export is started again at once', async () => {
  const { username, jobId } = await newExport();
  const started: WorkerEvent[] = [];
  const result = await recoverFailedWorker(
    failureRecord('req-never-claimed', { username, jobId }),
    async (event) => {
      started.push(event);
    },
  );
  expect(result).toBe('restarted');
  expect(started).toEqual([{ username, jobId }]);
  expect((await jobStore().get(username, jobId))!).toMatchObject({ status: 'QUEUED', restarts: 1 });
  expect((await runToTheEnd(started[0]!)).result).toBe('succeeded');
});

describe('a worker invocation whose claim fails', () => {
  const reset = () => Object.assign(new Error('connect ECONNRESET 127.0.0.1:8000'), { code: 'ECONNRESET' });
  /** The claim fails `times` times in this process (every time if undefined), then works. */
  const claimFails = (times?: number) => {
    const leases = workerLeases();
    const claim = leases.claim.bind(leases);
    let failures = 0;
    return jest.spyOn(leases, 'claim').mockImplementation(async (...args) => {
      if (times === undefined || failures < times) {
        failures++;
        throw reset();
      }
      return claim(...args);
    });
  };
  // 10.5 s left: the worker keeps trying its claim for about half a second (bookkeepingDeadline).
  const shortOfTime = () => lambdaContext({ getRemainingTimeInMillis: () => 10_500 });

  it('tries the claim again through a passing fault, and the export goes on', async () => {
    const { username, jobId, bytes } = await newExport();
    const claim = claimFails(2);
    // 30 s left, less than the worker's safety margin: it hands off after its first part, through
    // serverless-offline's invoke API.
    expect(await worker({ username, jobId }, lambdaContext())).toEqual({ result: 'continued' });
    expect(claim).toHaveBeenCalledTimes(3);
    const done = await waitForStatus(username, jobId, 'SUCCEEDED');
    expect(done.restarts ?? 0).toBe(0);
    expectSameBytes(Buffer.from((await testBucket().getObjectBytes(done.key))!), bytes);
  });

  it('fails the invocation in Lambda once it can wait no longer, for its destination to see', async () => {
    const { username, jobId } = await newExport();
    const claim = claimFails();
    await expect(worker({ username, jobId }, shortOfTime())).rejects.toThrow(/ECONNRESET/);
    expect(claim.mock.calls.length).toBeGreaterThan(1);
    expect((await jobStore().get(username, jobId))!.status).toBe('QUEUED');
  });

  it('under serverless-offline, which has no destinations, reports itself and the export goes on', async () => {
    const { username, jobId, bytes } = await newExport();
    claimFails();
    process.env.IS_OFFLINE = 'true';
    try {
      // A rejected asynchronous invocation would end serverless-offline's whole process.
      expect(await worker({ username, jobId }, shortOfTime())).toEqual({ result: 'restarted' });
    } finally {
      delete process.env.IS_OFFLINE;
    }
    // The restart was started through serverless-offline's invoke API (whose claim works).
    const done = await waitForStatus(username, jobId, 'SUCCEEDED');
    expect(done).toMatchObject({ status: 'SUCCEEDED', restarts: 1 });
    expectSameBytes(Buffer.from((await testBucket().getObjectBytes(done.key))!), bytes);
  });

  it('takes the job when an earlier attempt of its claim landed and only the answer was lost', async () => {
    const { username, jobId, bytes } = await newExport();
    const leases = workerLeases();
    const claim = leases.claim.bind(leases);
    jest.spyOn(leases, 'claim').mockImplementationOnce(async (...args) => {
      await claim(...args);
      throw reset();
    });
    const result = await runExportAsWorker(
      { username, jobId },
      { deadline: Number.POSITIVE_INFINITY, continueWith: async () => {} },
    );
    expect(result).toBe('succeeded');
    const done = (await jobStore().get(username, jobId))!;
    expect(done).toMatchObject({ status: 'SUCCEEDED' });
    expectSameBytes(Buffer.from((await testBucket().getObjectBytes(done.key))!), bytes);
  });
});

it('ignores a record that is not a failed worker invocation', async () => {
  for (const record of [
    {},
    { requestContext: { requestId: 'x' } },
    failureRecord('', { username: 'u', jobId: 'nope' }),
  ]) {
    expect(await handler(record, lambdaContext())).toEqual({ result: 'ignored' });
  }
});

it('the worker records the invocation that claims the job, and a claim without one clears it', async () => {
  const { username, jobId } = await newExport();
  await runExportAsWorker(
    { username, jobId },
    { deadline: 0, continueWith: async () => {}, requestId: 'req-first' },
  );
  expect((await jobStore().get(username, jobId))!.workerRequestId).toBe('req-first');
  const { result } = await runToTheEnd({
    username,
    jobId,
    token: (await jobStore().get(username, jobId))!.workerToken!,
  });
  expect(result).toBe('succeeded');
  expect((await jobStore().get(username, jobId))!.workerRequestId).toBeUndefined();
});
