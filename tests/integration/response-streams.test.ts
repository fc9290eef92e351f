import { randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { S3Client } from '@aws-sdk/client-s3';
import { checksumOf } from '../../common/checksums.ts';
import { CLIENT_TIMEOUTS, clientTimeouts, guardResponseStreams } from '../../lib/aws/clients.ts';
import { config } from '../../lib/config.ts';
import { gzipMembers } from '../../lib/exports/gzip-members.ts';
import { REOPENS_PER_READ } from '../../lib/exports/sequential-reads.ts';
import { FileStore } from '../../lib/storage/file-store.ts';
import { type FaultProxy, startFaultProxy } from '../../scripts/fault-proxy.ts';
import { testStack } from '../support/stack-env.ts';

/**
 * A response whose connection breaks before anyone reads its body. Node's HTTP client then
 * destroys the body stream with "aborted"; with no 'error' listener on it, that is an uncaught
 * exception, which ends the process: under serverless-offline every handler, in Lambda the
 * invocation. The chaos soak (npm run soak -- --faults) met it in the export worker. The SDK hands
 * the body over only after its own middleware (a checksum-checking wrapper around it for GetObject),
 * so the service's clients guard each raw body as it arrives (guardResponseStreams); whoever reads
 * the body later still gets the error.
 */

let proxy: FaultProxy;

beforeAll(async () => {
  proxy = await startFaultProxy(testStack().s3Endpoint);
});
afterAll(async () => {
  await proxy.close();
});

function storeThroughProxy() {
  const s3 = new S3Client({
    region: config().region,
    endpoint: proxy.url,
    forcePathStyle: true,
    ...clientTimeouts(CLIENT_TIMEOUTS.s3Transfer),
  });
  return new FileStore(guardResponseStreams(s3), s3, config().bucket);
}

async function bodyCutBeforeItIsRead(store: FileStore) {
  const key = `response-streams/${randomBytes(4).toString('hex')}.bin`;
  const bytes = randomBytes(4 << 20);
  await store.putObject(key, bytes, undefined, {
    algorithm: 'CRC32',
    value: await checksumOf('CRC32', bytes),
  });
  await proxy.set('cut', { cutAfterBytes: 64 << 10, killExisting: true });
  try {
    const body = await store.streamRange(key, 0, bytes.length - 1);
    // Read late: the connection is cut meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 300));
    let read = 0;
    try {
      for await (const chunk of body) read += chunk.length;
    } catch (error) {
      return { read, error: (error as Error).message, total: bytes.length };
    }
    return { read, error: undefined, total: bytes.length };
  } finally {
    await proxy.set('pass', { killExisting: true });
  }
}

// Without the guard, jest reports the uncaught "aborted" as this test's failure.
it("the service's S3 clients: the reader gets the error, and nothing is left uncaught", async () => {
  const result = await bodyCutBeforeItIsRead(storeThroughProxy());
  expect(result.error).toMatch(/aborted|ECONNRESET|premature/i);
  expect(result.read).toBeLessThan(result.total);
});

/**
 * The gzip export reads its source with one GET (lib/exports/sequential-reads.ts). A connection that
 * breaks mid-body is opened again where it broke, so the members come out whole and in order; one
 * that keeps breaking fails the read after REOPENS_PER_READ more tries, instead of looping.
 */
describe('the gzip export’s source read, through connections that break mid-body', () => {
  const source = Buffer.from(
    Array.from({ length: 8 * 16_384 }, (_, i) => `${`line ${i} `.padEnd(63, '.')}\n`).join(''),
  );
  const range = { from: 0, size: source.length, stepSize: 2 * 2 ** 20, threads: 2, sliceTarget: 512 * 1024 };

  async function membersThroughProxy(cut: { cutAfterBytes: number; match: RegExp }) {
    const store = storeThroughProxy();
    const key = `response-streams/${randomBytes(4).toString('hex')}.bin`;
    await store.putObject(key, source, undefined, {
      algorithm: 'CRC32',
      value: await checksumOf('CRC32', source),
    });
    const opened: number[] = [];
    await proxy.set('cut', { ...cut, killExisting: true });
    const members: Buffer[] = [];
    try {
      for await (const member of gzipMembers((start, end) => {
        opened.push(start);
        return store.streamRange(key, start, end);
      }, range))
        members.push(member.bytes);
      return { opened, output: Buffer.concat(members) };
    } catch (error) {
      return { opened, error: (error as Error).message };
    } finally {
      await proxy.set('pass', { killExisting: true });
    }
  }

  it('a GET cut mid-body is opened again where it broke, and the members are whole', async () => {
    // Only the first GET (its Range starts at 0) is cut; the one opened again passes.
    const { opened, output, error } = await membersThroughProxy({
      cutAfterBytes: 1.5 * 2 ** 20,
      match: /range: bytes=0-/i,
    });
    expect(error).toBeUndefined();
    expect(opened).toHaveLength(2);
    expect(opened[0]).toBe(0);
    // Where the client had read to when the reset came (it may lose what it had not read yet).
    expect(opened[1]).toBeGreaterThan(0);
    expect(opened[1]).toBeLessThanOrEqual(1.5 * 2 ** 20);
    expect(gunzipSync(output!).equals(source)).toBe(true);
  });

  it(`a GET that breaks each time it is opened fails the read after ${REOPENS_PER_READ} more tries`, async () => {
    const { opened, error } = await membersThroughProxy({ cutAfterBytes: 256 * 1024, match: /^GET /m });
    expect(error).toMatch(/aborted|ECONNRESET|socket hang up|premature/i);
    // The first step's read: its GET and REOPENS_PER_READ more, each cut before the step's 2 MiB.
    expect(opened).toHaveLength(1 + REOPENS_PER_READ);
  });
});
