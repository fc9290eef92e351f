/**
 * Upload throughput from a browser (Debian's Chromium): the web console (Uppy's Dashboard with the
 * console's own uploader, web/parallel-multipart.ts: several parts at once, in the console's part
 * sizes, each part's CRC32 computed in the page and checked by S3), Uppy 6's own `@uppy/aws-s3` as
 * the README's snippet sets it up (the baseline a peer gives: one part at a time, Uppy's 5 MiB parts,
 * no checksums), and the client library's upload of the same file from Node with the console's part
 * size: with no checksums (as Uppy) once with one part in flight and once with six (a browser's
 * connections to one origin), and with CRC32 (as the console) with six. Same stack, side by side in
 * rotating order, best of --rounds; every stored object checked by sha256.
 *
 *   node bench/console.ts [--size-mib 256] [--rounds 3]
 */
import { createHash, randomFillSync } from 'node:crypto';
import { linkSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DeleteObjectCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { FileJobsClient } from '../client/index.ts';
import { DEMO_USER, localS3Client, startLocalStack } from '../scripts/local-stack.ts';
import { hasChromium, launchBrowser, serveStatic, uppySnippetPage } from '../tests/support/browser.ts';
import { consoleChunkSize } from '../web/part-match.ts';

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '256' },
    rounds: { type: 'string', default: '3' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(`node bench/console.ts [options]: the web console's upload (Uppy in Chromium) against the client library's
  --size-mib <n>   the file's size in MiB (default 256)
  --rounds <n>     rounds of each variant, in rotating order; the best counts (default 3)`);
  process.exit(0);
}
if (!hasChromium()) {
  console.error('no Chromium: apt-get install chromium, or set CHROMIUM_PATH');
  process.exit(2);
}

const MiB = 1024 * 1024;
const size = Number(values['size-mib']) * MiB;
const rounds = Number(values.rounds);
const partSize = consoleChunkSize(size);
const load = () =>
  loadavg()
    .map((n) => n.toFixed(2))
    .join(' ');
const mbps = (ms: number) => size / 1e6 / (ms / 1000);

const loadAtStart = load();
const stack = await startLocalStack({
  stage: 'bench',
  withApi: true,
  keysFile: join(tmpdir(), `file-jobs-bench-keys-${process.pid}.json`),
});
const browser = await launchBrowser();
let closeServer: () => Promise<void> = async () => {};
// Each round's file a hard link of one file under the round's name (the console never overwrites).
const dir = mkdtempSync(join(tmpdir(), 'file-jobs-console-bench-'));
const path = join(dir, 'source.bin');
try {
  const apiUrl = stack.info.apiUrl!;
  const s3 = localS3Client(stack.info);
  const client = new FileJobsClient({ apiUrl });
  await client.signIn(DEMO_USER.username, DEMO_USER.password);

  const data = Buffer.allocUnsafe(size);
  for (let offset = 0; offset < size; offset += 64 * MiB)
    randomFillSync(data, offset, Math.min(64 * MiB, size - offset));
  const sourceSha256 = createHash('sha256').update(data).digest('hex');
  writeFileSync(path, data);

  /** Reads the stored object back, checks its size and sha256, and deletes it. */
  async function verify(filename: string) {
    const Key = `uploads/${DEMO_USER.username}/${filename}`;
    const object = await s3.send(new GetObjectCommand({ Bucket: stack.info.bucket, Key }));
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of object.Body as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      bytes += chunk.byteLength;
    }
    if (bytes !== size || hash.digest('hex') !== sourceSha256) throw new Error(`${Key}: not the bytes sent`);
    await s3.send(new DeleteObjectCommand({ Bucket: stack.info.bucket, Key }));
  }

  // Signed in once: the session cookie serves every page after.
  const first = await browser.context.newPage();
  await first.goto(`${apiUrl}/`);
  await first.getByLabel('Username').fill(DEMO_USER.username);
  await first.getByLabel('Password').fill(DEMO_USER.password);
  await first.getByLabel('Password').press('Enter');
  await first.getByText(`Signed in as ${DEMO_USER.username}`).waitFor({ timeout: 60_000 });
  await first.close();

  const named = (filename: string) => {
    linkSync(path, join(dir, filename));
    return join(dir, filename);
  };

  /** The console on a fresh page: pick the file, press Upload, until Uppy's completion is answered. */
  async function consoleUpload(filename: string): Promise<number> {
    const page = await browser.context.newPage();
    await page.goto(`${apiUrl}/`);
    await page.getByText(`Signed in as ${DEMO_USER.username}`).waitFor({ timeout: 60_000 });
    await page
      .locator('input.uppy-Dashboard-input[name="files[]"]:not([webkitdirectory])')
      .first()
      .setInputFiles(named(filename));
    const completed = page.waitForResponse(
      (response) => /\/s3\/multipart\/[^/]+\/complete/.test(response.url()) && response.status() === 200,
      { timeout: 600_000 },
    );
    const started = performance.now();
    await page.getByRole('button', { name: /^Upload 1 file/ }).click();
    await completed;
    const ms = performance.now() - started;
    await page.close();
    return ms;
  }

  async function libraryUpload(filename: string, concurrency: number, checksums = false): Promise<number> {
    const started = performance.now();
    const result = await client.uploadFile(path, {
      filename,
      partSize,
      concurrency,
      checksumAlgorithm: checksums ? 'CRC32' : false,
    });
    if (result.job.status !== 'COMPLETED') throw new Error(`upload ended ${result.job.status}`);
    return performance.now() - started;
  }

  // The README's Uppy snippet on a page of its own origin, with the file to send served beside it.
  const snippetPage = await uppySnippetPage(apiUrl);
  const server = await serveStatic({
    '/': { body: snippetPage.html, type: 'text/html; charset=utf-8' },
    '/page.js': { body: snippetPage.script, type: 'text/javascript' },
    '/file.bin': { body: data, type: 'application/octet-stream' },
  });
  closeServer = () => server.close();

  /** Uppy's own AwsS3 (the README snippet): from upload() until Uppy is done. */
  async function snippetUpload(filename: string): Promise<number> {
    const page = await browser.context.newPage();
    await page.goto(`${server.url}/`);
    await page.evaluate(
      (token) => (globalThis as any).sessionStorage.setItem('fileJobsToken', token),
      client.token,
    );
    await page.evaluate((name) => (globalThis as any).harness.add(name), filename);
    const started = performance.now();
    const result = await page.evaluate(() => (globalThis as any).harness.upload());
    const ms = performance.now() - started;
    await page.close();
    if (result.successful !== 1) throw new Error(`the snippet's upload failed: ${JSON.stringify(result)}`);
    return ms;
  }

  const variants: [string, (filename: string) => Promise<number>][] = [
    ['console (Chromium)', consoleUpload],
    ["Uppy 6's AwsS3 (README snippet, 5 MiB)", snippetUpload],
    ['client library, 1 part in flight', (filename) => libraryUpload(filename, 1)],
    ['client library, 6 parts in flight', (filename) => libraryUpload(filename, 6)],
    ['client library, 6 in flight, CRC32', (filename) => libraryUpload(filename, 6, true)],
  ];
  const times = new Map<string, number[]>(variants.map(([name]) => [name, []]));
  for (let round = 0; round < rounds; round++) {
    // Rotating order, so that no variant always runs first (or last) on a warming machine.
    for (let i = 0; i < variants.length; i++) {
      const [name, run] = variants[(round + i) % variants.length]!;
      const filename = `bench-console-${round}-${i}.bin`;
      const ms = await run(filename);
      await verify(filename);
      times.get(name)!.push(ms);
      console.log(`  round ${round + 1}: ${name}: ${(ms / 1000).toFixed(2)} s, ${mbps(ms).toFixed(1)} MB/s`);
    }
  }
  const best = (name: string) => Math.min(...times.get(name)!);
  const baseline = best('client library, 6 parts in flight');
  console.log(
    `\nmachine: ${cpus()[0]?.model ?? 'unknown CPU'} × ${cpus().length}, Node ${process.version}; load ${loadAtStart} at start, ${load()} at end`,
  );
  console.log(
    `${size / MiB} MiB in ${partSize / MiB} MiB parts (checksums: the console's CRC32, the library's where named, Uppy's none), best of ${rounds} (every object checked by sha256):`,
  );
  for (const [name] of variants) {
    const ms = best(name);
    console.log(
      `  ${name.padEnd(40)} ${(ms / 1000).toFixed(2).padStart(7)} s  ${mbps(ms).toFixed(1).padStart(7)} MB/s  ${(baseline / ms).toFixed(2)} of 6 in flight`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
  await closeServer();
  await browser.close();
  await stack.stop();
}
