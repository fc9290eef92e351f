import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { downloadToFile, type ExportApi } from '../../client/exports.ts';
import { ChecksumMismatchError, type ExportJob, type Job } from '../../client/index.ts';
import { checksumOf } from '../../common/checksums.ts';

/**
 * downloadToFile against a local HTTP server standing in for S3: Range requests, connections
 * dropped mid-body, a server that ignores Range, and bytes that are not the export's.
 */

let server: Server;
let baseUrl: string;
let dir: string;
/** What the server sends, and how it misbehaves. */
const behaviour = {
  body: Buffer.alloc(0),
  /** Drop the connection after this many bytes of the next answers, one entry per answer. */
  dropAfter: [] as number[],
  ignoreRange: false,
  requests: [] as (string | undefined)[],
};

beforeAll(async () => {
  server = createServer((request, response) => {
    const range = request.headers.range;
    behaviour.requests.push(range);
    const from = range && !behaviour.ignoreRange ? Number(/^bytes=(\d+)-$/.exec(range)![1]) : 0;
    const slice = behaviour.body.subarray(from);
    response.writeHead(from > 0 ? 206 : 200, { 'content-length': String(slice.length) });
    const drop = behaviour.dropAfter.shift();
    if (drop === undefined) {
      response.end(slice);
      return;
    }
    response.write(slice.subarray(0, drop), () => response.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise((resolve) => server.close(resolve)));
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'client-download-'));
  Object.assign(behaviour, { dropAfter: [], ignoreRange: false, requests: [] });
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function exportJob(bytes: Buffer, checksum: ExportJob['checksum']): ExportJob {
  return {
    jobId: 'exp1',
    type: 'export',
    status: 'SUCCEEDED',
    filename: 'data.bin',
    format: 'raw',
    size: bytes.length,
    partSize: 0,
    partCount: 1,
    progress: { partsDone: 1, partCount: 1, bytesDone: bytes.length, bytesTotal: bytes.length },
    createdAt: '',
    updatedAt: '',
    outputSize: bytes.length,
    downloadUrl: `${baseUrl}/object`,
    expiresAt: new Date(Date.now() + 600_000).toISOString(),
    ...(checksum ? { checksum } : {}),
  };
}

function api(job: ExportJob): ExportApi {
  return {
    fetch: (url, init) => fetch(url, init),
    startExport: async () => job,
    getJob: async () => job as Job,
    cancelExport: async () => job,
  };
}

const noWait = { sleep: async () => {}, random: () => 0 };

describe('downloadToFile with checksums', () => {
  it('hashes the bytes in order across resumed connections and accepts the right ones', async () => {
    const bytes = randomBytes(3 * 1024 * 1024 + 17);
    behaviour.body = bytes;
    behaviour.dropAfter = [1024 * 1024 + 3, 700_001];
    const value = await checksumOf('CRC32', bytes);
    const job = exportJob(bytes, { algorithm: 'CRC32', type: 'FULL_OBJECT', value });
    const target = join(dir, 'out.bin');
    const result = await downloadToFile(api(job), job, target, { retry: noWait });
    // Two resumes, each from where the bytes received so far end (a dropped connection loses what
    // was still buffered, so not exactly where the server stopped).
    expect(behaviour.requests).toEqual([
      undefined,
      expect.stringMatching(/^bytes=\d+-$/),
      expect.stringMatching(/^bytes=\d+-$/),
    ]);
    const [first, second] = behaviour.requests.slice(1).map((range) => Number(/\d+/.exec(range!)![0]));
    expect(first).toBeGreaterThan(0);
    expect(second).toBeGreaterThan(first!);
    expect(readFileSync(target).equals(bytes)).toBe(true);
    expect(result).toMatchObject({
      bytes: bytes.length,
      checksum: { algorithm: 'CRC32', value, verified: true },
    });
  });

  it('starts the checksum over when a server ignores the Range and sends the whole object again', async () => {
    const bytes = randomBytes(2 * 1024 * 1024);
    behaviour.body = bytes;
    behaviour.dropAfter = [500_000];
    behaviour.ignoreRange = true;
    const value = await checksumOf('CRC32C', bytes);
    const job = exportJob(bytes, { algorithm: 'CRC32C', type: 'FULL_OBJECT', value });
    const result = await downloadToFile(api(job), job, join(dir, 'out.bin'), { retry: noWait });
    expect(behaviour.requests).toHaveLength(2);
    expect(result.checksum).toMatchObject({ verified: true });
    expect(readFileSync(join(dir, 'out.bin')).equals(bytes)).toBe(true);
  });

  it("refuses bytes that are not the export's: ChecksumMismatchError, nothing at the path, no temporary file", async () => {
    const bytes = randomBytes(1024 * 1024);
    const value = await checksumOf('CRC32', bytes);
    const rewritten = Buffer.from(bytes);
    rewritten[12345] = rewritten[12345]! ^ 1;
    behaviour.body = rewritten;
    behaviour.dropAfter = [300_000];
    const job = exportJob(bytes, { algorithm: 'CRC32', type: 'FULL_OBJECT', value });
    const target = join(dir, 'out.bin');
    const error = await downloadToFile(api(job), job, target, { retry: noWait }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ChecksumMismatchError);
    expect(error).toMatchObject({
      code: 'ChecksumMismatch',
      direction: 'download',
      jobId: 'exp1',
      algorithm: 'CRC32',
      expected: value,
      actual: await checksumOf('CRC32', rewritten),
    });
    expect((error as Error).message).toContain(`nothing was written to ${target}`);
    expect(readdirSync(dir)).toEqual([]);

    // A file already at the path stays as it was.
    writeFileSync(target, 'earlier');
    await expect(downloadToFile(api(job), job, target, { retry: noWait })).rejects.toBeInstanceOf(
      ChecksumMismatchError,
    );
    expect(readFileSync(target, 'utf8')).toBe('earlier');
    expect(readdirSync(dir)).toEqual(['out.bin']);
  });

  it('downloads an export without a checksum as before, and cannot check a composite one', async () => {
    const bytes = randomBytes(100_000);
    behaviour.body = bytes;
    const plain = exportJob(bytes, undefined);
    expect((await downloadToFile(api(plain), plain, join(dir, 'a.bin'))).checksum).toBeUndefined();
    const composite = exportJob(bytes, { algorithm: 'SHA256', type: 'COMPOSITE', value: 'x'.repeat(44) });
    const result = await downloadToFile(api(composite), composite, join(dir, 'b.bin'));
    expect(result.checksum).toMatchObject({ algorithm: 'SHA256', verified: false });
    expect(readFileSync(join(dir, 'b.bin')).equals(bytes)).toBe(true);
  });
});

describe('downloadToFile after a download that stopped for good', () => {
  /** The id of a process that has ended: what a killed download's partial file is named with. */
  const deadPid = () => spawnSync(process.execPath, ['-e', '']).pid;
  const partials = () => readdirSync(dir).filter((name) => name.endsWith('.part'));
  /** Renames the partial files to what a process that has ended would have left. */
  const orphan = () => {
    for (const name of partials())
      renameSync(
        join(dir, name),
        join(dir, name.replace(/\.\d+-([0-9a-f]+)\.part$/, `.${deadPid()}-$1.part`)),
      );
  };

  it('keeps the bytes it had, and the next download goes on from them, checksum and all', async () => {
    const bytes = randomBytes(2 * 1024 * 1024 + 5);
    behaviour.body = bytes;
    behaviour.dropAfter = [700_000];
    const value = await checksumOf('CRC32', bytes);
    const job = exportJob(bytes, { algorithm: 'CRC32', type: 'FULL_OBJECT', value });
    const target = join(dir, 'out.bin');
    // No retries: the dropped connection ends this download (as a killed process would).
    await expect(downloadToFile(api(job), job, target, { retry: { retries: 0 } })).rejects.toMatchObject({
      code: 'NetworkError',
    });
    const [kept] = partials();
    expect(kept).toMatch(new RegExp(`^\\.out\\.bin\\.exp1\\.${process.pid}-[0-9a-f]+\\.part$`));
    const keptBytes = readFileSync(join(dir, kept!));
    expect(keptBytes.length).toBeGreaterThan(0);
    expect(keptBytes.equals(bytes.subarray(0, keptBytes.length))).toBe(true);

    // A download running in a live process (here this one) is never taken over.
    behaviour.requests = [];
    const beside = await downloadToFile(api(job), job, join(dir, 'beside.bin'), { retry: noWait });
    expect(beside.resumedFrom).toBe(0);
    expect(partials()).toEqual([kept]);

    // Once its process has ended, the next download to the same path takes its bytes over.
    orphan();
    behaviour.requests = [];
    const result = await downloadToFile(api(job), job, target, { retry: noWait });
    expect(behaviour.requests).toEqual([`bytes=${keptBytes.length}-`]);
    expect(result).toMatchObject({
      bytes: bytes.length,
      resumedFrom: keptBytes.length,
      checksum: { algorithm: 'CRC32', value, verified: true },
    });
    expect(readFileSync(target).equals(bytes)).toBe(true);
    expect(partials()).toEqual([]);
  });

  it('finishes a partial file that already holds every byte with no body fetched', async () => {
    const bytes = randomBytes(300_000);
    behaviour.body = bytes;
    const job = exportJob(bytes, undefined);
    writeFileSync(join(dir, `.out.bin.exp1.${deadPid()}-0a0b0c0d.part`), bytes);
    const result = await downloadToFile(api(job), job, join(dir, 'out.bin'), { retry: noWait });
    expect(result).toMatchObject({ bytes: bytes.length, resumedFrom: bytes.length });
    expect(readFileSync(join(dir, 'out.bin')).equals(bytes)).toBe(true);
    expect(partials()).toEqual([]);
  });

  it('takes the largest of several stopped downloads and deletes the rest; ignores those of other jobs and names', async () => {
    const bytes = randomBytes(1024 * 1024);
    behaviour.body = bytes;
    const job = exportJob(bytes, undefined);
    const pid = deadPid();
    writeFileSync(join(dir, `.out.bin.exp1.${pid}-00000001.part`), bytes.subarray(0, 1000));
    writeFileSync(join(dir, `.out.bin.exp1.${pid}-00000002.part`), bytes.subarray(0, 5000));
    writeFileSync(join(dir, `.out.bin.exp2.${pid}-00000003.part`), bytes.subarray(0, 9000));
    writeFileSync(join(dir, `.other.bin.exp1.${pid}-00000004.part`), bytes.subarray(0, 9000));
    const result = await downloadToFile(api(job), job, join(dir, 'out.bin'), { retry: noWait });
    expect(result.resumedFrom).toBe(5000);
    expect(behaviour.requests).toEqual(['bytes=5000-']);
    expect(readFileSync(join(dir, 'out.bin')).equals(bytes)).toBe(true);
    expect(partials().sort()).toEqual([
      `.other.bin.exp1.${pid}-00000004.part`,
      `.out.bin.exp2.${pid}-00000003.part`,
    ]);
  });

  it('drops kept bytes that are not the export’s: ChecksumMismatchError, then the next download starts over', async () => {
    const bytes = randomBytes(1024 * 1024);
    behaviour.body = bytes;
    const value = await checksumOf('CRC32', bytes);
    const job = exportJob(bytes, { algorithm: 'CRC32', type: 'FULL_OBJECT', value });
    const wrong = Buffer.from(bytes.subarray(0, 4000));
    wrong[10] = wrong[10]! ^ 1;
    writeFileSync(join(dir, `.out.bin.exp1.${deadPid()}-0a0b0c0d.part`), wrong);
    const target = join(dir, 'out.bin');
    await expect(downloadToFile(api(job), job, target, { retry: noWait })).rejects.toBeInstanceOf(
      ChecksumMismatchError,
    );
    expect(readdirSync(dir)).toEqual([]);
    behaviour.requests = [];
    expect((await downloadToFile(api(job), job, target, { retry: noWait })).resumedFrom).toBe(0);
    expect(behaviour.requests).toEqual([undefined]);
    expect(readFileSync(target).equals(bytes)).toBe(true);
  });

  it('starts over from a partial file longer than the output', async () => {
    const bytes = randomBytes(10_000);
    behaviour.body = bytes;
    const job = exportJob(bytes, undefined);
    writeFileSync(join(dir, `.out.bin.exp1.${deadPid()}-0a0b0c0d.part`), randomBytes(20_000));
    const result = await downloadToFile(api(job), job, join(dir, 'out.bin'), { retry: noWait });
    expect(result).toMatchObject({ bytes: 10_000, resumedFrom: 0 });
    expect(behaviour.requests).toEqual([undefined]);
    expect(readFileSync(join(dir, 'out.bin')).equals(bytes)).toBe(true);
  });
});
