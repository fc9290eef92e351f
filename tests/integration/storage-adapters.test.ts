import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { UploadPartCommand } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { FinalizeRequestMiddleware, HttpRequest, MetadataBearer } from '@smithy/types';
import { checksumOf } from '../../common/checksums.ts';
import { UserExistsError, UserNotFoundError, UserStore } from '../../lib/auth/user-store.ts';
import { documentClient, presigningS3Client, s3Client, transferS3Client } from '../../lib/aws/clients.ts';
import { config } from '../../lib/config.ts';
import { fileStore, transferFileStore } from '../../lib/storage/index.ts';
import { expectSameBytes } from '../support/bytes.ts';
import { testStack } from '../support/stack-env.ts';

const MiB = 1024 * 1024;

describe('the S3 adapter against the emulator', () => {
  const store = fileStore();
  const transferStore = transferFileStore();
  const prefix = `uploads/adapter-${randomUUID().slice(0, 8)}/`;

  it('uses the clients made once in lib/aws, pointed at the emulator', () => {
    expect(s3Client()).toBe(s3Client());
    expect(presigningS3Client()).not.toBe(s3Client());
    expect(config().endpoints.s3).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(store.bucket).toBe(config().bucket);
  });

  it('writes, reads, lists, heads and deletes objects', async () => {
    const bytes = randomBytes(1024);
    await store.putObject(`${prefix}b.bin`, bytes, 'application/octet-stream');
    await store.putObject(`${prefix}a.txt`, 'hello');
    expect(Buffer.from((await store.getObjectBytes(`${prefix}b.bin`))!)).toEqual(bytes);
    expect((await store.head(`${prefix}a.txt`))?.size).toBe(5);
    expect((await store.list(prefix)).map((object) => object.key)).toEqual([
      `${prefix}a.txt`,
      `${prefix}b.bin`,
    ]);
    await store.deleteObject(`${prefix}a.txt`);
    expect(await store.head(`${prefix}a.txt`)).toBeUndefined();
    expect(await store.getObjectBytes(`${prefix}a.txt`)).toBeUndefined();
  });

  it('runs a multipart upload through presigned part URLs and completes it from ListParts', async () => {
    const key = `${prefix}multi.bin`;
    const parts = [randomBytes(5 * MiB), randomBytes(1234)];
    const uploadId = await store.createMultipartUpload(key, 'application/octet-stream');
    for (const [index, body] of parts.entries()) {
      const url = await store.presignUploadPart(
        key,
        uploadId,
        { partNumber: index + 1, size: body.length },
        60,
      );
      expect(url).not.toContain('x-amz-checksum-crc32');
      const response = await fetch(url, { method: 'PUT', body });
      expect(response.status).toBe(200);
      expect(response.headers.get('etag')).toBeTruthy();
    }
    const listed = await store.listParts(key, uploadId);
    expect(listed?.map((part) => [part.partNumber, part.size])).toEqual([
      [1, 5 * MiB],
      [2, 1234],
    ]);
    expect((await store.listOpenUploads(prefix)).map((upload) => upload.uploadId)).toContain(uploadId);
    await store.completeMultipartUpload(key, uploadId, listed!);
    expectSameBytes((await store.getObjectBytes(key))!, Buffer.concat(parts));
    expect(await store.listOpenUploads(prefix)).toEqual([]);
  });

  it('sends a part with its checksum unsigned (the checksum signed), and S3 takes it; without one the body stays signed', async () => {
    const key = `${prefix}unsigned.bin`;
    const parts = [randomBytes(5 * MiB), randomBytes(1000)];
    const client = transferS3Client();
    // What reaches the wire, after signing.
    const sent: Record<string, string>[] = [];
    const capture: FinalizeRequestMiddleware<object, MetadataBearer> = (next) => (args) => {
      sent.push({ ...(args.request as HttpRequest).headers });
      return next(args);
    };
    client.middlewareStack.addRelativeTo(capture, {
      relation: 'after',
      toMiddleware: 'awsAuthMiddleware',
      name: 'captureSent',
    });
    try {
      const uploadId = await transferStore.createMultipartUpload(key, 'application/octet-stream', 'CRC32');
      const checksum = { algorithm: 'CRC32' as const, value: await checksumOf('CRC32', parts[0]!) };
      await transferStore.uploadPart(key, uploadId, 1, parts[0]!, checksum);
      expect(sent.at(-1)).toMatchObject({
        'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
        'x-amz-checksum-crc32': checksum.value,
      });
      expect(sent.at(-1)!.authorization).toMatch(/SignedHeaders=[^,]*x-amz-checksum-crc32/);
      expect(await transferStore.listParts(key, uploadId)).toMatchObject([{ partNumber: 1, size: 5 * MiB }]);
      await transferStore.abortMultipartUpload(key, uploadId);

      const plain = await transferStore.createMultipartUpload(`${key}.plain`, 'application/octet-stream');
      await transferStore.uploadPart(`${key}.plain`, plain, 1, parts[1]!);
      expect(sent.at(-1)!['x-amz-content-sha256']).toBe(createHash('sha256').update(parts[1]!).digest('hex'));
      await transferStore.abortMultipartUpload(`${key}.plain`, plain);
    } finally {
      client.middlewareStack.remove('captureSent');
    }
  });

  // moto checks a part's body against x-amz-content-sha256 only, so an unsigned part gets no check
  // there; S3 and LocalStack check it against its checksum.
  const onCheckingS3 = testStack().emulator?.s3 === 'localstack' ? it : it.skip;
  onCheckingS3('refuses a part sent unsigned whose bytes do not match its checksum', async () => {
    const key = `${prefix}unsigned-damaged.bin`;
    const bytes = randomBytes(5 * MiB);
    const uploadId = await transferStore.createMultipartUpload(key, 'application/octet-stream', 'CRC32');
    const checksum = { algorithm: 'CRC32' as const, value: await checksumOf('CRC32', bytes) };
    const damaged = Buffer.from(bytes);
    damaged[100]! ^= 1;
    await expect(transferStore.uploadPart(key, uploadId, 1, damaged, checksum)).rejects.toMatchObject({
      $metadata: { httpStatusCode: 400 },
    });
    expect(await transferStore.listParts(key, uploadId)).toEqual([]);
    await transferStore.uploadPart(key, uploadId, 1, bytes, checksum);
    expect(await transferStore.listParts(key, uploadId)).toMatchObject([{ partNumber: 1, size: 5 * MiB }]);
    await transferStore.abortMultipartUpload(key, uploadId);
  });

  it('signs many part URLs at once, each exactly as getSignedUrl would and each accepted by S3', async () => {
    const key = `${prefix}many parts ü.bin`;
    const uploadId = await store.createMultipartUpload(key);
    const bodies = [1, 2, 3].map((partNumber) => `part ${partNumber}`);
    const urls = await store.presignUploadParts(
      key,
      uploadId,
      bodies.map((body, index) => ({ partNumber: index + 1, size: body.length })),
      60,
    );
    // getSignedUrl of an UploadPart that declares its length, with content-length among the signed headers.
    const reference = await getSignedUrl(
      presigningS3Client(),
      new UploadPartCommand({
        Bucket: store.bucket,
        Key: key,
        UploadId: uploadId,
        PartNumber: 2,
        ContentLength: bodies[1]!.length,
      }),
      { expiresIn: 60, signableHeaders: new Set(['content-length']) },
    );
    const unsigned = (url: string) => url.replace(/X-Amz-(Date|Signature)=[^&]+/g, '');
    expect(unsigned(urls[1]!)).toBe(unsigned(reference));
    for (const [index, url] of urls.entries()) {
      expect(new URL(url).searchParams.get('partNumber')).toBe(String(index + 1));
      expect(new URL(url).searchParams.get('X-Amz-SignedHeaders')).toBe('content-length;host');
      expect((await fetch(url, { method: 'PUT', body: bodies[index] })).status).toBe(200);
    }
    expect((await store.listParts(key, uploadId))?.map((part) => part.partNumber)).toEqual([1, 2, 3]);
    await store.abortMultipartUpload(key, uploadId);
  });

  it('aborts an upload idempotently, after which ListParts reports it gone', async () => {
    const key = `${prefix}aborted.bin`;
    const uploadId = await store.createMultipartUpload(key);
    await store.abortMultipartUpload(key, uploadId);
    await store.abortMultipartUpload(key, uploadId);
    expect(await store.listParts(key, uploadId)).toBeUndefined();
    expect(await store.head(key)).toBeUndefined();
  });
});

describe('the DynamoDB adapter against the emulator', () => {
  const users = new UserStore(documentClient(), config().usersTable);
  const name = `adapter-${randomUUID().slice(0, 8)}`;

  it('creates, reads, updates, lists and removes a user with conditional writes', async () => {
    await users.create(name, 'hash-1');
    await expect(users.create(name, 'hash-2')).rejects.toBeInstanceOf(UserExistsError);
    expect((await users.get(name))?.passwordHash).toBe('hash-1');
    await users.setPassword(name, 'hash-3');
    expect((await users.get(name))?.passwordHash).toBe('hash-3');
    const listed = await users.list();
    expect(listed.find((user) => user.username === name)).toEqual(
      expect.not.objectContaining({ passwordHash: expect.anything() }),
    );
    await users.remove(name);
    expect(await users.get(name)).toBeUndefined();
    await expect(users.remove(name)).rejects.toBeInstanceOf(UserNotFoundError);
    await expect(users.setPassword(name, 'x')).rejects.toBeInstanceOf(UserNotFoundError);
  });

  it('sees the table TTL that serverless.yml declares', async () => {
    const { DescribeTimeToLiveCommand } = await import('@aws-sdk/client-dynamodb');
    const client = new DynamoDBClient({ region: config().region, endpoint: config().endpoints.dynamodb });
    const ttl = await client.send(new DescribeTimeToLiveCommand({ TableName: config().jobsTable }));
    expect(ttl.TimeToLiveDescription).toMatchObject({
      AttributeName: 'expiresAt',
      TimeToLiveStatus: 'ENABLED',
    });
    DynamoDBDocumentClient.from(client).destroy();
  });
});
