import { randomBytes } from 'node:crypto';
import { S3Client } from '@aws-sdk/client-s3';
import { checksumOf } from '../../common/checksums.ts';
import { CLIENT_TIMEOUTS, clientTimeouts, guardResponseStreams } from '../../lib/aws/clients.ts';
import { config } from '../../lib/config.ts';
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
