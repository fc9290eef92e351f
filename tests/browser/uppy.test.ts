import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { MiB } from '../../common/part-plan.ts';
import {
  artifactsDir,
  CHROMIUM_PATH,
  hasChromium,
  launchBrowser,
  type StaticServer,
  serveStatic,
  uppySnippetPage,
} from '../support/browser.ts';
import { expectSameBytes } from '../support/bytes.ts';
import { api } from '../support/http.ts';
import { testBucket } from '../support/s3.ts';
import { testStack } from '../support/stack-env.ts';
import { createTestUser } from '../support/users.ts';

/**
 * The real @uppy/aws-s3 6.x, in its companionEndpoint mode, in Debian's Chromium, against the
 * service's Companion routes: the README's snippet (bundled as it is written, with the test stack's
 * URL) on a plain page served from localhost. Screenshots go to .ci/artifacts/browser/.
 */

// CI (.ci/run) sets REQUIRE_BROWSER=1: there a missing browser fails the run instead of skipping.
const describeWithChromium = hasChromium() || process.env.REQUIRE_BROWSER === '1' ? describe : describe.skip;
const title = hasChromium()
  ? 'Uppy in Chromium'
  : `Uppy in Chromium (skipped: no browser at ${CHROMIUM_PATH}; apt-get install chromium, or set CHROMIUM_PATH)`;

const FILE_SIZE = 12 * MiB;
const file = randomBytes(FILE_SIZE);

interface PageEvent {
  type: string;
  at: number;
  detail?: any;
}

let server: StaticServer;
let browser: Awaited<ReturnType<typeof launchBrowser>>;
let context: BrowserContext;

beforeAll(async () => {
  if (!hasChromium() && process.env.REQUIRE_BROWSER !== '1') return;
  const page = await uppySnippetPage(testStack().apiUrl);
  server = await serveStatic({
    '/': { body: page.html, type: 'text/html; charset=utf-8' },
    '/page.js': { body: page.script, type: 'text/javascript' },
    '/file.bin': { body: file, type: 'application/octet-stream' },
  });
  browser = await launchBrowser();
  context = browser.context;
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

/** A page signed in as a fresh user (the snippet reads the token from sessionStorage). */
async function openPage() {
  const user = await createTestUser('uppy');
  const jwt = await user.token();
  const page = await context.newPage();
  const requests: string[] = [];
  page.on('request', (request) => requests.push(`${request.method()} ${request.url()}`));
  await page.goto(`${server.url}/`);
  await page.evaluate((token) => (globalThis as any).sessionStorage.setItem('fileJobsToken', token), jwt);
  return { page, user: { ...user, jwt }, requests };
}

const events = (page: Page): Promise<PageEvent[]> =>
  page.evaluate(() => (globalThis as any).harness.events as PageEvent[]);

async function waitForEvent(page: Page, type: string, timeout = 30_000): Promise<PageEvent> {
  const handle = await page.waitForFunction(
    (wanted) => (globalThis as any).harness.events.find((event: PageEvent) => event.type === wanted),
    type,
    { timeout },
  );
  return (await handle.jsonValue()) as PageEvent;
}

const shot = (page: Page, name: string) =>
  page.screenshot({ path: join(artifactsDir(), `uppy-${name}.png`) });

async function jobStatus(jwt: string, jobId: string): Promise<string> {
  return (await api(`/jobs/${jobId}`, { token: jwt })).body.job.status;
}

async function eventually<T>(
  read: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 30_000,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > until) return value;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describeWithChromium(title, () => {
  it('uploads a 12 MiB file, paused after its first part and resumed through the list-parts route', async () => {
    const { page, user, requests } = await openPage();
    const name = `uppy-${randomUUID().slice(0, 8)}.bin`;
    const fileId = await page.evaluate((n) => (globalThis as any).harness.add(n), name);
    await page.evaluate(() => (globalThis as any).harness.pauseAfter(1));
    const uploading = page.evaluate(() => (globalThis as any).harness.upload());

    await waitForEvent(page, 'paused');
    expect(await page.evaluate((id) => (globalThis as any).harness.isPaused(id), fileId)).toBe(true);
    await shot(page, '1-paused');
    const { uploadId, key } = (await waitForEvent(page, 'part-uploaded')).detail.upload;
    expect(key).toBe(`uploads/${user.username}/${name}`);
    expect(await jobStatus(user.jwt, uploadId)).toBe('UPLOADING');

    const listPartsCall = `GET ${testStack().apiUrl}/s3/multipart/${encodeURIComponent(uploadId)}?${new URLSearchParams({ key })}`;
    expect(requests).not.toContain(listPartsCall);
    await page.evaluate((id) => (globalThis as any).harness.resume(id), fileId);
    expect(await uploading).toEqual({ successful: 1, failed: 0 });
    await shot(page, '2-uploaded');

    // The resume asked the service which parts S3 holds, and sent only the rest.
    expect(requests).toContain(listPartsCall);
    const seen = await events(page);
    const success = seen.find((event) => event.type === 'success');
    expect(success?.detail.body).toMatchObject({
      key,
      location: expect.stringMatching(new RegExp(`/jobs/${uploadId}$`)),
    });
    expect(seen.filter((event) => event.type === 'error')).toEqual([]);
    const partPuts = requests.filter((line) => line.startsWith('PUT ') && line.includes(`partNumber=1&`));
    expect(partPuts).toHaveLength(1);

    expectSameBytes((await testBucket().getObjectBytes(key))!, file);
    const job = (await api(`/jobs/${uploadId}`, { token: user.jwt })).body.job;
    expect(job).toMatchObject({
      status: 'COMPLETED',
      filename: name,
      size: FILE_SIZE,
      partSize: 5 * MiB,
      partCount: 3,
      progress: { partsDone: 3, bytesDone: FILE_SIZE },
    });
    await page.close();
  });

  it('a create whose answer is lost: Uppy’s retry gets the upload the service opened (the snippet’s key per file)', async () => {
    const { page, user, requests } = await openPage();
    const name = `lost-${randomUUID().slice(0, 8)}.bin`;
    const createUrl = `${testStack().apiUrl}/s3/multipart`;
    // The first create reaches the service, which opens the upload; its answer never reaches Uppy.
    let creates = 0;
    await page.route(createUrl, async (route) => {
      if (route.request().method() !== 'POST' || ++creates > 1) return route.fallback();
      await route.fetch();
      await route.abort('connectionreset');
    });
    const fileId = await page.evaluate((n) => (globalThis as any).harness.add(n), name);
    expect(await page.evaluate(() => (globalThis as any).harness.upload())).toEqual({
      successful: 0,
      failed: 1,
    });
    const held = (await api('/jobs?type=upload', { token: user.jwt })).body.jobs;
    expect(held.map((job: any) => [job.filename, job.status])).toEqual([[name, 'UPLOADING']]);

    expect(await page.evaluate((id) => (globalThis as any).harness.retry(id), fileId)).toEqual({
      successful: 1,
      failed: 0,
    });
    await shot(page, '3-retried-after-lost-create');
    expect(requests.filter((line) => line === `POST ${createUrl}`)).toHaveLength(2);
    const jobs = (await api('/jobs?type=upload', { token: user.jwt })).body.jobs;
    expect(jobs.map((job: any) => [job.jobId, job.status])).toEqual([[held[0].jobId, 'COMPLETED']]);
    expectSameBytes((await testBucket().getObjectBytes(`uploads/${user.username}/${name}`))!, file);
    await page.close();
  });

  it('cancel: Uppy aborts through the service, the job is ABORTED and S3 holds no multipart upload', async () => {
    const { page, user, requests } = await openPage();
    const name = `cancel-${randomUUID().slice(0, 8)}.bin`;
    await page.evaluate((n) => (globalThis as any).harness.add(n), name);
    await page.evaluate(() => (globalThis as any).harness.cancelAfter(1));
    void page.evaluate(() => (globalThis as any).harness.upload()).catch(() => undefined);

    const part = await waitForEvent(page, 'part-uploaded');
    const { uploadId, key } = part.detail.upload;
    await waitForEvent(page, 'cancelled');
    await shot(page, '4-cancelled');

    expect(
      await eventually(
        () => jobStatus(user.jwt, uploadId),
        (status) => status === 'ABORTED',
      ),
    ).toBe('ABORTED');
    expect(requests).toContain(
      `DELETE ${testStack().apiUrl}/s3/multipart/${encodeURIComponent(uploadId)}?${new URLSearchParams({ key })}`,
    );
    // The job turns ABORTED before S3's abort returns (the status decides who cleans up), and Uppy
    // does not wait for the DELETE: S3's side follows within that call.
    expect(
      await eventually(
        () => testBucket().listOpenUploads(`uploads/${user.username}/`),
        (open) => open.length === 0,
      ),
    ).toEqual([]);
    expect(await testBucket().head(key)).toBeUndefined();
    await page.close();
  });
});
