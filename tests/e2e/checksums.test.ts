import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { type ChecksumAlgorithm, checksumOf, FullObjectCrc } from '../../common/checksums.ts';
import { MiB } from '../../common/part-plan.ts';
import { api } from '../support/http.ts';
import { putOnNewConnection, s3ErrorCode, testBucket } from '../support/s3.ts';
import { testStack } from '../support/stack-env.ts';
import { createTestUser } from '../support/users.ts';

/**
 * Integrity end to end: part URLs that bind each part's checksum, whole-file checksums S3 verifies
 * at completion, and the checksum S3 stores shown by the service. moto neither checks a part's body
 * against its checksum nor a completion's, so what S3 must refuse runs only on LocalStack
 * (TEST_EMULATOR=localstack npm test); the service's own validation runs everywhere.
 */

const stack = testStack();
const checkingS3 = stack.emulator?.s3 === 'localstack';
const describeOnCheckingS3 = checkingS3 ? describe : describe.skip;
const checkingTitle = checkingS3
  ? 'checksums against an S3 that verifies them (LocalStack)'
  : `checksums verified by S3 (skipped: S3 here is ${stack.emulator?.s3 ?? 'unknown'}, which checks no part or object checksum; run TEST_EMULATOR=localstack npm test)`;

type User = Awaited<ReturnType<typeof createTestUser>> & { jwt: string };

async function newUser(): Promise<User> {
  const user = await createTestUser('sum');
  return { ...user, jwt: await user.token() };
}

interface SignedPart {
  partNumber: number;
  url: string;
  headers: Record<string, string>;
}

/** A file of `size` bytes cut into 5 MiB parts, with each part's checksum. */
async function fileOf(size: number, algorithm: ChecksumAlgorithm) {
  const bytes = randomBytes(size);
  const parts: { partNumber: number; bytes: Buffer; checksum: string }[] = [];
  for (let start = 0, partNumber = 1; start < size; start += 5 * MiB, partNumber++) {
    const part = bytes.subarray(start, Math.min(start + 5 * MiB, size));
    parts.push({ partNumber, bytes: part, checksum: await checksumOf(algorithm, part) });
  }
  return { bytes, parts };
}

async function startUpload(user: User, filename: string, size: number, algorithm: ChecksumAlgorithm) {
  const created = await api('/upload', {
    method: 'POST',
    token: user.jwt,
    body: { filename, size, partSize: 5 * MiB, checksumAlgorithm: algorithm },
  });
  expect(created.status).toBe(201);
  return created.body as {
    job: { jobId: string; checksumAlgorithm: string };
    key: string;
    parts: SignedPart[];
  };
}

async function signParts(user: User, jobId: string, parts: { partNumber: number; checksum: string }[]) {
  const signed = await api(`/upload/${jobId}/parts`, {
    method: 'POST',
    token: user.jwt,
    body: { parts: parts.map(({ partNumber, checksum }) => ({ partNumber, checksum })) },
  });
  expect(signed.status).toBe(200);
  return signed.body.parts as SignedPart[];
}

const complete = (user: User, jobId: string, body?: unknown) =>
  api(`/upload/${jobId}/complete`, { method: 'POST', token: user.jwt, ...(body ? { body } : {}) });

/**
 * The object's checksum as the AWS CLI reads it (`s3api head-object --checksum-mode ENABLED`), or,
 * where no AWS CLI is installed, the same HeadObject through the SDK.
 */
function headChecksum(key: string): Promise<Record<string, string | undefined>> {
  const cli = spawnSync(
    'aws',
    [
      '--endpoint-url',
      stack.s3Endpoint,
      '--region',
      stack.region,
      's3api',
      'head-object',
      '--bucket',
      stack.bucket,
      '--key',
      key,
      '--checksum-mode',
      'ENABLED',
      '--output',
      'json',
    ],
    {
      encoding: 'utf8',
      env: { ...process.env, AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' },
    },
  );
  if (cli.status === 0) {
    const head = JSON.parse(cli.stdout) as Record<string, string | undefined>;
    return Promise.resolve({ ChecksumCRC32: head.ChecksumCRC32, ChecksumType: head.ChecksumType });
  }
  return testBucket()
    .head(key, { checksum: true })
    .then((object) => ({ ChecksumCRC32: object?.checksum?.value, ChecksumType: object?.checksum?.type }));
}

describe('checksums: what the service itself checks', () => {
  it('an upload with an algorithm signs no URL up front, and wants a well-formed checksum for every part', async () => {
    const user = await newUser();
    const upload = await startUpload(user, 'rules.bin', 6 * MiB, 'CRC32');
    expect(upload.parts).toEqual([]);
    expect(upload.job.checksumAlgorithm).toBe('CRC32');
    const path = `/upload/${upload.job.jobId}/parts`;
    const asked = (body: unknown) => api(path, { method: 'POST', token: user.jwt, body });

    const byNumbers = await asked({ partNumbers: [1] });
    expect(byNumbers.status).toBe(400);
    expect(byNumbers.body.error.code).toBe('ChecksumRequired');
    const without = await asked({ parts: [{ partNumber: 1 }] });
    expect(without.body.error.code).toBe('ChecksumRequired');
    // A CRC64NVME value (8 bytes) for a CRC32 upload, and text that is no base64 at all.
    for (const checksum of ['rosUhgp5mIg=', 'not base64!', 'y/Q5Jh==']) {
      const wrong = await asked({ parts: [{ partNumber: 1, checksum }] });
      expect({ checksum, status: wrong.status }).toEqual({ checksum, status: 400 });
    }
    const signed = await asked({ parts: [{ partNumber: 2, checksum: 'y/Q5Jg==' }] });
    expect(signed.status).toBe(200);
    expect(signed.body.parts[0].headers).toEqual({
      'content-length': String(1 * MiB),
      'x-amz-checksum-crc32': 'y/Q5Jg==',
    });
    const query = new URL(signed.body.parts[0].url).searchParams;
    expect(query.get('X-Amz-SignedHeaders')).toBe('content-length;host;x-amz-checksum-crc32');
    // S3 ignores a checksum in the query string: it must not be there.
    expect([...query.keys()].filter((name) => name.toLowerCase().includes('checksum'))).toEqual([]);

    // A whole-file checksum of the wrong length is refused before S3 is asked.
    const badWhole = await complete(user, upload.job.jobId, { checksum: 'rosUhgp5mIg=' });
    expect(badWhole.status).toBe(400);
    expect(badWhole.body.error.code).toBe('BadChecksum');
  });

  it('an upload without an algorithm takes no checksum, and SHA256 takes no whole-file one', async () => {
    const user = await newUser();
    const created = await api('/upload', {
      method: 'POST',
      token: user.jwt,
      body: { filename: 'plain.bin', size: 10 },
    });
    expect(created.status).toBe(201);
    expect(created.body.parts).toHaveLength(1);
    expect(created.body.parts[0].headers).toEqual({ 'content-length': '10' });
    const jobId = created.body.job.jobId;
    const withChecksum = await api(`/upload/${jobId}/parts`, {
      method: 'POST',
      token: user.jwt,
      body: { parts: [{ partNumber: 1, checksum: 'y/Q5Jg==' }] },
    });
    expect(withChecksum.status).toBe(400);
    expect((await complete(user, jobId, { checksum: 'y/Q5Jg==' })).status).toBe(400);
    const unknown = await api('/upload', {
      method: 'POST',
      token: user.jwt,
      body: { filename: 'md5.bin', size: 10, checksumAlgorithm: 'MD5' },
    });
    expect(unknown.status).toBe(400);

    const sha = await startUpload(user, 'sha.bin', 10, 'SHA256');
    const whole = await complete(user, sha.job.jobId, {
      checksum: await checksumOf('SHA256', Buffer.alloc(10)),
    });
    expect(whole.status).toBe(400);
    expect(whole.body.error.message).toMatch(/composite/);
  });

  it('progress reports and completions with a malformed checksum or body get a 400 in the error shape', async () => {
    const user = await newUser();
    const upload = await startUpload(user, 'bodies.bin', 10, 'CRC32');
    const jobId = upload.job.jobId;
    const progress = (parts: unknown) =>
      api(`/upload/${jobId}/progress`, { method: 'POST', token: user.jwt, body: { parts } });
    const part = { partNumber: 1, etag: '"0123456789abcdef0123456789abcdef"', size: 10 };
    const wrongLength = await progress([{ ...part, checksum: 'rosUhgp5mIg=' }]);
    expect({ status: wrongLength.status, code: wrongLength.body.error.code }).toEqual({
      status: 400,
      code: 'BadChecksum',
    });
    const notBase64 = await progress([{ ...part, checksum: 'not base64!' }]);
    expect({ status: notBase64.status, code: notBase64.body.error.code }).toEqual({
      status: 400,
      code: 'ValidationError',
    });
    expect((await progress([{ ...part, checksum: 'y/Q5Jg==' }])).status).toBe(200);

    for (const body of ['"y/Q5Jg=="', '[]', '5', '{"checksum": 5}', '{"checksum": "y/Q5Jg==",']) {
      const answer = await api(`/upload/${jobId}/complete`, {
        method: 'POST',
        token: user.jwt,
        headers: { 'content-type': 'application/json' },
        body,
      });
      expect({ body, status: answer.status, error: typeof answer.body?.error?.code }).toEqual({
        body,
        status: 400,
        error: 'string',
      });
    }
    const notJson = await api(`/upload/${jobId}/complete`, {
      method: 'POST',
      token: user.jwt,
      headers: { 'content-type': 'text/plain' },
      body: 'y/Q5Jg==',
    });
    expect({ status: notJson.status, code: notJson.body.error.code }).toEqual({
      status: 415,
      code: 'UnsupportedMediaType',
    });
    // A JSON null is not the absent body (which means {}): it is refused like any non-object.
    const nullBody = await api(`/upload/${jobId}/complete`, {
      method: 'POST',
      token: user.jwt,
      headers: { 'content-type': 'application/json' },
      body: 'null',
    });
    expect({ status: nullBody.status, code: nullBody.body.error.code }).toEqual({
      status: 400,
      code: 'ValidationError',
    });
    // No body at all is {}: the completion runs and finds no part yet.
    const noBody = await api(`/upload/${jobId}/complete`, { method: 'POST', token: user.jwt });
    expect({ status: noBody.status, code: noBody.body.error.code }).toEqual({
      status: 409,
      code: 'PartsIncomplete',
    });
    // Nothing of that touched the job.
    expect((await api(`/jobs/${jobId}`, { token: user.jwt })).body.job.status).toBe('UPLOADING');
  });

  it('a form upload is stored with its CRC32, which GET /files shows', async () => {
    const user = await newUser();
    const content = Buffer.from('a small file, sent with the seed’s form\n');
    const form = new FormData();
    form.append('file', new Blob([content]), 'form.txt');
    const stored = await api('/upload', { method: 'POST', token: user.jwt, body: form });
    expect(stored.status).toBe(201);
    const expected = await checksumOf('CRC32', content);
    const files = await api('/files', { token: user.jwt });
    const entry = files.body.files.find((file: { name: string }) => file.name === 'form.txt');
    if (checkingS3) {
      expect(stored.body.job.checksum).toEqual({ algorithm: 'CRC32', type: 'FULL_OBJECT', value: expected });
      expect(entry.checksum).toEqual({ algorithm: 'CRC32', type: 'FULL_OBJECT', value: expected });
    } else {
      // moto stores no checksum for a PutObject; whatever is shown must be the right one.
      if (entry.checksum) expect(entry.checksum.value).toBe(expected);
    }
  });
});

describeOnCheckingS3(checkingTitle, () => {
  it('refuses a part whose body differs by one byte from the checksum its URL binds; the right bytes then complete', async () => {
    const user = await newUser();
    const file = await fileOf(5 * MiB + 1000, 'CRC32');
    const upload = await startUpload(user, 'flipped.bin', file.bytes.length, 'CRC32');
    const signed = await signParts(user, upload.job.jobId, file.parts);

    const first = signed[0]!;
    const corrupted = Buffer.from(file.parts[0]!.bytes);
    corrupted[12_345]! ^= 0x01;
    const refused = await putOnNewConnection(first.url, corrupted, first.headers);
    expect({ status: refused.status, code: s3ErrorCode(refused.text) }).toEqual({
      status: 400,
      code: 'BadDigest',
    });
    // Nor can the client swap in the checksum of its corrupted bytes: that header is signed.
    const swapped = await putOnNewConnection(first.url, corrupted, {
      ...first.headers,
      'x-amz-checksum-crc32': await checksumOf('CRC32', corrupted),
    });
    expect({ status: swapped.status, code: s3ErrorCode(swapped.text) }).toEqual({
      status: 403,
      code: 'SignatureDoesNotMatch',
    });
    expect(await testBucket().listParts(upload.key, (await jobUploadId(upload.key))!)).toEqual([]);

    for (const [index, part] of signed.entries()) {
      expect((await putOnNewConnection(part.url, file.parts[index]!.bytes, part.headers)).status).toBe(200);
    }
    const whole = new FullObjectCrc('CRC32');
    for (const part of file.parts) whole.append(part.checksum, part.bytes.length);
    const done = await complete(user, upload.job.jobId, { checksum: whole.digest() });
    expect(done.status).toBe(200);
    expect(done.body.job.status).toBe('COMPLETED');
    expect(done.body.job.checksum).toEqual({
      algorithm: 'CRC32',
      type: 'FULL_OBJECT',
      value: await checksumOf('CRC32', file.bytes),
    });
    expect(Buffer.from((await testBucket().getObjectBytes(upload.key))!).equals(file.bytes)).toBe(true);
  });

  it('a wrong whole-file checksum is 409 ChecksumMismatch and the job stays UPLOADING; the right one completes, as head-object and GET /files show', async () => {
    const user = await newUser();
    const file = await fileOf(11 * MiB, 'CRC32');
    const upload = await startUpload(user, 'whole.bin', file.bytes.length, 'CRC32');
    const signed = await signParts(user, upload.job.jobId, file.parts);
    for (const [index, part] of signed.entries()) {
      expect((await putOnNewConnection(part.url, file.parts[index]!.bytes, part.headers)).status).toBe(200);
    }
    const right = await checksumOf('CRC32', file.bytes);
    const other = await checksumOf('CRC32', Buffer.concat([file.bytes, Buffer.from('x')]));

    const mismatch = await complete(user, upload.job.jobId, { checksum: other });
    expect(mismatch.status).toBe(409);
    expect(mismatch.body.error.code).toBe('ChecksumMismatch');
    const after = await api(`/jobs/${upload.job.jobId}`, { token: user.jwt });
    expect(after.body.job.status).toBe('UPLOADING');
    expect(await testBucket().head(upload.key)).toBeUndefined();

    const done = await complete(user, upload.job.jobId, { checksum: right });
    expect(done.status).toBe(200);
    expect(done.body.job.status).toBe('COMPLETED');
    const expected = { algorithm: 'CRC32', type: 'FULL_OBJECT', value: right };
    expect(done.body.job.checksum).toEqual(expected);
    const files = await api('/files', { token: user.jwt });
    expect(files.body.files.find((entry: { name: string }) => entry.name === 'whole.bin').checksum).toEqual(
      expected,
    );
    expect(await headChecksum(upload.key)).toEqual({ ChecksumCRC32: right, ChecksumType: 'FULL_OBJECT' });
  });

  it.each(['CRC32C', 'CRC64NVME', 'SHA256'] as const)(
    'uploads and verifies with %s too',
    async (algorithm) => {
      const user = await newUser();
      const file = await fileOf(5 * MiB + 17, algorithm);
      const upload = await startUpload(user, `${algorithm}.bin`, file.bytes.length, algorithm);
      const signed = await signParts(user, upload.job.jobId, file.parts);
      const corrupted = Buffer.from(file.parts[1]!.bytes);
      corrupted[0]! ^= 0x80;
      expect((await putOnNewConnection(signed[1]!.url, corrupted, signed[1]!.headers)).status).toBe(400);
      for (const [index, part] of signed.entries()) {
        expect((await putOnNewConnection(part.url, file.parts[index]!.bytes, part.headers)).status).toBe(200);
      }
      const whole =
        algorithm === 'SHA256' ? undefined : { checksum: await checksumOf(algorithm, file.bytes) };
      const done = await complete(user, upload.job.jobId, whole);
      expect(done.status).toBe(200);
      expect(done.body.job.checksum).toMatchObject({
        algorithm,
        type: algorithm === 'SHA256' ? 'COMPOSITE' : 'FULL_OBJECT',
        ...(whole ? { value: whole.checksum } : {}),
      });
    },
  );

  it('GET /files vouches for no checksum once the object was rewritten behind the service’s back', async () => {
    const user = await newUser();
    const file = await fileOf(1000, 'CRC32');
    const upload = await startUpload(user, 'rewritten.bin', file.bytes.length, 'CRC32');
    const [part] = await signParts(user, upload.job.jobId, file.parts);
    expect((await putOnNewConnection(part!.url, file.bytes, part!.headers)).status).toBe(200);
    expect((await complete(user, upload.job.jobId)).body.job.checksum.value).toBe(file.parts[0]!.checksum);

    const client = (testBucket() as unknown as { s3: { send(command: unknown): Promise<unknown> } }).s3;
    await client.send(
      new PutObjectCommand({ Bucket: stack.bucket, Key: upload.key, Body: randomBytes(1000) }),
    );
    const files = await api('/files', { token: user.jwt });
    const entry = files.body.files.find((item: { name: string }) => item.name === 'rewritten.bin');
    expect(entry.size).toBe(1000);
    expect(entry.checksum).toBeUndefined();
  });

  it('the Companion routes (the console): a part URL binds its checksum without its size, and S3 checks the whole file at completion', async () => {
    const user = await newUser();
    const file = await fileOf(6 * MiB, 'CRC32');
    const created = await api('/s3/multipart', {
      method: 'POST',
      token: user.jwt,
      body: { filename: 'console.bin', metadata: { checksumAlgorithm: 'CRC32' } },
    });
    expect(created.status).toBe(200);
    const { key, uploadId } = created.body as { key: string; uploadId: string };
    const query = (extra: Record<string, string> = {}) => `?${new URLSearchParams({ key, ...extra })}`;
    const signed: { url: string; headers: Record<string, string> }[] = [];
    for (const part of file.parts) {
      const answer = await api(
        `/s3/multipart/${uploadId}/${part.partNumber}${query({ checksum: part.checksum })}`,
        {
          token: user.jwt,
        },
      );
      expect(answer.status).toBe(200);
      signed.push(answer.body);
    }

    const corrupted = Buffer.from(file.parts[0]!.bytes);
    corrupted[4_321]! ^= 0x10;
    const refused = await putOnNewConnection(signed[0]!.url, corrupted, signed[0]!.headers);
    expect({ status: refused.status, code: s3ErrorCode(refused.text) }).toEqual({
      status: 400,
      code: 'BadDigest',
    });
    const swapped = await putOnNewConnection(signed[0]!.url, corrupted, {
      'x-amz-checksum-crc32': await checksumOf('CRC32', corrupted),
    });
    expect({ status: swapped.status, code: s3ErrorCode(swapped.text) }).toEqual({
      status: 403,
      code: 'SignatureDoesNotMatch',
    });

    const etags: string[] = [];
    for (const [index, part] of file.parts.entries()) {
      const put = await fetch(signed[index]!.url, {
        method: 'PUT',
        body: part.bytes,
        headers: signed[index]!.headers,
      });
      expect(put.status).toBe(200);
      etags.push(put.headers.get('etag')!);
    }
    const parts = etags.map((ETag, index) => ({ PartNumber: index + 1, ETag }));
    const completePath = `/s3/multipart/${uploadId}/complete${query()}`;
    const other = await checksumOf('CRC32', Buffer.concat([file.bytes, Buffer.from('x')]));
    const mismatch = await api(completePath, {
      method: 'POST',
      token: user.jwt,
      body: { parts, checksum: other },
    });
    expect(mismatch.status).toBe(409);
    expect(mismatch.body.error.code).toBe('ChecksumMismatch');

    const right = await checksumOf('CRC32', file.bytes);
    const done = await api(completePath, {
      method: 'POST',
      token: user.jwt,
      body: { parts, checksum: right },
    });
    expect(done.status).toBe(200);
    expect(done.body.job.checksum).toEqual({ algorithm: 'CRC32', type: 'FULL_OBJECT', value: right });
    expect(await headChecksum(key)).toEqual({ ChecksumCRC32: right, ChecksumType: 'FULL_OBJECT' });
  });
});

/** The open multipart upload of a key (the tests see S3, not the job's record). */
async function jobUploadId(key: string) {
  const prefix = key.slice(0, key.lastIndexOf('/') + 1);
  return (await testBucket().listOpenUploads(prefix)).find((open) => open.key === key)?.uploadId;
}
