import { randomBytes, randomUUID } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { MiB } from '../../common/part-plan.ts';
import { expectSameBytes, slowToGzip } from '../support/bytes.ts';
import { api, expectError } from '../support/http.ts';
import { testBucket } from '../support/s3.ts';
import { createTestUser } from '../support/users.ts';

/**
 * Exports over HTTP: POST /export starts the worker asynchronously through serverless-offline's
 * Lambda invoke API (InvocationType Event), exactly as in AWS; the test only watches the job.
 */

type User = Awaited<ReturnType<typeof createTestUser>> & { jwt: string };

async function newUser(): Promise<User> {
  const user = await createTestUser('ex');
  return { ...user, jwt: await user.token() };
}

async function waitFor(user: User, jobId: string, done: (job: any) => boolean, timeoutMs = 45_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const response = await api(`/jobs/${jobId}`, { token: user.jwt });
    expect(response.status).toBe(200);
    if (done(response.body.job)) return response.body.job;
    if (Date.now() > deadline) throw new Error(`job ${jobId} still ${response.body.job.status}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const finished = (job: any) => !['QUEUED', 'RUNNING', 'CANCELLING'].includes(job.status);

describe('exports over HTTP', () => {
  it.each(['raw', 'gzip'] as const)(
    'a %s export reproduces the uploaded file, with a download URL',
    async (format) => {
      const user = await newUser();
      const bytes = randomBytes(12 * MiB + 777);
      await testBucket().putObject(`uploads/${user.username}/data.bin`, bytes);

      const started = await api('/export', {
        method: 'POST',
        token: user.jwt,
        body: { filename: 'data.bin', format },
      });
      expect(started.status).toBe(202);
      expect(started.body.job).toMatchObject({
        type: 'export',
        status: 'QUEUED',
        filename: 'data.bin',
        format,
      });

      const job = await waitFor(user, started.body.job.jobId, finished);
      expect(job).toMatchObject({
        status: 'SUCCEEDED',
        progress: { partsDone: 3, partCount: 3, bytesDone: bytes.length, bytesTotal: bytes.length },
        downloadUrl: expect.stringMatching(/^http/),
      });
      expect(Date.parse(job.expiresAt)).toBeGreaterThan(Date.now());
      const download = await fetch(job.downloadUrl);
      expect(download.status).toBe(200);
      const body = Buffer.from(await download.arrayBuffer());
      expectSameBytes(format === 'gzip' ? gunzipSync(body) : body, bytes);
      expect(job.outputSize).toBe(body.length);
      expect(await testBucket().listOpenUploads(`exports/${user.username}/`)).toEqual([]);

      // Asking again signs a fresh URL.
      const again = await api(`/jobs/${job.jobId}`, { token: user.jwt });
      expect(again.body.job.downloadUrl).toEqual(expect.any(String));
    },
  );

  it('kills a running export: CANCELLED, nothing left under its prefix, the source intact', async () => {
    const user = await newUser();
    const bytes = slowToGzip(60 * MiB);
    await testBucket().putObject(`uploads/${user.username}/big.bin`, bytes);
    const started = await api('/export', {
      method: 'POST',
      token: user.jwt,
      body: { filename: 'big.bin', format: 'gzip' },
    });
    const jobId = started.body.job.jobId;
    await waitFor(user, jobId, (job) => job.progress.partsDone >= 1 || finished(job));

    const killed = await api('/export/kill', { method: 'POST', token: user.jwt });
    expect(killed.status).toBe(200);
    expect(killed.body.cancelled).toEqual([
      { jobId, filename: 'big.bin', status: expect.stringMatching(/^CANCELL/) },
    ]);

    const job = await waitFor(user, jobId, finished);
    expect(job.status).toBe('CANCELLED');
    expect(job.downloadUrl).toBeUndefined();
    expect(await testBucket().listOpenUploads(`exports/${user.username}/${jobId}/`)).toEqual([]);
    expect(await testBucket().list(`exports/${user.username}/${jobId}/`)).toEqual([]);
    expectSameBytes((await testBucket().getObjectBytes(`uploads/${user.username}/big.bin`))!, bytes);

    expectError(await api('/export/kill', { method: 'POST', token: user.jwt }), 404, 'NoExportFound');
  });

  it('keeps exports private to their user', async () => {
    const [owner, other] = await Promise.all([newUser(), newUser()]);
    await testBucket().putObject(`uploads/${owner.username}/mine.txt`, 'private');
    const started = await api('/export', {
      method: 'POST',
      token: owner.jwt,
      body: { filename: 'mine.txt' },
    });
    const jobId = started.body.job.jobId;
    await waitFor(owner, jobId, finished);

    expectError(await api(`/jobs/${jobId}`, { token: other.jwt }), 404, 'JobNotFound');
    expectError(await api(`/export/${jobId}`, { method: 'DELETE', token: other.jwt }), 404, 'JobNotFound');
    expectError(await api('/export/kill', { method: 'POST', token: other.jwt }), 404, 'NoExportFound');
    // The other user cannot export the owner's file either: names resolve in the caller's folder.
    expectError(
      await api('/export', { method: 'POST', token: other.jwt, body: { filename: 'mine.txt' } }),
      404,
      'FileNotFound',
    );
    expect((await api('/jobs?type=export', { token: other.jwt })).body.jobs).toEqual([]);
  });

  it('answers bad requests with 4xx', async () => {
    const user = await newUser();
    expectError(
      await api('/export', { method: 'POST', token: user.jwt, body: { filename: 'nope.bin' } }),
      404,
      'FileNotFound',
    );
    expectError(await api('/export', { method: 'POST', token: user.jwt, body: { filename: '../x' } }), 400);
    expectError(
      await api('/export', { method: 'POST', token: user.jwt, body: { filename: 'a', format: 'zip' } }),
      400,
    );
    expectError(await api('/export', { method: 'POST', token: user.jwt, body: {} }), 400);
    expectError(await api('/export/kill', { method: 'POST', token: user.jwt }), 404, 'NoExportFound');
    expectError(await api(`/export/${randomUUID()}`, { method: 'DELETE', token: user.jwt }), 400);
    expectError(await api('/export/01ARZ3NDEKTSV4RRFFQ69G5FAV', { method: 'DELETE', token: user.jwt }), 404);
  });
});
