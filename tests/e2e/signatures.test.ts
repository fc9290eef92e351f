import { randomBytes } from 'node:crypto';
import { putPart } from '../../client/upload.ts';
import { MiB } from '../../common/part-plan.ts';
import { api } from '../support/http.ts';
import { putOnNewConnection, s3ErrorCode, testBucket } from '../support/s3.ts';
import { testStack } from '../support/stack-env.ts';
import { createTestUser } from '../support/users.ts';

/**
 * Presigned URLs are the only thing between a client and the bucket: S3 must refuse one that was
 * altered or has expired. moto accepts both, so these run only where S3 checks signatures as AWS
 * does: LocalStack with S3_SKIP_SIGNATURE_VALIDATION=0 (TEST_EMULATOR=localstack npm test, or
 * AWS_ENDPOINT_URL pointing at `npm run localstack`).
 */

const s3 = testStack().emulator?.s3;
const describeOnCheckingS3 = s3 === 'localstack' ? describe : describe.skip;
const title =
  s3 === 'localstack'
    ? 'presigned URLs against a signature-checking S3 (LocalStack)'
    : `presigned URLs (skipped: S3 here is ${s3 ?? 'unknown'}, which does not check presigned signatures or expiry; run TEST_EMULATOR=localstack npm test)`;

type User = Awaited<ReturnType<typeof createTestUser>> & { jwt: string };

async function newUser(): Promise<User> {
  const user = await createTestUser('sig');
  return { ...user, jwt: await user.token() };
}

async function put(url: string, body: Uint8Array) {
  const response = await fetch(url, { method: 'PUT', body });
  return { status: response.status, text: await response.text() };
}

async function get(url: string) {
  const response = await fetch(url);
  return { status: response.status, bytes: Buffer.from(await response.arrayBuffer()) };
}

/** `url` with its path replaced by that of `other` (same host, same signature and query). */
function withPathOf(url: string, other: string) {
  const target = new URL(url);
  target.pathname = new URL(other).pathname;
  return target.toString();
}

interface SignedPart {
  partNumber: number;
  url: string;
  headers: Record<string, string>;
}

async function startUpload(user: User, filename: string, size: number, partSize?: number) {
  const created = await api('/upload', {
    method: 'POST',
    token: user.jwt,
    body: { filename, size, ...(partSize ? { partSize } : {}) },
  });
  expect(created.status).toBe(201);
  return created.body as { job: { jobId: string }; key: string; uploadId: string; parts: SignedPart[] };
}

async function finishedExport(user: User, filename: string, bytes: Uint8Array) {
  await testBucket().putObject(`uploads/${user.username}/${filename}`, bytes);
  const started = await api('/export', {
    method: 'POST',
    token: user.jwt,
    body: { filename, format: 'raw' },
  });
  expect(started.status).toBe(202);
  const jobId = started.body.job.jobId as string;
  const deadline = Date.now() + 45_000;
  for (;;) {
    const response = await api(`/jobs/${jobId}`, { token: user.jwt });
    const job = response.body.job;
    if (job.status === 'SUCCEEDED') return job as { downloadUrl: string };
    if (!['QUEUED', 'RUNNING'].includes(job.status) || Date.now() > deadline)
      throw new Error(`export ${jobId} ended ${job.status}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describeOnCheckingS3(title, () => {
  it('refuses a tampered part URL with 403 and stores nothing; the untouched URL works', async () => {
    const user = await newUser();
    const body = randomBytes(1024);
    const upload = await startUpload(user, 'tampered.bin', body.length);
    const { url } = upload.parts[0]!;

    // Another part number than the one signed for, and a signature with one digit changed.
    const otherPart = new URL(url);
    otherPart.searchParams.set('partNumber', '2');
    const signature = new URL(url);
    const original = signature.searchParams.get('X-Amz-Signature')!;
    signature.searchParams.set(
      'X-Amz-Signature',
      `${original.slice(0, -1)}${original.endsWith('0') ? '1' : '0'}`,
    );
    for (const tampered of [otherPart.toString(), signature.toString()]) {
      const answer = await put(tampered, body);
      expect({ status: answer.status, code: s3ErrorCode(answer.text) }).toEqual({
        status: 403,
        code: 'SignatureDoesNotMatch',
      });
    }
    expect(await testBucket().listParts(upload.key, upload.uploadId)).toEqual([]);

    expect((await put(url, body)).status).toBe(200);
    expect(await testBucket().listParts(upload.key, upload.uploadId)).toHaveLength(1);
  });

  it('binds each part URL to its planned size: one byte fewer or more is 403, the exact size 200', async () => {
    const user = await newUser();
    // Two parts: 5 MiB, then 10 bytes.
    const upload = await startUpload(user, 'sized.bin', 5 * MiB + 10, 5 * MiB);
    const [first, last] = upload.parts;
    expect(upload.parts.map((part) => [part.partNumber, part.headers])).toEqual([
      [1, { 'content-length': String(5 * MiB) }],
      [2, { 'content-length': '10' }],
    ]);
    for (const part of [first!, last!]) {
      expect(new URL(part.url).searchParams.get('X-Amz-SignedHeaders')).toBe('content-length;host');
      const size = Number(part.headers['content-length']);
      for (const wrong of [size - 1, size + 1]) {
        const answer = await putOnNewConnection(part.url, randomBytes(wrong));
        expect({ size: wrong, status: answer.status, code: s3ErrorCode(answer.text) }).toEqual({
          size: wrong,
          status: 403,
          code: 'SignatureDoesNotMatch',
        });
      }
    }
    // Far more than planned: the URL of a 10-byte part cannot take 6 MiB.
    expect((await putOnNewConnection(last!.url, randomBytes(6 * MiB))).status).toBe(403);
    expect(await testBucket().listParts(upload.key, upload.uploadId)).toEqual([]);

    // The exact sizes, sent as the client library sends them (streamed with a declared length for
    // the first, a plain buffer for the second), go through and complete.
    const firstBytes = randomBytes(5 * MiB);
    let streamed = 0;
    const etag = await putPart(fetch, first!.url, 1, firstBytes, {
      signal: new AbortController().signal,
      timeoutMs: 30_000,
      onBytes: (sent) => {
        streamed = sent;
      },
    });
    expect(streamed).toBe(5 * MiB);
    expect(etag).toBeTruthy();
    expect((await put(last!.url, randomBytes(10))).status).toBe(200);
    expect((await testBucket().listParts(upload.key, upload.uploadId))?.map((part) => part.size)).toEqual([
      5 * MiB,
      10,
    ]);
    const completed = await api(`/upload/${upload.job.jobId}/complete`, { method: 'POST', token: user.jwt });
    expect(completed.body.job.status).toBe('COMPLETED');
  });

  it('refuses an expired part URL with 403; a fresh one for the same part works', async () => {
    const user = await newUser();
    const body = randomBytes(1024);
    const part = { partNumber: 1, size: body.length };
    const upload = await startUpload(user, 'expired.bin', body.length);
    // Signed here with the shortest lifetime S3 allows, with the same code the service uses.
    const expiring = await testBucket().presignUploadPart(upload.key, upload.uploadId, part, 1);
    await new Promise((resolve) => setTimeout(resolve, 2500));

    const answer = await put(expiring, body);
    expect({ status: answer.status, code: s3ErrorCode(answer.text) }).toEqual({
      status: 403,
      code: 'AccessDenied',
    });
    expect(answer.text).toMatch(/expired/i);
    expect(await testBucket().listParts(upload.key, upload.uploadId)).toEqual([]);

    const fresh = await testBucket().presignUploadPart(upload.key, upload.uploadId, part, 60);
    expect((await put(fresh, body)).status).toBe(200);
  });

  it("refuses a download URL re-pointed at another user's export, in either direction", async () => {
    const [alice, bob] = [await newUser(), await newUser()];
    const aliceBytes = randomBytes(4096);
    const bobBytes = randomBytes(4096);
    const [aliceExport, bobExport] = await Promise.all([
      finishedExport(alice, 'a.bin', aliceBytes),
      finishedExport(bob, 'b.bin', bobBytes),
    ]);

    // Bob's signed URL with the path of Alice's export, and Alice's with the path of Bob's.
    for (const [signedFor, pointedAt] of [
      [bobExport.downloadUrl, aliceExport.downloadUrl],
      [aliceExport.downloadUrl, bobExport.downloadUrl],
    ] as const) {
      const answer = await get(withPathOf(signedFor, pointedAt));
      expect({ status: answer.status, code: s3ErrorCode(answer.bytes.toString()) }).toEqual({
        status: 403,
        code: 'SignatureDoesNotMatch',
      });
    }

    const [aliceGet, bobGet] = [await get(aliceExport.downloadUrl), await get(bobExport.downloadUrl)];
    expect(aliceGet.status).toBe(200);
    expect(aliceGet.bytes.equals(aliceBytes)).toBe(true);
    expect(bobGet.status).toBe(200);
    expect(bobGet.bytes.equals(bobBytes)).toBe(true);
  });
});
