import { randomBytes } from 'node:crypto';
import { InvokeCommand } from '@aws-sdk/client-lambda';
import { jest } from '@jest/globals';
import { handler as startExportHandler } from '../../functions/export-create.ts';
import { lambdaClient } from '../../lib/aws/clients.ts';
import { jobStore, workerLeases } from '../../lib/jobs/index.ts';
import { invoke } from '../support/events.ts';
import { testBucket } from '../support/s3.ts';
import { createTestUser } from '../support/users.ts';

/**
 * POST /export when the asynchronous start of the worker fails or times out. A timed-out invoke may
 * still have been delivered, so the answer must follow the job, not the invoke: 503 only when the
 * export can no longer run, 202 when a worker has it (or the janitor will start it).
 */

const timeout = () => Object.assign(new Error('socket hang up'), { name: 'TimeoutError', $metadata: {} });

/** The invoke API fails; `delivered` runs first when the event reached Lambda before the failure. */
function invokeFails(delivered?: (event: { username: string; jobId: string }) => Promise<void>) {
  const client = lambdaClient();
  return jest.spyOn(client, 'send').mockImplementation((async (command: unknown) => {
    if (!(command instanceof InvokeCommand)) throw new Error('unexpected Lambda call');
    if (delivered) await delivered(JSON.parse(new TextDecoder().decode(command.input.Payload as Uint8Array)));
    throw timeout();
  }) as never);
}

async function userWithFile() {
  const user = await createTestUser('start');
  await testBucket().putObject(`uploads/${user.username}/src.bin`, randomBytes(1024));
  return { ...user, token: await user.token() };
}

const post = (token: string) =>
  invoke(startExportHandler, {
    method: 'POST',
    path: '/export',
    headers: { authorization: `Bearer ${token}` },
    body: { filename: 'src.bin', format: 'raw' },
  });

afterEach(() => jest.restoreAllMocks());

describe('starting an export when the worker invoke fails', () => {
  it('answers 503 with Retry-After and leaves the job FAILED, its running slot freed, when no worker got it', async () => {
    const user = await userWithFile();
    invokeFails();
    const response = await post(user.token);
    expect(response.status).toBe(503);
    expect(response.headers['retry-after']).toBeDefined();
    expect(response.body.error.code).toBe('ServiceUnavailable');

    const { jobs } = await jobStore().list(user.username, { type: 'export', limit: 5 });
    expect(jobs.map((job) => job.status)).toEqual(['FAILED']);
    // The running-exports counter was released: the limit still allows as many as before.
    expect(await jobStore().activeSlots(user.username, 'export')).toEqual([]);
  });

  it('answers 202 when the invoke timed out but a worker had already claimed the job', async () => {
    const user = await userWithFile();
    invokeFails(async ({ username, jobId }) => {
      await workerLeases().claim(username, jobId, { newToken: 'delivered', leaseSeconds: 60 });
    });
    const response = await post(user.token);
    expect(response.status).toBe(202);
    expect(response.body.job.status).toBe('RUNNING');
    expect((await jobStore().get(user.username, response.body.job.jobId))!.status).toBe('RUNNING');
  });

  it('answers 202 with the job QUEUED when even the failure cannot be recorded (the janitor starts it)', async () => {
    const user = await userWithFile();
    invokeFails();
    const transition = jobStore().transition.bind(jobStore());
    jest.spyOn(jobStore(), 'transition').mockImplementation(async (username, jobId, options) => {
      if (options.to === 'FAILED') throw timeout();
      return transition(username, jobId, options);
    });
    const response = await post(user.token);
    expect(response.status).toBe(202);
    expect(response.body.job.status).toBe('QUEUED');
    expect((await jobStore().get(user.username, response.body.job.jobId))!.status).toBe('QUEUED');
  });
});
