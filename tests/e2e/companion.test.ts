import { randomBytes, randomUUID } from 'node:crypto';
import { checksumOf, FullObjectCrc } from '../../common/checksums.ts';
import { MiB } from '../../common/part-plan.ts';
import { expectSameBytes } from '../support/bytes.ts';
import { api, expectError } from '../support/http.ts';
import { putPart, testBucket } from '../support/s3.ts';
import { createTestUser } from '../support/users.ts';

/**
 * Companion's S3 multipart routes over HTTP, called the way @uppy/aws-s3 6.x calls them in its
 * companionEndpoint mode (the browser test, tests/browser/, runs the real Uppy against them).
 */

type User = Awaited<ReturnType<typeof createTestUser>> & { jwt: string };

async function newUser(): Promise<User> {
  const user = await createTestUser('comp');
  return { ...user, jwt: await user.token() };
}

const name = (prefix = 'file') => `${prefix}-${randomUUID().slice(0, 8)}.bin`;
const q = (key: string) => `?${new URLSearchParams({ key })}`;

async function create(user: User, filename: string, metadata: Record<string, unknown> = {}) {
  const response = await api('/s3/multipart', {
    method: 'POST',
    token: user.jwt,
    body: { filename, type: 'application/octet-stream', metadata: { name: filename, ...metadata } },
  });
  expect(response.status).toBe(200);
  return response.body as { key: string; uploadId: string };
}

async function sendPart(
  user: User,
  up: { key: string; uploadId: string },
  partNumber: number,
  bytes: Uint8Array,
) {
  const signed = await api(`/s3/multipart/${encodeURIComponent(up.uploadId)}/${partNumber}${q(up.key)}`, {
    token: user.jwt,
  });
  expect(signed.status).toBe(200);
  return putPart(signed.body.url, bytes);
}

describe('Companion S3 multipart routes', () => {
  it('upload a file in Uppy-sized parts, list them, complete from S3’s list: the job is COMPLETED', async () => {
    const user = await newUser();
    const filename = name('uppy');
    const bytes = randomBytes(12 * MiB);
    const up = await create(user, filename);
    expect(up.key).toBe(`uploads/${user.username}/${filename}`);

    const job = await api(`/jobs/${up.uploadId}`, { token: user.jwt });
    expect(job.body.job).toMatchObject({ status: 'UPLOADING', filename, size: 0, partCount: 0 });
    // The plan-based routes refuse it: its plan comes from S3 at completion.
    expectError(
      await api(`/upload/${up.uploadId}/parts`, {
        method: 'POST',
        token: user.jwt,
        body: { partNumbers: [1] },
      }),
      409,
      'PlanUnknown',
    );

    const chunk = 5 * MiB;
    const etags: string[] = [];
    for (let part = 1; part <= 3; part++) {
      etags.push(await sendPart(user, up, part, bytes.subarray((part - 1) * chunk, part * chunk)));
      if (part === 2) {
        // Uppy reports no progress: a page that polls the job asks S3 with reconcile=true.
        const polled = await api(`/jobs/${up.uploadId}?reconcile=true`, { token: user.jwt });
        expect(polled.body).toMatchObject({
          job: { status: 'UPLOADING', progress: { partsDone: 2, bytesDone: 2 * chunk } },
          uploadedParts: [1, 2],
          missingParts: [],
        });
      }
    }
    const listed = await api(`/s3/multipart/${up.uploadId}${q(up.key)}`, { token: user.jwt });
    expect(listed.status).toBe(200);
    expect(listed.body).toEqual([
      { PartNumber: 1, ETag: etags[0], Size: chunk },
      { PartNumber: 2, ETag: etags[1], Size: chunk },
      { PartNumber: 3, ETag: etags[2], Size: 2 * MiB },
    ]);
    // Listing recorded them as the job's progress.
    const progress = await api(`/jobs/${up.uploadId}`, { token: user.jwt });
    expect(progress.body.job.progress).toMatchObject({ partsDone: 3, bytesDone: bytes.length });

    // ETags without quotes, as some clients send them, are the same ETags.
    const parts = etags.map((etag, i) => ({
      PartNumber: i + 1,
      ETag: i === 0 ? etag.replace(/"/g, '') : etag,
    }));
    const done = await api(`/s3/multipart/${up.uploadId}/complete${q(up.key)}`, {
      method: 'POST',
      token: user.jwt,
      body: { parts },
    });
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({
      key: up.key,
      location: expect.stringMatching(new RegExp(`/jobs/${up.uploadId}$`)),
      job: { status: 'COMPLETED', size: bytes.length, partSize: chunk, partCount: 3 },
    });
    expectSameBytes((await testBucket().getObjectBytes(up.key))!, bytes);
    // Completing again (a lost answer, retried) answers the same.
    const again = await api(`/s3/multipart/${up.uploadId}/complete${q(up.key)}`, {
      method: 'POST',
      token: user.jwt,
      body: { parts },
    });
    expect(again.body.job.status).toBe('COMPLETED');
    // A completed file is never aborted.
    expectError(
      await api(`/s3/multipart/${up.uploadId}${q(up.key)}`, { method: 'DELETE', token: user.jwt }),
      409,
      'JobNotActive',
    );
  });

  it('stores a file picked on a Mac, whose name comes decomposed (NFD), under its composed name', async () => {
    const user = await newUser();
    const id = randomUUID().slice(0, 8);
    const decomposed = `re\u0301sume\u0301-${id}.txt`;
    const composed = `r\u00e9sum\u00e9-${id}.txt`;
    // POST /upload, where a person or program types the name, refuses it rather than guess.
    const refused = expectError(
      await api('/upload', { method: 'POST', token: user.jwt, body: { filename: decomposed, size: 10 } }),
      400,
      'ValidationError',
    );
    expect(refused.message).toMatch(/NFC/);
    const up = await create(user, decomposed);
    expect(up.key).toBe(`uploads/${user.username}/${composed}`);
    // Composed first, then held to every other rule: a 400 with the JSON error shape.
    const badPick = expectError(
      await api('/s3/multipart', { method: 'POST', token: user.jwt, body: { filename: `../${decomposed}` } }),
      400,
      'ValidationError',
    );
    expect(badPick.message).toMatch(/filename/);
    const bytes = randomBytes(1000);
    const etag = await sendPart(user, up, 1, bytes);
    const done = await api(`/s3/multipart/${up.uploadId}/complete${q(up.key)}`, {
      method: 'POST',
      token: user.jwt,
      body: { parts: [{ PartNumber: 1, ETag: etag }] },
    });
    expect(done.body.job).toMatchObject({ status: 'COMPLETED', filename: composed, size: 1000 });
    expectSameBytes((await testBucket().getObjectBytes(up.key))!, bytes);
    // One file, listed under the name anyone would type.
    const files = await api('/files', { token: user.jwt });
    expect(files.body.files.map((entry: { name: string }) => entry.name)).toEqual([composed]);
  });

  it('abort: the job is ABORTED and S3 holds no multipart upload; the kill route sees these jobs too', async () => {
    const user = await newUser();
    const up = await create(user, name('abort'));
    await sendPart(user, up, 1, randomBytes(5 * MiB));
    const aborted = await api(`/s3/multipart/${up.uploadId}${q(up.key)}`, {
      method: 'DELETE',
      token: user.jwt,
    });
    expect(aborted.status).toBe(200);
    expect(aborted.body.job.status).toBe('ABORTED');
    expect(await testBucket().listOpenUploads(`uploads/${user.username}/`)).toEqual([]);
    expectError(
      await api(`/s3/multipart/${up.uploadId}/1${q(up.key)}`, { token: user.jwt }),
      409,
      'JobNotActive',
    );

    const second = await create(user, name('killed'));
    const killed = await api('/upload/kill', { method: 'DELETE', token: user.jwt });
    expect(killed.body.aborted).toEqual([{ jobId: second.uploadId, filename: expect.any(String) }]);
    expect(await testBucket().listOpenUploads(`uploads/${user.username}/`)).toEqual([]);
  });

  it('answers 404 for an upload id or key that is not the caller’s, and for a POST /upload job', async () => {
    const [alice, bob] = await Promise.all([newUser(), newUser()]);
    const up = await create(alice, name('mine'));
    // Bob, with Alice's upload id and key.
    expectError(
      await api(`/s3/multipart/${up.uploadId}/1${q(up.key)}`, { token: bob.jwt }),
      404,
      'NoSuchUpload',
    );
    expectError(await api(`/s3/multipart/${up.uploadId}${q(up.key)}`, { token: bob.jwt }), 404);
    expectError(
      await api(`/s3/multipart/${up.uploadId}${q(up.key)}`, { method: 'DELETE', token: bob.jwt }),
      404,
    );
    expectError(
      await api(`/s3/multipart/${up.uploadId}/complete${q(up.key)}`, {
        method: 'POST',
        token: bob.jwt,
        body: { parts: [] },
      }),
      404,
    );
    // Alice, with another key or an id that is no job.
    expectError(await api(`/s3/multipart/${up.uploadId}/1${q(`${up.key}x`)}`, { token: alice.jwt }), 404);
    expectError(await api(`/s3/multipart/not-an-upload/1${q(up.key)}`, { token: alice.jwt }), 404);
    expectError(
      await api(`/s3/multipart/${up.uploadId}/0${q(up.key)}`, { token: alice.jwt }),
      400,
      'ValidationError',
    );
    expectError(await api(`/s3/multipart/${up.uploadId}/10001${q(up.key)}`, { token: alice.jwt }), 400);
    // A job of POST /upload binds its part sizes: no unsized URL for it.
    const sized = await api('/upload', {
      method: 'POST',
      token: alice.jwt,
      body: { filename: name(), size: 10 },
    });
    expectError(
      await api(`/s3/multipart/${sized.body.job.jobId}/1${q(sized.body.key)}`, { token: alice.jwt }),
      404,
    );
  });

  it('keeps the service’s rules: 409 for a name being uploaded, a declared size that S3 must hold', async () => {
    const user = await newUser();
    const filename = name('rules');
    const up = await create(user, filename, { size: 6 * MiB });
    const held = expectError(
      await api('/s3/multipart', { method: 'POST', token: user.jwt, body: { filename, metadata: {} } }),
      409,
      'UploadInProgress',
    );
    // What a page holding the same file needs to resume that upload through these routes.
    expect(held.details).toEqual({ jobId: up.uploadId, key: up.key });
    expect((await api(`/jobs/${up.uploadId}`, { token: user.jwt })).body.job.size).toBe(6 * MiB);
    const etag = await sendPart(user, up, 1, randomBytes(5 * MiB));
    const refused = await api(`/s3/multipart/${up.uploadId}/complete${q(up.key)}`, {
      method: 'POST',
      token: user.jwt,
      body: { parts: [{ PartNumber: 1, ETag: etag }] },
    });
    expect(expectError(refused, 409, 'PartsIncomplete').message).toMatch(/declared 6291456/);
    // The client's list must be S3's: a part S3 does not hold is refused.
    const wrong = await api(`/s3/multipart/${up.uploadId}/complete${q(up.key)}`, {
      method: 'POST',
      token: user.jwt,
      body: {
        parts: [
          { PartNumber: 1, ETag: etag },
          { PartNumber: 2, ETag: '"abc"' },
        ],
      },
    });
    expectError(wrong, 409, 'PartsIncomplete');
    expect((await api(`/jobs/${up.uploadId}`, { token: user.jwt })).body.job.status).toBe('UPLOADING');
  });

  it('with metadata.checksumAlgorithm, each part URL wants its checksum and binds it; the whole-file CRC completes', async () => {
    const user = await newUser();
    const filename = name('crc');
    const bytes = randomBytes(7 * MiB);
    const parts = [bytes.subarray(0, 5 * MiB), bytes.subarray(5 * MiB)];
    const crcs = await Promise.all(parts.map((part) => checksumOf('CRC32', part)));

    expectError(
      await api('/s3/multipart', {
        method: 'POST',
        token: user.jwt,
        body: { filename, metadata: { checksumAlgorithm: 'MD5' } },
      }),
      400,
      'ValidationError',
    );
    const up = await create(user, filename, { checksumAlgorithm: 'CRC32' });
    expect((await api(`/jobs/${up.uploadId}`, { token: user.jwt })).body.job.checksumAlgorithm).toBe('CRC32');
    const signPath = (partNumber: number, checksum?: string) =>
      `/s3/multipart/${up.uploadId}/${partNumber}?${new URLSearchParams({ key: up.key, ...(checksum ? { checksum } : {}) })}`;
    // Uppy's own AwsS3 sends no checksum: such an upload is not for it.
    expectError(await api(signPath(1), { token: user.jwt }), 400, 'ChecksumRequired');
    // Well-formed base64, but 8 bytes: a CRC64NVME's, not a CRC32's.
    expectError(await api(signPath(1, 'rosUhgp5mIg='), { token: user.jwt }), 400, 'BadChecksum');
    expectError(await api(signPath(1, 'not base64!'), { token: user.jwt }), 400, 'ValidationError');

    const etags: string[] = [];
    for (const [index, part] of parts.entries()) {
      const signed = await api(signPath(index + 1, crcs[index]), { token: user.jwt });
      expect(signed.status).toBe(200);
      expect(signed.body.headers).toEqual({ 'x-amz-checksum-crc32': crcs[index] });
      expect(new URL(signed.body.url).searchParams.get('X-Amz-SignedHeaders')).toBe(
        'host;x-amz-checksum-crc32',
      );
      const put = await fetch(signed.body.url, { method: 'PUT', body: part, headers: signed.body.headers });
      expect(put.status).toBe(200);
      etags.push(put.headers.get('etag')!);
    }
    const whole = new FullObjectCrc('CRC32');
    for (const [index, part] of parts.entries()) whole.append(crcs[index]!, part.length);
    const completePath = `/s3/multipart/${up.uploadId}/complete${q(up.key)}`;
    const listed = etags.map((ETag, index) => ({ PartNumber: index + 1, ETag }));
    // A whole-file checksum that is not base64, or not a CRC32's length: 400, the upload stays open.
    for (const [checksum, code] of [
      ['not base64!', 'ValidationError'],
      ['rosUhgp5mIg=', 'BadChecksum'],
    ] as const) {
      expectError(
        await api(completePath, { method: 'POST', token: user.jwt, body: { parts: listed, checksum } }),
        400,
        code,
      );
    }
    const done = await api(completePath, {
      method: 'POST',
      token: user.jwt,
      body: { parts: listed, checksum: whole.digest() },
    });
    expect(done.status).toBe(200);
    expect(done.body.job).toMatchObject({
      status: 'COMPLETED',
      size: bytes.length,
      checksumAlgorithm: 'CRC32',
    });
    expect(whole.digest()).toBe(await checksumOf('CRC32', bytes));
    expectSameBytes((await testBucket().getObjectBytes(up.key))!, bytes);
  });

  it('an upload created without a checksum algorithm refuses a part checksum, as POST /upload/{jobId}/parts does', async () => {
    const user = await newUser();
    const up = await create(user, name('plain'));
    const signed = await api(
      `/s3/multipart/${up.uploadId}/1?${new URLSearchParams({ key: up.key, checksum: 'y/Q5Jg==' })}`,
      { token: user.jwt },
    );
    expect(expectError(signed, 400, 'ValidationError').message).toMatch(/without a checksumAlgorithm/);
    const plain = await api(`/s3/multipart/${up.uploadId}/1${q(up.key)}`, { token: user.jwt });
    expect(plain.status).toBe(200);
    expect(plain.body.headers).toBeUndefined();
    // Nor a whole-file checksum at completion.
    const etag = await putPart(plain.body.url, randomBytes(1000));
    const refused = await api(`/s3/multipart/${up.uploadId}/complete${q(up.key)}`, {
      method: 'POST',
      token: user.jwt,
      body: { parts: [{ PartNumber: 1, ETag: etag }], checksum: 'y/Q5Jg==' },
    });
    expect(expectError(refused, 400, 'ValidationError').message).toMatch(/without a checksumAlgorithm/);
  });
});
