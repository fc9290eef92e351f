import { randomBytes } from 'node:crypto';
import { MiB } from '../../common/part-plan.ts';
import { config } from '../../lib/config.ts';
import { jobStore } from '../../lib/jobs/index.ts';
import { slowToGzip } from '../support/bytes.ts';
import { runningExports } from '../support/exports.ts';
import { type ApiResponse, api } from '../support/http.ts';
import { testBucket } from '../support/s3.ts';
import { createTestUser } from '../support/users.ts';

/**
 * One user's exports all touch one item, the RUNNING#export counter: every start adds to it in its
 * create transaction and every finish takes from it in its own. Many at once make DynamoDB cancel
 * transactions with TransactionConflict; none of that may reach the client as a 5xx, and the
 * counter must still say how many exports run. DynamoDB Local runs transactions one at a time and
 * never reports a conflict, so this checks the outcome over real HTTP; the conflicts themselves are
 * emulated in tests/integration/transaction-conflicts.test.ts.
 */

type User = Awaited<ReturnType<typeof createTestUser>> & { jwt: string };

const ACTIVE = ['QUEUED', 'RUNNING', 'CANCELLING'];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function newUser(): Promise<User> {
  const user = await createTestUser('exc');
  return { ...user, jwt: await user.token() };
}

async function exportJobs(username: string) {
  return (await jobStore().list(username, { type: 'export', limit: 500 })).jobs;
}

async function waitUntilSettled(username: string, timeoutMs = 90_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const jobs = await exportJobs(username);
    if (jobs.every((job) => !ACTIVE.includes(job.status))) return jobs;
    if (Date.now() > deadline) {
      throw new Error(`exports still active: ${jobs.filter((job) => ACTIVE.includes(job.status)).length}`);
    }
    await sleep(200);
  }
}

const startExport = (user: User, filename: string, format: 'raw' | 'gzip') =>
  api('/export', { method: 'POST', token: user.jwt, body: { filename, format } });

const summary = (responses: ApiResponse[]) =>
  responses.map((response) => `${response.status} ${response.body?.error?.code ?? ''}`.trim());

describe('export starts and finishes of one user at once', () => {
  it('a burst of starts: no 5xx, the limit accepted (and a place freed meanwhile), the rest 429', async () => {
    const user = await newUser();
    const limit = config().exports.maxRunning;
    // Big enough, in gzip, that none of the accepted exports finishes while the burst is answered.
    await testBucket().putObject(`uploads/${user.username}/slow.bin`, slowToGzip(64 * MiB));

    const responses = await Promise.all(
      Array.from({ length: 12 }, () => startExport(user, 'slow.bin', 'gzip')),
    );
    const answered = Date.now();
    const statuses = summary(responses);
    const accepted = statuses.filter((status) => status === '202').length;
    expect(statuses.filter((status) => status.startsWith('5'))).toEqual([]);
    expect(statuses.filter((status) => status === '429 TooManyRequests')).toHaveLength(12 - accepted);
    expect(await runningExports(user.username)).toBeLessThanOrEqual(limit);

    const jobs = await waitUntilSettled(user.username);
    expect(jobs.map((job) => job.status)).toEqual(Array(accepted).fill('SUCCEEDED'));
    // Exactly the limit, plus one for each export that finished (freeing its place) before the last
    // answer: on a loaded machine one sometimes does, despite the file's size.
    const finishedDuringBurst = jobs.filter((job) => Date.parse(job.finishedAt ?? '') < answered).length;
    expect(accepted).toBe(limit + finishedDuringBurst);
    expect(await runningExports(user.username)).toBe(0);
    expect(await testBucket().listOpenUploads(`exports/${user.username}/`)).toEqual([]);
  }, 120_000);

  it('waves of starts while earlier exports finish: no 5xx, the limit holds, the counter ends true', async () => {
    const user = await newUser();
    const limit = config().exports.maxRunning;
    // Small: each export finishes within moments, so finishes overlap the next wave's starts.
    await testBucket().putObject(`uploads/${user.username}/quick.bin`, randomBytes(6 * MiB));

    const all: ApiResponse[] = [];
    let maxCounter = 0;
    for (let wave = 0; wave < 10; wave++) {
      const [responses, seen] = await Promise.all([
        Promise.all(Array.from({ length: 8 }, () => startExport(user, 'quick.bin', 'raw'))),
        runningExports(user.username),
      ]);
      all.push(...responses);
      // (A wave may accept more than the limit in all: exports that finish during it free places.)
      maxCounter = Math.max(maxCounter, seen, await runningExports(user.username));
      await sleep(150 + Math.random() * 250);
    }
    const statuses = summary(all);
    expect(statuses.filter((status) => status.startsWith('5'))).toEqual([]);
    expect(statuses.every((status) => status === '202' || status === '429 TooManyRequests')).toBe(true);
    expect(maxCounter).toBeLessThanOrEqual(limit);

    const accepted = all.filter((response) => response.status === 202).map((r) => r.body.job.jobId);
    // Finishes did free places: more were accepted in all than the limit.
    expect(accepted.length).toBeGreaterThan(limit);
    const jobs = await waitUntilSettled(user.username);
    expect(jobs.map((job) => job.jobId).sort()).toEqual([...accepted].sort());
    expect(jobs.filter((job) => job.status !== 'SUCCEEDED')).toEqual([]);
    // The counter equals the exports really running: none now.
    expect(await runningExports(user.username)).toBe(0);
    expect(await testBucket().listOpenUploads(`exports/${user.username}/`)).toEqual([]);
  }, 180_000);
});
