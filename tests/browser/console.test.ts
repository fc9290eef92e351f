import { randomBytes, randomUUID } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Locator, Page, Route } from 'playwright-core';
import { checksumOf } from '../../common/checksums.ts';
import { MiB } from '../../common/part-plan.ts';
import { artifactsDir, CHROMIUM_PATH, hasChromium, launchBrowser } from '../support/browser.ts';
import { expectSameBytes } from '../support/bytes.ts';
import { testBucket } from '../support/s3.ts';
import { testStack } from '../support/stack-env.ts';
import { createTestUser } from '../support/users.ts';

/**
 * The web console (GET /) in Debian's Chromium, as a person uses it: sign in (a wrong password
 * first), upload a file through Uppy's Dashboard with its progress showing, kill an upload in flight,
 * export gzip and download it, sign out. A screenshot of each state goes to .ci/artifacts/browser/.
 * Part PUTs to S3 after the first are held where a state must be seen mid-upload (moto answers at once).
 */

const describeWithChromium = hasChromium() || process.env.REQUIRE_BROWSER === '1' ? describe : describe.skip;
const title = hasChromium()
  ? 'the web console in Chromium'
  : `the web console in Chromium (skipped: no browser at ${CHROMIUM_PATH}; apt-get install chromium, or set CHROMIUM_PATH)`;

const FILE_SIZE = 12 * MiB; // three of Uppy's 5 MiB parts
// Text, so that gzip has something to do: 64-byte lines.
const text = Buffer.from(
  Array.from(
    { length: FILE_SIZE / 64 },
    (_, i) => `${`line ${i} of the console test`.padEnd(63, '.')}\n`,
  ).join(''),
);

let browser: Awaited<ReturnType<typeof launchBrowser>>;

beforeAll(async () => {
  if (!hasChromium() && process.env.REQUIRE_BROWSER !== '1') return;
  browser = await launchBrowser();
}, 60_000);

afterAll(async () => {
  await browser?.close();
});

const shot = (page: Page, name: string) =>
  page.screenshot({ path: join(artifactsDir(), `console-${name}.png`), fullPage: true });

/**
 * Holds the PUTs of every part after the first, of every upload, until `release` (or for good): an
 * upload caught mid-flight with only part 1 in S3 (the console sends several parts at once).
 */
function holdLaterParts(page: Page) {
  const held: Route[] = [];
  let waiting: (() => void) | undefined;
  const laterPart = (url: URL) =>
    Number(url.searchParams.get('partNumber')) >= 2 && url.searchParams.has('uploadId');
  void page.route(laterPart, (route) => {
    held.push(route);
    waiting?.();
  });
  return {
    /** How many requests are being held. */
    count: () => held.length,
    /** Resolves once a later part is being held. */
    reached: () =>
      held.length > 0 ? Promise.resolve() : new Promise<void>((resolve) => (waiting = resolve)),
    release: async () => {
      await page.unrouteAll({ behavior: 'ignoreErrors' });
      for (const route of held.splice(0)) await route.continue().catch(() => undefined);
    },
    drop: async () => {
      for (const route of held.splice(0)) await route.abort().catch(() => undefined);
    },
    /**
     * Fails every later part, held or to come: before a page is closed mid-upload. A request still
     * held when its page closes may go out after all (seen: the part reached S3 in one run of three).
     */
    cut: async () => {
      await page.route(laterPart, (route) => route.abort());
      for (const route of held.splice(0)) await route.abort().catch(() => undefined);
    },
  };
}

const fileInput = (page: Page) =>
  page.locator('input.uppy-Dashboard-input[name="files[]"]:not([webkitdirectory])').first();

async function addFile(page: Page, name: string, buffer: Buffer) {
  // Once the Dashboard lists files, its "Add more" button brings the file inputs back.
  const addMore = page.locator('.uppy-DashboardContent-addMore');
  if (await addMore.isVisible()) await addMore.click();
  await fileInput(page).setInputFiles({ name, mimeType: 'text/plain', buffer });
  await page.getByRole('button', { name: /^Upload 1 file/ }).click();
}

/** Waits until the locator's text matches (jest has no Playwright matchers); returns the text. */
async function waitForText(locator: Locator, wanted: string | RegExp, timeout = 15_000): Promise<string> {
  const until = Date.now() + timeout;
  let seen = '';
  for (;;) {
    seen =
      (await locator
        .first()
        .textContent({ timeout: 1_000 })
        .catch(() => null)) ?? '';
    if (typeof wanted === 'string' ? seen.includes(wanted) : wanted.test(seen)) return seen;
    if (Date.now() > until)
      throw new Error(`waited ${timeout} ms for ${String(wanted)}; the text is ${JSON.stringify(seen)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const visible = (locator: Locator, timeout = 15_000) =>
  locator.first().waitFor({ state: 'visible', timeout });

/** Signs in on a fresh page (the browser's earlier session, another test's user, is dropped first). */
async function signIn(page: Page, user: { username: string; password: string }) {
  await page.context().clearCookies();
  await page.goto(`${testStack().apiUrl}/`);
  await page.getByLabel('Username').fill(user.username);
  await page.getByLabel('Password').fill(user.password);
  await page.getByLabel('Password').press('Enter');
  await visible(page.getByText(`Signed in as ${user.username}`), 30_000);
}

/**
 * Whether Golden Retriever has stored what a reopened page needs to resume this user's upload: the
 * file's upload id (its metadata record, under the console's per-user Uppy id) and, with `blob`, the
 * file's bytes. Read from the page's IndexedDB, where the plugin keeps both.
 */
const savedForResume = (page: Page, username: string, blob: boolean): Promise<boolean> =>
  page.evaluate(`(async () => {
    const db = await new Promise((resolve, reject) => {
      const request = indexedDB.open('uppy-blobs');
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    const read = (store, ask) => new Promise((resolve, reject) => {
      const request = ask(db.transaction([store]).objectStore(store));
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    const id = ${JSON.stringify(`console-${username}`)};
    const record = await read('metadata', (store) => store.get(id));
    const blobs = await read('files', (store) => store.index('store').getAllKeys(IDBKeyRange.only(id)));
    db.close();
    const files = record ? Object.values(JSON.parse(record.metadata).files) : [];
    return files.some((file) => file.s3Multipart && file.s3Multipart.uploadId) && (${blob} ? blobs.length > 0 : true);
  })()`);

async function waitUntil(check: () => Promise<boolean>, what: string, timeout = 15_000) {
  const until = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`waited ${timeout} ms for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The part PUTs (by part number, in order: several go at once) and the creates a page sends from now on. */
function countUploadRequests(page: Page) {
  const seen = { parts: [] as number[], creates: 0 };
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (request.method() === 'PUT' && url.searchParams.has('uploadId')) {
      seen.parts.push(Number(url.searchParams.get('partNumber')));
      seen.parts.sort((a, b) => a - b);
    }
    if (request.method() === 'POST' && url.pathname === '/s3/multipart') seen.creates++;
  });
  return seen;
}

/** Resolves once S3 has answered the PUT of part 1. */
const partOneStored = (page: Page) =>
  page.waitForResponse(
    (response) =>
      response.request().method() === 'PUT' &&
      new URL(response.url()).searchParams.get('partNumber') === '1' &&
      response.status() === 200,
    { timeout: 30_000 },
  );

/**
 * Signs in, starts uploading `file` (a path, or bytes) with its parts after the first held, and closes the page once
 * part 1 is in S3 and Golden Retriever has saved the upload (with the file's bytes when `blob`): a
 * tab closed mid-upload.
 */
async function closeMidUpload(
  user: { username: string; password: string },
  file: string | { name: string; mimeType: string; buffer: Buffer },
  blob: boolean,
) {
  const page = await browser.context.newPage();
  await signIn(page, user);
  const held = holdLaterParts(page);
  const stored = partOneStored(page);
  await fileInput(page).setInputFiles(file);
  await page.getByRole('button', { name: /^Upload 1 file/ }).click();
  await Promise.all([stored, held.reached()]);
  await waitUntil(() => savedForResume(page, user.username, blob), 'the upload to be saved for resuming');
  await held.cut();
  await page.close();
}

/** The console opened again in the same browser, with what it sends counted from the start. */
async function reopen(user: { username: string }) {
  const page = await browser.context.newPage();
  const sent = countUploadRequests(page);
  await page.goto(`${testStack().apiUrl}/`);
  await visible(page.getByText(`Signed in as ${user.username}`), 30_000);
  await visible(page.locator('.uppy-Dashboard-Item'));
  return { page, sent };
}

/**
 * Puts `bytes` in S3 as part 1 of the user's upload in flight of `name`, as another client would: its
 * URL asked for with the bytes' CRC32 (the console's uploads check every part). The job and its key.
 */
async function replacePartOne(
  user: { username: string; token(): Promise<string> },
  name: string,
  bytes: Buffer,
) {
  const auth = { authorization: `Bearer ${await user.token()}` };
  const { jobs } = (await (
    await fetch(`${testStack().apiUrl}/jobs?type=upload`, { headers: auth })
  ).json()) as {
    jobs: { jobId: string; status: string }[];
  };
  const old = jobs.find((job) => job.status === 'UPLOADING')!;
  const key = `uploads/${user.username}/${name}`;
  const checksum = await checksumOf('CRC32', bytes);
  const signed = (await (
    await fetch(
      `${testStack().apiUrl}/s3/multipart/${old.jobId}/1?${new URLSearchParams({ key, checksum })}`,
      {
        headers: auth,
      },
    )
  ).json()) as { url: string; headers: Record<string, string> };
  const put = await fetch(signed.url, { method: 'PUT', body: bytes, headers: signed.headers });
  expect(put.status).toBe(200);
  return { old, key, auth };
}

const jobRow = (page: Page, filename: string, kind: RegExp) =>
  page.locator('#jobs tbody tr').filter({ hasText: filename }).filter({ hasText: kind });

describeWithChromium(title, () => {
  it('signs in, uploads with progress, kills an upload in flight, exports gzip, downloads it, signs out', async () => {
    const user = await createTestUser('console');
    const page = await browser.context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    page.on('console', (message) => {
      if (message.type() === 'error') pageErrors.push(message.text());
    });
    await page.goto(`${testStack().apiUrl}/`);

    // 1. A wrong password shows the service's message.
    await page.getByLabel('Username').fill(user.username);
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    expect(await waitForText(page.getByRole('alert'), 'wrong')).toBe('the username or password is wrong');
    await shot(page, '1-signin-error');

    // 2. Signed in: the session cookie is HttpOnly, so the page never holds the token.
    await page.getByLabel('Password').fill(user.password);
    await page.getByLabel('Password').press('Enter');
    await visible(page.getByText(`Signed in as ${user.username}`));
    const cookies = await browser.context.cookies(testStack().apiUrl);
    expect(cookies.find((cookie) => cookie.name === 'fj_session')).toMatchObject({
      httpOnly: true,
      sameSite: 'Strict',
    });
    expect(await page.evaluate(() => (globalThis as any).document.cookie)).not.toContain('fj_session');
    await visible(page.getByText('No jobs yet.'));
    await shot(page, '2-signed-in');

    // 3. An upload, held after its first part: the Dashboard and the jobs list show its progress.
    const kept = `kept-${randomUUID().slice(0, 8)}.txt`;
    let hold = holdLaterParts(page);
    await addFile(page, kept, text);
    await hold.reached();
    await waitForText(page.locator('.uppy-StatusBar'), /\d+%/);
    const keptRow = jobRow(page, kept, /upload/);
    await waitForText(keptRow, 'UPLOADING');
    await waitForText(keptRow.locator('td.progress'), /\b([1-9]\d?) %/);
    await shot(page, '3-uploading');
    await hold.release();
    await waitForText(keptRow, 'COMPLETED', 30_000);
    await visible(page.locator('#files tbody tr').filter({ hasText: kept }));
    await shot(page, '4-uploaded');
    expectSameBytes((await testBucket().getObjectBytes(`uploads/${user.username}/${kept}`))!, text);

    // 4. Kill all uploads while one is in flight: its job is ABORTED and S3 holds no multipart upload.
    const killed = `killed-${randomUUID().slice(0, 8)}.bin`;
    hold = holdLaterParts(page);
    await addFile(page, killed, randomBytes(FILE_SIZE));
    await hold.reached();
    const killedRow = jobRow(page, killed, /upload/);
    await waitForText(killedRow, 'UPLOADING');
    await page.getByRole('button', { name: 'Kill all uploads' }).click();
    await waitForText(page.locator('#notice'), `killed 1 upload(s): ${killed}`);
    await waitForText(killedRow, 'ABORTED');
    await hold.drop();
    await hold.release();
    expect(await testBucket().listOpenUploads(`uploads/${user.username}/`)).toEqual([]);
    expect(await testBucket().head(`uploads/${user.username}/${killed}`)).toBeUndefined();
    await shot(page, '5-killed');

    // 5. Export the kept file as gzip: progress to SUCCEEDED, then the download link.
    await page.getByRole('button', { name: `Export ${kept} as gzip` }).click();
    const exportRow = jobRow(page, kept, /export \(gzip\)/);
    await visible(exportRow);
    await waitForText(exportRow, 'SUCCEEDED', 60_000);
    const link = exportRow.getByRole('link', { name: 'Download' });
    const href = await link.getAttribute('href');
    expect(href).toMatch(/^http/);
    await shot(page, '6-exported');
    const download = await fetch(href!);
    expect(download.status).toBe(200);
    expectSameBytes(gunzipSync(Buffer.from(await download.arrayBuffer())), text);

    // 6. Sign out: the cookies are gone and the sign-in form is back; the API no longer knows the page,
    // and the sign-in is ended: its token, wherever it might have been copied, is refused.
    const cookieToken = (await browser.context.cookies(testStack().apiUrl)).find(
      (cookie) => cookie.name === 'fj_session',
    )!.value;
    await page.getByRole('button', { name: 'Sign out' }).click();
    await visible(page.getByRole('heading', { name: 'Sign in' }));
    expect(await waitForText(page.getByRole('alert'), 'signed out')).toBe('signed out');
    const left = await browser.context.cookies(testStack().apiUrl);
    expect(left.filter((cookie) => cookie.name.startsWith('fj_'))).toEqual([]);
    const after = await page.evaluate(async () => (await fetch('/auth/session')).status);
    expect(after).toBe(401);
    const renewal = await fetch(`${testStack().apiUrl}/auth/renew`, {
      method: 'POST',
      headers: { authorization: `Bearer ${cookieToken}` },
    });
    expect(renewal.status).toBe(401);
    await shot(page, '7-signed-out');

    // The page ran without a script error (a CSP violation would show here too).
    expect(
      pageErrors.filter((message) => !/status of 40[134]|Failed to load resource/.test(message)),
    ).toEqual([]);
    await page.close();
  }, 180_000);

  it('a name held by an upload that holds no part yet (its page closed at once): resumed on request, in the same job', async () => {
    const user = await createTestUser('orphan');
    const name = `held-${randomUUID().slice(0, 8)}.txt`;
    // What a page closed right after its create leaves: an upload job holding the name, no part in S3.
    const orphan = await fetch(`${testStack().apiUrl}/s3/multipart`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await user.token()}`, 'content-type': 'application/json' },
      body: JSON.stringify({ filename: name, type: 'text/plain' }),
    });
    expect(orphan.status).toBe(200);
    const { uploadId: orphanId } = (await orphan.json()) as { uploadId: string };

    const page = await browser.context.newPage();
    await page.goto(`${testStack().apiUrl}/`);
    await page.getByLabel('Username').fill(user.username);
    await page.getByLabel('Password').fill(user.password);
    await page.getByLabel('Password').press('Enter');
    await visible(page.getByText(`Signed in as ${user.username}`), 30_000);
    const small = text.subarray(0, 64 * 1024);
    await addFile(page, name, small);
    // Uppy itself only knows "Conflict": the page reads the service's answer and says what to do.
    expect(await waitForText(page.locator('#notice'), 'Resume it here')).toBe(
      `${name} is already being uploaded by job ${orphanId}, from a page closed mid-way or another browser; S3 holds no part of it yet. If no other page is still sending it: Resume it here`,
    );
    await shot(page, '8-name-held');

    await page.getByRole('button', { name: 'Resume it here' }).click();
    const rows = page.locator('#jobs tbody tr').filter({ hasText: name });
    await waitForText(rows.filter({ hasText: 'COMPLETED' }), 'COMPLETED', 30_000);
    expect(await rows.count()).toBe(1);
    expect(await rows.first().getAttribute('data-job-id')).toBe(orphanId);
    expectSameBytes((await testBucket().getObjectBytes(`uploads/${user.username}/${name}`))!, small);
    await page.close();
  }, 90_000);

  it('a name held by an upload from the CLI: the notice names it and offers to cancel it; the file then uploads', async () => {
    const user = await createTestUser('held');
    const name = `cli-${randomUUID().slice(0, 8)}.txt`;
    const small = text.subarray(0, 64 * 1024);
    // POST /upload, as the CLI and the client library open an upload: its parts are not Uppy's.
    const held = await fetch(`${testStack().apiUrl}/upload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await user.token()}`, 'content-type': 'application/json' },
      body: JSON.stringify({ filename: name, size: small.length }),
    });
    expect(held.status).toBe(201);
    const { job } = (await held.json()) as { job: { jobId: string } };

    const page = await browser.context.newPage();
    await signIn(page, user);
    await addFile(page, name, small);
    expect(await waitForText(page.locator('#notice'), 'Cancel it and send')).toBe(
      `${name} is already being uploaded by job ${job.jobId}, from the CLI or the API, which this page cannot resume: Cancel it and send this file`,
    );
    await page.getByRole('button', { name: 'Cancel it and send this file' }).click();
    const rows = page.locator('#jobs tbody tr').filter({ hasText: name });
    await waitForText(rows.filter({ hasText: 'COMPLETED' }), 'COMPLETED', 30_000);
    await waitForText(rows.filter({ hasText: 'ABORTED' }), 'ABORTED');
    expectSameBytes((await testBucket().getObjectBytes(`uploads/${user.username}/${name}`))!, small);
    await page.close();
  }, 90_000);

  it('sends several parts of a file at once, and pauses and resumes from the parts S3 holds', async () => {
    const user = await createTestUser('pause');
    const name = `paused-${randomUUID().slice(0, 8)}.txt`;
    const page = await browser.context.newPage();
    await signIn(page, user);
    const hold = holdLaterParts(page);
    const stored = partOneStored(page);
    await addFile(page, name, text);
    // Parts 2 and 3 are both on their way while part 1 is: no waiting for one part to end.
    await stored;
    await waitUntil(async () => hold.count() === 2, 'parts 2 and 3 in flight at once');
    await page.getByRole('button', { name: 'Pause upload' }).click();
    // The paused page gave those PUTs up: abort them here too, so that none goes out later after all.
    await hold.drop();
    await page.unrouteAll({ behavior: 'ignoreErrors' });

    const sent = countUploadRequests(page);
    await page.getByRole('button', { name: 'Resume upload' }).click();
    await waitForText(jobRow(page, name, /upload/).filter({ hasText: 'COMPLETED' }), 'COMPLETED', 30_000);
    expect(sent).toEqual({ parts: [2, 3], creates: 0 });
    expectSameBytes((await testBucket().getObjectBytes(`uploads/${user.username}/${name}`))!, text);
    await page.close();
  }, 90_000);

  it('uploads an empty file', async () => {
    const user = await createTestUser('empty');
    const name = `empty-${randomUUID().slice(0, 8)}.txt`;
    const page = await browser.context.newPage();
    await signIn(page, user);
    await addFile(page, name, Buffer.alloc(0));
    await waitForText(jobRow(page, name, /upload/).filter({ hasText: 'COMPLETED' }), 'COMPLETED', 30_000);
    expect((await testBucket().getObjectBytes(`uploads/${user.username}/${name}`))!.length).toBe(0);
    await page.close();
  }, 60_000);

  it('checks every part and the whole file: each PUT carries the CRC32 its URL binds, the completion the file’s', async () => {
    const user = await createTestUser('crc');
    const name = `crc-${randomUUID().slice(0, 8)}.txt`;
    const file = text.subarray(0, 11 * MiB);
    const page = await browser.context.newPage();
    const puts: { partNumber: number; header?: string; signed: string }[] = [];
    let completion: { checksum?: string } | undefined;
    page.on('request', (request) => {
      const url = new URL(request.url());
      if (request.method() === 'PUT' && url.searchParams.has('uploadId')) {
        puts.push({
          partNumber: Number(url.searchParams.get('partNumber')),
          header: request.headers()['x-amz-checksum-crc32'],
          signed: url.searchParams.get('X-Amz-SignedHeaders') ?? '',
        });
      }
      if (request.method() === 'POST' && url.pathname.endsWith('/complete'))
        completion = request.postDataJSON();
    });
    await signIn(page, user);
    await addFile(page, name, file);
    const row = jobRow(page, name, /upload/).filter({ hasText: 'COMPLETED' });
    await waitForText(row, 'COMPLETED', 30_000);

    const parts = [file.subarray(0, 5 * MiB), file.subarray(5 * MiB, 10 * MiB), file.subarray(10 * MiB)];
    expect(puts.sort((a, b) => a.partNumber - b.partNumber)).toEqual(
      await Promise.all(
        parts.map(async (part, index) => ({
          partNumber: index + 1,
          header: await checksumOf('CRC32', part),
          signed: 'host;x-amz-checksum-crc32',
        })),
      ),
    );
    const whole = await checksumOf('CRC32', file);
    expect(completion?.checksum).toBe(whole);
    const jobId = await row.first().getAttribute('data-job-id');
    const job = await fetch(`${testStack().apiUrl}/jobs/${jobId}`, {
      headers: { authorization: `Bearer ${await user.token()}` },
    });
    expect(((await job.json()) as { job: { checksumAlgorithm: string } }).job.checksumAlgorithm).toBe(
      'CRC32',
    );
    expectSameBytes((await testBucket().getObjectBytes(`uploads/${user.username}/${name}`))!, file);
    await page.close();
  }, 60_000);

  (testStack().emulator?.s3 === 'localstack' ? it : it.skip)(
    'a part whose bytes change on the way is refused by S3 (BadDigest), and the retry sends it right (LocalStack: moto checks no checksum)',
    async () => {
      const user = await createTestUser('flip');
      const name = `flip-${randomUUID().slice(0, 8)}.txt`;
      const file = text.subarray(0, 11 * MiB);
      const page = await browser.context.newPage();
      await signIn(page, user);
      // Part 2 leaves the page with one bit flipped, as a faulty proxy or NIC would pass it on.
      const flipped = Buffer.from(file.subarray(5 * MiB, 10 * MiB));
      flipped[1_234_567]! ^= 0x04;
      const partTwo = (url: URL) =>
        url.searchParams.get('partNumber') === '2' && url.searchParams.has('uploadId');
      let corrupted = 0;
      await page.route(partTwo, (route) => {
        corrupted++;
        return route.continue({ postData: flipped });
      });
      await addFile(page, name, file);
      // S3 answers 400 BadDigest; LocalStack's answer carries no CORS headers, so the page sees a
      // network error (and its retries are corrupted too).
      expect(await waitForText(page.locator('#notice'), name, 30_000)).toMatch(new RegExp(`^${name}: `));
      expect(corrupted).toBeGreaterThanOrEqual(1);
      expect(await testBucket().head(`uploads/${user.username}/${name}`)).toBeUndefined();
      await page.unroute(partTwo);
      await page.locator('.uppy-StatusBar-actionBtn--retry').click();
      await waitForText(jobRow(page, name, /upload/).filter({ hasText: 'COMPLETED' }), 'COMPLETED', 30_000);
      expectSameBytes((await testBucket().getObjectBytes(`uploads/${user.username}/${name}`))!, file);
      await page.close();
    },
    60_000,
  );

  it('a file whose name is already in the files: refused with a notice, replaced on request', async () => {
    const user = await createTestUser('replace');
    const name = `same-${randomUUID().slice(0, 8)}.txt`;
    const page = await browser.context.newPage();
    await signIn(page, user);
    const rows = page.locator('#jobs tbody tr').filter({ hasText: name });
    await addFile(page, name, text.subarray(0, 1000));
    await waitForText(rows.filter({ hasText: 'COMPLETED' }), 'COMPLETED', 30_000);

    const newer = text.subarray(5000, 7000);
    await addFile(page, name, newer);
    expect(await waitForText(page.locator('#notice'), 'already in your files')).toBe(
      `${name} is already in your files Replace ${name}`,
    );
    // Refused before any job: still the one upload.
    expect(await rows.count()).toBe(1);
    await page.getByRole('button', { name: `Replace ${name}` }).click();
    await waitUntil(
      async () => (await rows.filter({ hasText: 'COMPLETED' }).count()) === 2,
      'the second upload',
    );
    expectSameBytes((await testBucket().getObjectBytes(`uploads/${user.username}/${name}`))!, newer);
    await page.close();
  }, 90_000);

  it('a page closed mid-upload: opened again, its file resumes from the parts S3 holds', async () => {
    const user = await createTestUser('resume');
    const name = `resume-${randomUUID().slice(0, 8)}.txt`;
    const file = text.subarray(0, 9 * MiB); // two parts, and small enough for the browser to keep
    await closeMidUpload(user, { name, mimeType: 'text/plain', buffer: file }, true);

    const second = await reopen(user);
    await shot(second.page, '9-restored');
    // The page told the service the file's size (Uppy does not): the job counts it from the start,
    // and completes only with exactly that many bytes in S3.
    const jobs = await fetch(`${testStack().apiUrl}/jobs?type=upload`, {
      headers: { authorization: `Bearer ${await user.token()}` },
    });
    const [job] = ((await jobs.json()) as { jobs: { size: number; status: string }[] }).jobs;
    expect(job).toMatchObject({ size: file.length, status: 'UPLOADING' });
    await second.page.locator('.uppy-StatusBar-actionBtn--upload').click();
    await waitForText(
      jobRow(second.page, name, /upload/).filter({ hasText: 'COMPLETED' }),
      'COMPLETED',
      30_000,
    );
    // The same job finished it: no new create, and only the part S3 lacked was sent.
    expect(second.sent).toEqual({ parts: [2], creates: 0 });
    expect(await jobRow(second.page, name, /upload/).count()).toBe(1);
    expectSameBytes((await testBucket().getObjectBytes(`uploads/${user.username}/${name}`))!, file);
    await second.page.close();
  }, 120_000);

  it('a large file from a closed page resumes once picked again', async () => {
    const user = await createTestUser('regain');
    const name = `regain-${randomUUID().slice(0, 8)}.txt`;
    // Over what the browser keeps (10 MiB), so the reopened page asks for it again. From a file on
    // disk: picked again it is the same file to Uppy (name, size and modification time).
    const path = join(tmpdir(), name);
    await writeFile(path, text);
    try {
      await closeMidUpload(user, path, false);
      const second = await reopen(user);
      await shot(second.page, '10-ghost');
      // Picked again through the Dashboard's "Add more": the ghost takes the file's bytes back.
      await second.page.locator('.uppy-DashboardContent-addMore').click();
      await fileInput(second.page).setInputFiles(path);
      await second.page.locator('.uppy-StatusBar-actionBtn--upload').click();
      await waitForText(
        jobRow(second.page, name, /upload/).filter({ hasText: 'COMPLETED' }),
        'COMPLETED',
        30_000,
      );
      expect(second.sent).toEqual({ parts: [2, 3], creates: 0 });
      expectSameBytes((await testBucket().getObjectBytes(`uploads/${user.username}/${name}`))!, text);
      await second.page.close();
    } finally {
      await rm(path, { force: true });
    }
  }, 120_000);

  describe('a file whose name an upload from another browser holds (its page closed mid-way)', () => {
    let elsewhere: Awaited<ReturnType<typeof launchBrowser>>;
    beforeAll(async () => {
      if (browser) elsewhere = await launchBrowser();
    }, 60_000);
    afterAll(async () => {
      await elsewhere?.close();
    });

    /** The user signed in on a fresh page of the other browser, with what it sends counted. */
    async function inOtherBrowser(user: { username: string; password: string }) {
      const page = await elsewhere.context.newPage();
      await signIn(page, user);
      return { page, sent: countUploadRequests(page) };
    }

    it('is resumed there, once its bytes match the parts S3 holds: only the missing parts are sent', async () => {
      const user = await createTestUser('elsewhere');
      const name = `elsewhere-${randomUUID().slice(0, 8)}.txt`;
      await closeMidUpload(user, { name, mimeType: 'text/plain', buffer: text }, false);

      const { page, sent } = await inOtherBrowser(user);
      await addFile(page, name, text);
      const offer = await waitForText(page.locator('#notice'), 'Resume it here', 30_000);
      expect(offer).toMatch(
        new RegExp(
          `^${name} is already being uploaded by job \\w+, .* the 1 part\\(s\\) S3 holds of it are this file's`,
        ),
      );
      await shot(page, '11-resume-offered');
      await page.getByRole('button', { name: 'Resume it here' }).click();
      await waitForText(jobRow(page, name, /upload/).filter({ hasText: 'COMPLETED' }), 'COMPLETED', 30_000);
      // The refused create, then parts 2 and 3 only, into the same job.
      expect(sent).toEqual({ parts: [2, 3], creates: 1 });
      expect(await page.locator('#jobs tbody tr').filter({ hasText: name }).count()).toBe(1);
      expectSameBytes((await testBucket().getObjectBytes(`uploads/${user.username}/${name}`))!, text);
      await page.close();
    }, 120_000);

    it('holding another file of that name and size, is not resumed: replaced on request, every part sent', async () => {
      const user = await createTestUser('replaced');
      const name = `replaced-${randomUUID().slice(0, 8)}.txt`;
      await closeMidUpload(user, { name, mimeType: 'text/plain', buffer: text }, false);

      const changed = Buffer.from(text);
      changed.write('an edit in part 1', 1000);
      const { page, sent } = await inOtherBrowser(user);
      await addFile(page, name, changed);
      expect(await waitForText(page.locator('#notice'), 'Replace it', 30_000)).toMatch(
        new RegExp(`^upload job \\w+ is sending another file named ${name} \\(part 1: its bytes differ\\)`),
      );
      expect(await page.getByRole('button', { name: 'Resume it here' }).count()).toBe(0);
      await page.getByRole('button', { name: 'Replace it with this file' }).click();
      await waitForText(jobRow(page, name, /upload/).filter({ hasText: 'COMPLETED' }), 'COMPLETED', 30_000);
      expect(
        await waitForText(jobRow(page, name, /upload/).filter({ hasText: 'ABORTED' }), 'ABORTED'),
      ).toBeTruthy();
      expect(sent).toEqual({ parts: [1, 2, 3], creates: 2 });
      expectSameBytes((await testBucket().getObjectBytes(`uploads/${user.username}/${name}`))!, changed);
      await page.close();
    }, 120_000);
  });

  it('a file from a closed page whose upload S3 holds in parts of other sizes is sent again as a new upload', async () => {
    const user = await createTestUser('recut');
    const name = `recut-${randomUUID().slice(0, 8)}.txt`;
    const file = text.subarray(0, 9 * MiB);
    await closeMidUpload(user, { name, mimeType: 'text/plain', buffer: file }, true);
    // Part 1 again, 6 MiB instead of the console's 5: an upload cut another way (an earlier page).
    const { old, key, auth } = await replacePartOne(user, name, randomBytes(6 * MiB));

    const second = await reopen(user);
    await second.page.locator('.uppy-StatusBar-actionBtn--upload').click();
    const done = jobRow(second.page, name, /upload/).filter({ hasText: 'COMPLETED' });
    await waitForText(done, 'COMPLETED', 30_000);
    expect(second.sent).toEqual({ parts: [1, 2], creates: 1 });
    expect(await done.first().getAttribute('data-job-id')).not.toBe(old.jobId);
    expectSameBytes((await testBucket().getObjectBytes(key))!, file);
    const oldJob = await fetch(`${testStack().apiUrl}/jobs/${old.jobId}`, { headers: auth });
    expect(((await oldJob.json()) as { job: { status: string } }).job.status).toBe('ABORTED');
    await second.page.close();
  }, 120_000);

  (testStack().emulator?.s3 === 'localstack' ? it : it.skip)(
    'a file from a closed page whose upload S3 holds a part of another file for: S3 refuses the completion, the page sends that part again (LocalStack)',
    async () => {
      const user = await createTestUser('foreign');
      const name = `foreign-${randomUUID().slice(0, 8)}.txt`;
      const file = text.subarray(0, 9 * MiB);
      await closeMidUpload(user, { name, mimeType: 'text/plain', buffer: file }, true);
      // Part 1 replaced by 5 MiB of another file, sent right (its own checksum): the sizes fit, so
      // the reopened page takes it for its own until S3 checks the whole file.
      const { old: held, key } = await replacePartOne(user, name, randomBytes(5 * MiB));

      const second = await reopen(user);
      await second.page.locator('.uppy-StatusBar-actionBtn--upload').click();
      const done = jobRow(second.page, name, /upload/).filter({ hasText: 'COMPLETED' });
      await waitForText(done, 'COMPLETED', 30_000);
      // Part 2, then part 1 again once the completion was refused; the same job throughout.
      expect(second.sent).toEqual({ parts: [1, 2], creates: 0 });
      expect(await done.first().getAttribute('data-job-id')).toBe(held.jobId);
      expectSameBytes((await testBucket().getObjectBytes(key))!, file);
      await second.page.close();
    },
    120_000,
  );

  it('a file from a closed page whose upload job has ended since is sent again from the start', async () => {
    const user = await createTestUser('restart');
    const name = `restart-${randomUUID().slice(0, 8)}.txt`;
    const file = text.subarray(0, 9 * MiB);
    await closeMidUpload(user, { name, mimeType: 'text/plain', buffer: file }, true);
    // Ended while no page was open (here a kill from another client; the janitor's expiry alike).
    const kill = await fetch(`${testStack().apiUrl}/upload/kill`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${await user.token()}` },
    });
    expect(kill.status).toBe(200);

    const second = await reopen(user);
    await second.page.locator('.uppy-StatusBar-actionBtn--upload').click();
    expect(await waitForText(second.page.locator('#notice'), 'has ended')).toMatch(
      new RegExp(`^the earlier upload of ${name} \\(job \\w+\\) has ended; sending ${name} again$`),
    );
    const done = jobRow(second.page, name, /upload/).filter({ hasText: 'COMPLETED' });
    await waitForText(done, 'COMPLETED', 30_000);
    expect(second.sent).toEqual({ parts: [1, 2], creates: 1 });
    expectSameBytes((await testBucket().getObjectBytes(`uploads/${user.username}/${name}`))!, file);
    await second.page.close();
  }, 120_000);

  it("renews its session while open: the cookie gets the same sign-in's next token before this one expires", async () => {
    const user = await createTestUser('renewing');
    const page = await browser.context.newPage();
    // The page's own clock, to let the 40 minutes until its renewal pass at once.
    await page.clock.install();
    await signIn(page, user);
    const sessionCookie = async () =>
      (await browser.context.cookies(testStack().apiUrl)).find((cookie) => cookie.name === 'fj_session')!
        .value;
    const before = await sessionCookie();
    const renewed = page.waitForResponse(
      (response) => new URL(response.url()).pathname === '/auth/session/renew',
    );
    await page.clock.fastForward('41:00');
    expect((await renewed).status()).toBe(200);
    const after = await sessionCookie();
    expect(after).not.toBe(before);
    const claims = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
    expect(claims(after)).toMatchObject({ sub: user.username, auth_time: claims(before).auth_time });
    // The page goes on with the new cookie and its CSRF token: a kill (a POST) still passes.
    await page.getByRole('button', { name: 'Kill all uploads' }).click();
    await waitForText(page.locator('#notice'), /no upload/i);
    await page.close();
  }, 60_000);

  it('works on a phone-sized screen with the keyboard alone', async () => {
    const user = await createTestUser('phone');
    // Signed out: the test before this one leaves its session's cookie, and the page would take the
    // answer to its session check as that user's sign-in whenever it came before the Enter below
    // (what made this test fail now and then on a loaded machine).
    await browser.context.clearCookies();
    const page = await browser.context.newPage();
    await page.setViewportSize({ width: 390, height: 844 });
    // The page's "who is signed in?" check is held until the person has typed: on a slow network
    // they type before it answers, and nothing typed may be lost or moved.
    let releaseSessionCheck = () => {};
    const sessionCheckHeld = new Promise<void>((resolve) => (releaseSessionCheck = resolve));
    await page.route(
      (url) => url.pathname === '/auth/session',
      async (route) => {
        if (route.request().method() === 'GET') await sessionCheckHeld;
        await route.continue();
      },
    );
    await page.goto(`${testStack().apiUrl}/`);
    // The sign-in form has the focus from the start; Tab, typing and Enter are enough.
    await visible(page.getByRole('heading', { name: 'Sign in' }));
    await page.waitForFunction(
      () => (globalThis as any).document.activeElement?.id === 'username-input',
      null,
      {
        timeout: 15_000,
      },
    );
    await page.keyboard.type(user.username);
    await page.keyboard.press('Tab');
    await page.keyboard.type(user.password);
    releaseSessionCheck();
    // Its answer (not signed in) leaves the form as typed and the focus where it is.
    const sessionCheck = await page.waitForResponse((response) => response.url().endsWith('/auth/session'));
    expect(sessionCheck.status()).toBe(401);
    await page.keyboard.press('Enter');
    // Sign-in runs scrypt with 128 MiB, slow on a loaded machine (30 s was seen to fall short twice,
    // each time with a CI run beside the tests).
    await visible(page.getByText(`Signed in as ${user.username}`), 75_000);
    // Nothing wider than the screen.
    const widths = await page.evaluate(() => {
      const root = (globalThis as any).document.documentElement;
      return { content: root.scrollWidth as number, screen: (globalThis as any).innerWidth as number };
    });
    expect(widths.content).toBeLessThanOrEqual(widths.screen);
    // Reach "Kill all uploads" by Tab and press it: nothing runs, and the page says so.
    const kill = page.getByRole('button', { name: 'Kill all uploads' });
    for (
      let i = 0;
      i < 40 && !(await kill.evaluate((node) => node === (node as any).ownerDocument.activeElement));
      i++
    )
      await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    await waitForText(page.locator('#notice'), `no upload found for user ${user.username}`);
    await shot(page, '9-phone');
    await page.close();
  }, 120_000);
});
