import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Locator, Page, Route } from 'playwright-core';
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
 * Part PUTs to S3 are held at part 2 where a state must be seen mid-upload (moto answers at once).
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

/** Holds the PUT of part 2 of every upload until `release` (or for good): an upload caught mid-flight. */
function holdSecondParts(page: Page) {
  const held: Route[] = [];
  let waiting: (() => void) | undefined;
  void page.route(
    (url) => url.searchParams.get('partNumber') === '2' && url.searchParams.has('uploadId'),
    (route) => {
      held.push(route);
      waiting?.();
    },
  );
  return {
    /** Resolves once a part 2 is being held. */
    reached: () =>
      held.length > 0 ? Promise.resolve() : new Promise<void>((resolve) => (waiting = resolve)),
    release: async () => {
      await page.unrouteAll({ behavior: 'ignoreErrors' });
      for (const route of held.splice(0)) await route.continue().catch(() => undefined);
    },
    drop: async () => {
      for (const route of held.splice(0)) await route.abort().catch(() => undefined);
    },
  };
}

async function addFile(page: Page, name: string, buffer: Buffer) {
  // Once the Dashboard lists files, its "Add more" button brings the file inputs back.
  const addMore = page.locator('.uppy-DashboardContent-addMore');
  if (await addMore.isVisible()) await addMore.click();
  await page
    .locator('input.uppy-Dashboard-input[name="files[]"]:not([webkitdirectory])')
    .first()
    .setInputFiles({ name, mimeType: 'text/plain', buffer });
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
    let hold = holdSecondParts(page);
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
    hold = holdSecondParts(page);
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

    // 6. Sign out: the cookies are gone and the sign-in form is back; the API no longer knows the page.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await visible(page.getByRole('heading', { name: 'Sign in' }));
    expect(await waitForText(page.getByRole('alert'), 'signed out')).toBe('signed out');
    const left = await browser.context.cookies(testStack().apiUrl);
    expect(left.filter((cookie) => cookie.name.startsWith('fj_'))).toEqual([]);
    const after = await page.evaluate(async () => (await fetch('/auth/session')).status);
    expect(after).toBe(401);
    await shot(page, '7-signed-out');

    // The page ran without a script error (a CSP violation would show here too).
    expect(
      pageErrors.filter((message) => !/status of 40[134]|Failed to load resource/.test(message)),
    ).toEqual([]);
    await page.close();
  }, 180_000);

  it('a name held by an upload from a closed page: the notice names it; cancel it, retry, and the file uploads', async () => {
    const user = await createTestUser('orphan');
    const name = `held-${randomUUID().slice(0, 8)}.txt`;
    // What a page closed mid-upload leaves: an unfinished upload job holding the name.
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
    expect(await waitForText(page.locator('#notice'), 'already being uploaded')).toBe(
      `${name} is already being uploaded by another upload (job ${orphanId}), perhaps from a page closed mid-way: cancel it in the jobs list, then retry this file`,
    );
    await shot(page, '8-name-held');

    await page.getByRole('button', { name: `Cancel upload of ${name}` }).click();
    await waitForText(page.locator('#notice'), `upload of ${name} cancelled`);
    await page.locator('.uppy-StatusBar-actionBtn--retry').click();
    const rows = page.locator('#jobs tbody tr').filter({ hasText: name });
    await waitForText(rows.filter({ hasText: 'COMPLETED' }), 'COMPLETED', 30_000);
    expectSameBytes((await testBucket().getObjectBytes(`uploads/${user.username}/${name}`))!, small);
    await page.close();
  }, 90_000);

  it('works on a phone-sized screen with the keyboard alone', async () => {
    const user = await createTestUser('phone');
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
    await page.waitForResponse((response) => response.url().endsWith('/auth/session'));
    await page.keyboard.press('Enter');
    // Sign-in runs scrypt with 128 MiB, slow on a loaded machine.
    await visible(page.getByText(`Signed in as ${user.username}`), 30_000);
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
  }, 60_000);
});
