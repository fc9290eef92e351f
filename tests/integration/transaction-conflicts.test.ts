import { randomBytes, randomUUID } from 'node:crypto';
import { TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { jest } from '@jest/globals';
import { MiB } from '../../common/part-plan.ts';
import { handler as startExportHandler } from '../../functions/export-create.ts';
import { handler as startUploadHandler } from '../../functions/upload-create.ts';
import { documentClient } from '../../lib/aws/clients.ts';
import { config } from '../../lib/config.ts';
import { killExports } from '../../lib/exports/exports.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import { completeUpload, createUpload, signParts } from '../../lib/uploads/uploads.ts';
import { slowToGzip } from '../support/bytes.ts';
import { invoke, type ParsedResponse } from '../support/events.ts';
import { runExportAsWorker, runningExports } from '../support/exports.ts';
import { putPart, testBucket } from '../support/s3.ts';
import { createTestUser } from '../support/users.ts';

/**
 * DynamoDB cancels a transaction that touches an item another transaction is writing at that moment
 * (TransactionConflict) and expects the caller to retry. DynamoDB Local never does: it runs
 * transactions one at a time. So here the in-process client plays DynamoDB's part: a transaction that
 * starts while another in flight holds one of its items is cancelled with the reasons DynamoDB gives.
 * The handlers run in-process (their HTTP answers, status codes included, are what the test checks);
 * every DynamoDB and S3 call is still real.
 */

type Send = (command: unknown, ...rest: unknown[]) => Promise<unknown>;

interface ConflictLog {
  conflicts: number;
}

function emulateTransactionConflicts(): ConflictLog & { restore: () => void } {
  const client = documentClient();
  const original = client.send.bind(client) as unknown as Send;
  const held = new Map<string, number>();
  const log = { conflicts: 0 };
  const spy = jest.spyOn(client, 'send').mockImplementation((async (command: unknown, ...rest: unknown[]) => {
    if (!(command instanceof TransactWriteCommand)) return original(command, ...rest);
    const keys = (command.input.TransactItems ?? []).map((item) => {
      const action = (item.Put ?? item.Update ?? item.Delete ?? item.ConditionCheck)!;
      const key = ('Item' in action ? action.Item : action.Key) as Record<string, unknown>;
      return `${action.TableName}|${key.pk}|${key.sk}`;
    });
    if (keys.some((key) => held.has(key))) {
      log.conflicts++;
      throw new TransactionCanceledException({
        message: 'Transaction cancelled, please refer cancellation reasons for specific reasons',
        $metadata: { httpStatusCode: 400 },
        CancellationReasons: keys.map((key) =>
          held.has(key)
            ? { Code: 'TransactionConflict', Message: 'Transaction is ongoing for the item' }
            : { Code: 'None' },
        ),
      });
    }
    for (const key of keys) held.set(key, (held.get(key) ?? 0) + 1);
    try {
      // Long enough in flight for concurrent requests to overlap, as they do against DynamoDB.
      await new Promise((resolve) => setTimeout(resolve, 5));
      return await original(command, ...rest);
    } finally {
      for (const key of keys) {
        const count = held.get(key)! - 1;
        if (count === 0) held.delete(key);
        else held.set(key, count);
      }
    }
  }) as never);
  return Object.assign(log, { restore: () => spy.mockRestore() });
}

const ACTIVE = ['QUEUED', 'RUNNING', 'CANCELLING'];

async function settledExports(username: string, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { jobs } = await jobStore().list(username, { type: 'export', limit: 500 });
    if (jobs.every((job) => !ACTIVE.includes(job.status))) return jobs;
    if (Date.now() > deadline) throw new Error('exports still active');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const post = (token: string, body: { filename: string; format: 'raw' | 'gzip' }) =>
  invoke(startExportHandler, {
    method: 'POST',
    path: '/export',
    headers: { authorization: `Bearer ${token}` },
    body,
  });

const statusOf = (response: ParsedResponse<any>) =>
  `${response.status}${response.body?.error ? ` ${response.body.error.code}` : ''}`;

describe('transaction conflicts', () => {
  let emulator: ReturnType<typeof emulateTransactionConflicts> | undefined;
  afterEach(() => {
    emulator?.restore();
    emulator = undefined;
  });

  it('a burst of POST /export of one user: no 5xx, exactly the limit accepted, the rest 429', async () => {
    const user = await createTestUser('conflict');
    const token = await user.token();
    const limit = config().exports.maxRunning;
    // Big enough, in gzip, that no accepted export finishes (and frees a place) during the burst.
    await testBucket().putObject(`uploads/${user.username}/slow.bin`, slowToGzip(64 * MiB));
    emulator = emulateTransactionConflicts();

    const responses = await Promise.all(
      Array.from({ length: 12 }, () => post(token, { filename: 'slow.bin', format: 'gzip' })),
    );
    const statuses = responses.map(statusOf);
    expect(emulator.conflicts).toBeGreaterThan(0);
    expect(statuses.filter((status) => status.startsWith('5'))).toEqual([]);
    expect(statuses.filter((status) => status === '202')).toHaveLength(limit);
    expect(statuses.filter((status) => status === '429 TooManyRequests')).toHaveLength(12 - limit);
    expect(await runningExports(user.username)).toBe(limit);

    // Kills finish them (CANCELLED, a counter release each) while more starts race them.
    const [killed, ...more] = await Promise.all([
      killExports(user.username),
      ...Array.from({ length: 6 }, () => post(token, { filename: 'slow.bin', format: 'gzip' })),
    ]);
    expect(killed.cancelled).toHaveLength(limit);
    expect(more.map(statusOf).filter((status) => status.startsWith('5'))).toEqual([]);
    expect(more.every((response) => [202, 429].includes(response.status))).toBe(true);
    emulator.restore();
    await killExports(user.username).catch(() => {});

    const jobs = await settledExports(user.username);
    expect(jobs.filter((job) => job.status !== 'CANCELLED')).toEqual([]);
    expect(await runningExports(user.username)).toBe(0);
    expect(await testBucket().listOpenUploads(`exports/${user.username}/`)).toEqual([]);
  }, 120_000);

  it('waves of POST /export of one user while earlier exports finish: no 5xx, the counter stays within the limit and ends true', async () => {
    const user = await createTestUser('conflict');
    const token = await user.token();
    const limit = config().exports.maxRunning;
    await testBucket().putObject(`uploads/${user.username}/quick.bin`, randomBytes(6 * MiB));
    emulator = emulateTransactionConflicts();

    const statuses: string[] = [];
    const finishing: Promise<unknown>[] = [];
    for (let wave = 0; wave < 6; wave++) {
      const [responses, seen] = await Promise.all([
        Promise.all(Array.from({ length: 10 }, () => post(token, { filename: 'quick.bin', format: 'raw' }))),
        runningExports(user.username),
      ]);
      statuses.push(...responses.map(statusOf));
      expect(seen).toBeLessThanOrEqual(limit);
      expect(await runningExports(user.username)).toBeLessThanOrEqual(limit);
      // Finish the accepted exports in-process, all at once and while the next wave starts (the
      // worker POST /export started through Lambda races these; whichever claims a job runs it).
      for (const response of responses.filter((r) => r.status === 202)) {
        finishing.push(
          runExportAsWorker(
            { username: user.username, jobId: response.body.job.jobId },
            { deadline: Number.POSITIVE_INFINITY, continueWith: async () => {} },
          ),
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await Promise.all(finishing);

    expect(statuses.filter((status) => status.startsWith('5'))).toEqual([]);
    expect(statuses.every((status) => status === '202' || status === '429 TooManyRequests')).toBe(true);
    expect(emulator.conflicts).toBeGreaterThan(0);
    emulator.restore();

    const jobs = await settledExports(user.username);
    expect(jobs.length).toBe(statuses.filter((status) => status === '202').length);
    // Finishes freed places: more were accepted in all than the limit.
    expect(jobs.length).toBeGreaterThan(limit);
    expect(jobs.filter((job) => job.status !== 'SUCCEEDED')).toEqual([]);
    // The counter equals the exports really running: none now.
    expect(await runningExports(user.username)).toBe(0);
    expect(await testBucket().listOpenUploads(`exports/${user.username}/`)).toEqual([]);
  }, 120_000);

  it('many POST /upload of one file at once: one job, the rest 409 UploadInProgress, no 5xx, one multipart upload', async () => {
    const user = await createTestUser('conflict');
    const token = await user.token();
    emulator = emulateTransactionConflicts();
    const filename = `same-${randomUUID().slice(0, 6)}.bin`;
    const responses = await Promise.all(
      Array.from({ length: 12 }, () =>
        invoke(startUploadHandler, {
          method: 'POST',
          path: '/upload',
          headers: { authorization: `Bearer ${token}` },
          body: { filename, size: 1024 },
        }),
      ),
    );
    const statuses = responses.map(statusOf);
    expect(emulator.conflicts).toBeGreaterThan(0);
    emulator.restore();
    expect(statuses.filter((status) => status.startsWith('5'))).toEqual([]);
    expect(statuses.filter((status) => status === '201')).toHaveLength(1);
    expect(statuses.filter((status) => status === '409 UploadInProgress')).toHaveLength(11);
    const winner = responses.find((response) => response.status === 201)!.body;
    const open = await testBucket().listOpenUploads(`uploads/${user.username}/`);
    expect(open.map((upload) => upload.uploadId)).toEqual([winner.uploadId]);
  }, 60_000);

  it('a transaction that keeps conflicting is tried a bounded number of times, then its error stands', async () => {
    const client = documentClient();
    const original = client.send.bind(client) as unknown as Send;
    let tries = 0;
    const spy = jest.spyOn(client, 'send').mockImplementation((async (
      command: unknown,
      ...rest: unknown[]
    ) => {
      if (!(command instanceof TransactWriteCommand)) return original(command, ...rest);
      tries++;
      throw new TransactionCanceledException({
        message: 'Transaction cancelled',
        $metadata: { httpStatusCode: 400 },
        CancellationReasons: [{ Code: 'None' }, { Code: 'None' }, { Code: 'TransactionConflict' }],
      });
    }) as never);
    const started = Date.now();
    try {
      const jobId = randomUUID();
      const now = new Date().toISOString();
      const job = {
        jobId,
        username: `conflict-${randomUUID().slice(0, 8)}`,
        type: 'export' as const,
        status: 'QUEUED' as const,
        filename: 'x',
        key: 'x',
        size: 1,
        partSize: 1,
        partCount: 1,
        partsDone: 0,
        bytesDone: 0,
        createdAt: now,
        updatedAt: now,
      };
      await expect(jobStore().create(job, jobId, { maxRunning: 3 })).rejects.toBeInstanceOf(
        TransactionCanceledException,
      );
    } finally {
      spy.mockRestore();
    }
    expect(tries).toBe(10);
    expect(Date.now() - started).toBeLessThan(7000);
  });

  it('a job write that landed but whose answer was lost keeps its multipart upload, and the retry resumes it', async () => {
    const username = `conflict-${randomUUID().slice(0, 8)}`;
    const store = jobStore();
    const real = store.create.bind(store);
    const create = jest.spyOn(store, 'create').mockImplementationOnce(async (...args) => {
      await real(...args);
      throw Object.assign(new Error('socket hang up'), { name: 'TimeoutError' });
    });
    try {
      await expect(createUpload(username, { filename: 'landed.bin', size: 10 })).rejects.toThrow(
        'socket hang up',
      );
    } finally {
      create.mockRestore();
    }
    const [open] = await testBucket().listOpenUploads(`uploads/${username}/`);
    expect(open).toBeDefined();

    // The client tries again, learns which job holds the name, and carries on with it.
    const again = await createUpload(username, { filename: 'landed.bin', size: 10 }).catch((error) => error);
    expect(again).toMatchObject({ status: 409, code: 'UploadInProgress' });
    const jobId = (again as { details: { jobId: string } }).details.jobId;
    const job = (await jobStore().get(username, jobId))!;
    expect(job.uploadId).toBe(open!.uploadId);
    const [part] = await signParts(job, [{ partNumber: 1 }]);
    await putPart(part!.url, Buffer.from('0123456789'));
    expect((await completeUpload(username, jobId)).status).toBe('COMPLETED');
    expect(await testBucket().listOpenUploads(`uploads/${username}/`)).toEqual([]);
  });

  it('an upload whose job write fails aborts the multipart upload it had just opened', async () => {
    const username = `conflict-${randomUUID().slice(0, 8)}`;
    const create = jest.spyOn(jobStore(), 'create').mockRejectedValueOnce(new Error('the table said no'));
    try {
      await expect(createUpload(username, { filename: 'lost.bin', size: 10 })).rejects.toThrow(
        'the table said no',
      );
    } finally {
      create.mockRestore();
    }
    expect(await testBucket().listOpenUploads(`uploads/${username}/`)).toEqual([]);
  });
});
