import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, request } from 'node:http';

/**
 * S3 assembles the object before it answers CompleteMultipartUpload: seconds for a large upload
 * (moto and LocalStack say nothing until then: 4-10 s for 1 GiB here). The completion must wait for
 * it, not give up after the 3 s that bound the other S3 calls of a route (it did: the SDK's retry then
 * met an upload halfway through completing, and the route answered 503 with Retry-After 5).
 *
 * A proxy in front of the S3 emulator holds every CompleteMultipartUpload 4 s before passing it on.
 */

const HOLD_MS = 4000;
const target = new URL(process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL!);
let held = 0;
const proxy = createServer((incoming, answer) => {
  const forward = () => {
    const upstream = request(
      {
        host: target.hostname,
        port: target.port,
        method: incoming.method,
        path: incoming.url,
        headers: incoming.headers,
      },
      (response) => {
        answer.writeHead(response.statusCode ?? 502, response.headers);
        response.pipe(answer);
      },
    );
    upstream.on('error', () => answer.destroy());
    incoming.pipe(upstream);
  };
  // CompleteMultipartUpload is the only POST with an uploadId (CreateMultipartUpload has `uploads`).
  if (incoming.method === 'POST' && /[?&]uploadId=/.test(incoming.url ?? '')) {
    held++;
    setTimeout(forward, HOLD_MS);
  } else {
    forward();
  }
});
const port = await new Promise<number>((resolve) =>
  proxy.listen(0, '127.0.0.1', () => resolve((proxy.address() as { port: number }).port)),
);
const saved = process.env.AWS_ENDPOINT_URL_S3;
process.env.AWS_ENDPOINT_URL_S3 = `http://127.0.0.1:${port}`;
const { completeUpload, createUpload } = await import('../../lib/uploads/uploads.ts');
const { fileStore } = await import('../../lib/storage/index.ts');

afterAll(() => {
  process.env.AWS_ENDPOINT_URL_S3 = saved;
  proxy.close();
});

it('completes an upload whose CompleteMultipartUpload takes S3 4 s, in one call', async () => {
  const username = `slow-${randomUUID().slice(0, 8)}`;
  const bytes = randomBytes(1000);
  const created = await createUpload(username, { filename: 'slow.bin', size: bytes.length });
  const [part] = created.parts;
  const put = await fetch(part!.url, { method: 'PUT', body: bytes, headers: part!.headers });
  expect(put.status).toBe(200);

  const job = await completeUpload(username, created.job.jobId);
  expect(held).toBe(1);
  expect(job.status).toBe('COMPLETED');
  expect(Buffer.from((await fileStore().getObjectBytes(created.key))!)).toEqual(bytes);
});
