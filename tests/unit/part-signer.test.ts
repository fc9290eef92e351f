import { createHmac } from 'node:crypto';
import { S3Client, type S3ClientConfig, UploadPartCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { AwsCredentialIdentity } from '@smithy/types';
import { CHECKSUM_ALGORITHMS } from '../../common/checksums.ts';
import { FileStore } from '../../lib/storage/file-store.ts';
import {
  keyPath,
  PartUrlSigner,
  parseProbe,
  sdkSigningOptions,
  signingKey,
} from '../../lib/storage/part-signer.ts';

/**
 * The direct part-URL signer against the SDK's getSignedUrl with the same inputs: same client
 * config, same credentials (session token too), same clock, same expiry, `content-length` signed.
 * Every URL must be the same string, byte for byte.
 */

// The clients here name their endpoints or mean AWS's; an emulator's from the environment (the stack
// the whole run starts sets AWS_ENDPOINT_URL_S3) would turn them all into one host. Jest gives each
// test file its own copy of the environment.
for (const name of Object.keys(process.env)) {
  if (name.startsWith('AWS_ENDPOINT_URL')) delete process.env[name];
}

const MiB = 1024 * 1024;

const STATIC = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
const SESSION = {
  accessKeyId: 'ASIAEXAMPLE',
  secretAccessKey: 'secret/with+symbols=',
  sessionToken: 'IQoJb3JpZ2luX2VjE/+= token with spaces & ampersands?',
};

/** Client configurations: emulator path-style, AWS virtual host, dotted buckets, custom ports and paths, FIPS. */
const CONFIGS: [string, S3ClientConfig][] = [
  ['emulator, path-style', { region: 'us-east-1', endpoint: 'http://127.0.0.1:4566', forcePathStyle: true }],
  ['AWS, virtual host', { region: 'eu-west-1' }],
  ['AWS, path-style', { region: 'ap-southeast-2', forcePathStyle: true }],
  ['custom host, virtual host', { region: 'us-west-2', endpoint: 'http://localhost:9000' }],
  [
    'custom endpoint with a base path',
    { region: 'eu-central-1', endpoint: 'https://s3.example.com:8443/base' },
  ],
  ['FIPS and dual-stack', { region: 'us-gov-west-1', useFipsEndpoint: true, useDualstackEndpoint: true }],
];

const BUCKETS = ['file-jobs-dev-files', 'dotted.bucket.name'];

/** Keys with what a file name may hold (and some it may not, for the encoder's sake). */
const KEYS = [
  'uploads/avijeet/report.pdf',
  'uploads/avijeet/a file with spaces.bin',
  "uploads/u/plus+percent%hash#question?amp&equals=semi;comma,colon:at@dollar$quote'bang!star*(paren)~tilde",
  'uploads/ünïcödé/naïve café 中文 файл.txt',
  'uploads/emoji/😀 🚀 👨‍👩‍👧.bin',
  'uploads/u/[brackets]{braces}<angle>"double"`back`^caret|pipe',
  'uploads/u/trailing.dot.',
  'exports/u/0f8fad5b-d9cb-469f-a165-70867728950e/out.gz',
  'a//double/slash/./dot/../dotdot',
];

const signingDates = [
  new Date('2026-12-01T03:49:17.123Z'),
  new Date('2026-12-31T23:59:59.999Z'), // the day and year change one millisecond later
  new Date('2027-01-01T00:00:00.000Z'),
];

async function sdkUrl(
  client: S3Client,
  input: { bucket: string; key: string; uploadId: string; partNumber: number; size?: number | undefined },
  expiresIn: number,
  signingDate: Date,
) {
  return getSignedUrl(
    client,
    new UploadPartCommand({
      Bucket: input.bucket,
      Key: input.key,
      UploadId: input.uploadId,
      PartNumber: input.partNumber,
      ContentLength: input.size,
    }),
    // An unsized URL: what the SDK signs of an UploadPart that declares no length (host alone).
    input.size === undefined
      ? { expiresIn, signingDate }
      : { expiresIn, signingDate, signableHeaders: new Set(['content-length']) },
  );
}

/** The part the credential tests sign. */
const ONE_PART = { bucket: 'b', key: 'k', uploadId: 'u', partNumber: 1, size: 5 * MiB };

const presigningClient = (config: S3ClientConfig, credentials: S3ClientConfig['credentials']) =>
  new S3Client({ ...config, credentials, requestChecksumCalculation: 'WHEN_REQUIRED' });

/** A signer over a client whose requests `change` alters before signing, and the mismatches it reports. */
function signerOfChangedRequests(
  change: (request: { headers: Record<string, string>; query: Record<string, string> }) => void,
) {
  const client = presigningClient(CONFIGS[0]![1], STATIC);
  client.middlewareStack.add(
    (next) => async (args) => {
      change(args.request as Parameters<typeof change>[0]);
      return next(args);
    },
    { step: 'build', name: 'changeRequest' },
  );
  const signingDate = new Date('2026-12-01T10:00:00Z');
  const told: string[] = [];
  const signer = new PartUrlSigner(client, {
    now: () => signingDate,
    onMismatch: (bucket) => told.push(bucket),
  });
  return { client, signer, told, signingDate };
}

describe('the direct part-URL signer', () => {
  it('signs every case exactly as getSignedUrl does, byte for byte', async () => {
    let compared = 0;
    const mismatches: string[] = [];
    for (const [name, config] of CONFIGS) {
      for (const credentials of [STATIC, SESSION]) {
        const client = presigningClient(config, credentials);
        for (const signingDate of signingDates) {
          const signer = new PartUrlSigner(client, {
            now: () => signingDate,
            onMismatch: (bucket) => mismatches.push(`${name} ${bucket}: probe differs`),
          });
          for (const bucket of BUCKETS) {
            for (const [index, key] of KEYS.entries()) {
              const uploadId = `2~iCw/Up+load=Id ${index}`;
              const expiresIn = [1, 900, 3600, 604_800][index % 4]!;
              const parts = [
                { partNumber: 1, size: 8 * MiB },
                { partNumber: 2, size: 5 * MiB },
                { partNumber: 999, size: 1 },
                { partNumber: 10_000, size: 5 * 1024 * MiB },
              ];
              const sized = await signer.presignUploadParts(bucket, key, uploadId, parts, expiresIn);
              const unsizedParts = [{ partNumber: 1 }, { partNumber: 10_000 }];
              const unsized = await signer.presignUnsizedParts(
                bucket,
                key,
                uploadId,
                unsizedParts,
                expiresIn,
              );
              const urls = [...sized, ...unsized];
              for (const [i, part] of [...parts, ...unsizedParts].entries()) {
                const expected = await sdkUrl(
                  client,
                  { bucket, key, uploadId, ...part },
                  expiresIn,
                  signingDate,
                );
                compared++;
                if (urls[i] !== expected)
                  mismatches.push(
                    `${name} ${bucket} ${key} part ${part.partNumber}:\n  ${urls[i]}\n  ${expected}`,
                  );
              }
            }
          }
        }
      }
    }
    expect(mismatches).toEqual([]);
    expect(compared).toBe(CONFIGS.length * 2 * signingDates.length * BUCKETS.length * KEYS.length * 6);
  });

  it('binds each part’s checksum as a signed header, sized or not, as getSignedUrl does with the header unhoisted', async () => {
    const mismatches: string[] = [];
    let compared = 0;
    const values = {
      CRC32: 'y/Q5Jg==',
      CRC32C: '4waSgw==',
      CRC64NVME: 'rosUhgp5mIg=',
      SHA256: `${'A'.repeat(43)}=`,
    };
    for (const [name, config] of CONFIGS) {
      for (const credentials of [STATIC, SESSION]) {
        const client = presigningClient(config, credentials);
        const signingDate = signingDates[0]!;
        const signer = new PartUrlSigner(client, { now: () => signingDate });
        for (const algorithm of CHECKSUM_ALGORITHMS) {
          const key = KEYS[compared % KEYS.length]!;
          const parts = [1, 2, 10_000].map((partNumber) => ({
            partNumber,
            size: partNumber * MiB,
            checksum: { algorithm, value: values[algorithm] },
          }));
          // Sized, then unsized (the Companion routes' URLs) with the same checksums.
          const urls = [
            ...(await signer.presignUploadParts('b', key, 'u', parts, 900)),
            ...(await signer.presignUnsizedParts('b', key, 'u', parts, 900)),
          ];
          for (const [i, part] of [
            ...parts,
            ...parts.map((part) => ({ ...part, size: undefined })),
          ].entries()) {
            const sized = part.size !== undefined;
            const sdk = await getSignedUrl(
              client,
              new UploadPartCommand({
                Bucket: 'b',
                Key: key,
                UploadId: 'u',
                PartNumber: part.partNumber,
                ...(sized ? { ContentLength: part.size } : {}),
                [`Checksum${algorithm}`]: part.checksum.value,
              }),
              sdkSigningOptions(900, signingDate, sized, algorithm),
            );
            // The SDK leaves an empty query parameter where the unhoisted header was ("&&"), which
            // is not part of what it signs: the same URL without it.
            const expected = sdk.replace('&&', '&');
            compared++;
            expect(new URL(urls[i]!).searchParams.get('X-Amz-SignedHeaders')).toBe(
              `${sized ? 'content-length;' : ''}host;x-amz-checksum-${algorithm.toLowerCase()}`,
            );
            if (urls[i] !== expected) mismatches.push(`${name} ${algorithm}:\n  ${urls[i]}\n  ${expected}`);
          }
        }
      }
    }
    expect(mismatches).toEqual([]);
    expect(compared).toBe(CONFIGS.length * 2 * CHECKSUM_ALGORITHMS.length * 6);
  });

  it('matches getSignedUrl on random keys of any characters (seeded)', async () => {
    let seed = 13;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    // ASCII punctuation, Latin-1, CJK, an astral-plane pair, '/' for segments.
    const pool = [
      ...' !"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~',
      ...'azAZ09',
      'é',
      'ß',
      'Ω',
      '中',
      '😀',
      '\u00a0',
      '/',
    ];
    const signingDate = new Date('2026-12-01T12:00:00Z');
    const client = presigningClient(CONFIGS[0]![1], SESSION);
    const signer = new PartUrlSigner(client, { now: () => signingDate });
    for (let n = 0; n < 200; n++) {
      const length = 1 + Math.floor(random() * 40);
      const key = `uploads/${Array.from({ length }, () => pool[Math.floor(random() * pool.length)]).join('')}`;
      const part = {
        partNumber: 1 + Math.floor(random() * 10_000),
        size: 1 + Math.floor(random() * 5 * 1024 * MiB),
      };
      const [url] = await signer.presignUploadParts('b', key, 'id', [part], 900);
      expect({ key, url }).toEqual({
        key,
        url: await sdkUrl(client, { bucket: 'b', key, uploadId: 'id', ...part }, 900, signingDate),
      });
    }
  });

  it('derives the signing key once per day, region, service and credentials (the SigV4 test vector)', async () => {
    // AWS's documented example: kSigning for 20150830/us-east-1/iam.
    const key = signingKey('wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', '20150830', 'us-east-1', 'iam');
    expect(key.toString('hex')).toBe('c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9');
    let now = new Date('2026-12-01T10:00:00Z');
    const signer = new PartUrlSigner(presigningClient(CONFIGS[0]![1], STATIC), { now: () => now });
    const sign = () => signer.presignUploadParts('b', 'k', 'u', [{ partNumber: 1, size: 5 * MiB }], 60);
    await sign(); // the probe and the first batch
    await sign();
    now = new Date('2026-12-01T23:59:59Z');
    await sign();
    expect(signer.keysDerived).toBe(1);
    now = new Date('2026-12-02T00:00:00Z');
    await sign();
    expect(signer.keysDerived).toBe(2);
  });

  it('takes new credentials from the client’s provider when the old ones near their expiry, and signs with them', async () => {
    const issued: (AwsCredentialIdentity & { expiration: Date })[] = [];
    const provider = async () => {
      const n = issued.length + 1;
      const credentials = {
        accessKeyId: `ASIA${n}`,
        secretAccessKey: `secret-${n}`,
        sessionToken: `token-${n}`,
        expiration: new Date(Date.now() + 3600_000),
      };
      issued.push(credentials);
      return credentials;
    };
    const client = presigningClient(CONFIGS[1]![1], provider);
    const signingDate = new Date('2026-12-01T10:00:00Z');
    const signer = new PartUrlSigner(client, { now: () => signingDate });
    const sign = async () =>
      (await signer.presignUploadParts('b', 'k', 'u', [{ partNumber: 1, size: 5 * MiB }], 60))[0]!;
    const accessKey = (url: string) => new URL(url).searchParams.get('X-Amz-Credential')!.split('/')[0];
    expect(accessKey(await sign())).toBe('ASIA1');
    expect(accessKey(await sign())).toBe('ASIA1');
    expect(issued).toHaveLength(1);
    // An hour later, as in a long-lived Lambda container: the first set is within the SDK's
    // 5-minute refresh window, so the client's memoized provider fetches a new one.
    issued[0]!.expiration = new Date(Date.now() + 60_000);
    const later = await sign();
    expect(accessKey(later)).toBe('ASIA2');
    expect(signer.keysDerived).toBe(2);
    const reference = presigningClient(CONFIGS[1]![1], {
      accessKeyId: 'ASIA2',
      secretAccessKey: 'secret-2',
      sessionToken: 'token-2',
    });
    expect(later).toBe(await sdkUrl(reference, ONE_PART, 60, signingDate));
  });

  it('signs right even when every read of the credentials gives new ones (then through the SDK)', async () => {
    let n = 0;
    const provider = async () => {
      n++;
      // Always inside the refresh window: the memoized provider asks again on every read.
      return {
        accessKeyId: `ASIA${n}`,
        secretAccessKey: `secret-${n}`,
        expiration: new Date(Date.now() + 60_000),
      };
    };
    const client = presigningClient(CONFIGS[0]![1], provider);
    const told: string[] = [];
    const signingDate = new Date('2026-12-01T10:00:00Z');
    const signer = new PartUrlSigner(client, {
      now: () => signingDate,
      onMismatch: (bucket) => told.push(bucket),
    });
    const [url] = await signer.presignUploadParts('b', 'k', 'u', [{ partNumber: 1, size: 5 * MiB }], 60);
    const number = /^ASIA(\d+)$/.exec(new URL(url!).searchParams.get('X-Amz-Credential')!.split('/')[0]!)![1];
    const reference = presigningClient(CONFIGS[0]![1], {
      accessKeyId: `ASIA${number}`,
      secretAccessKey: `secret-${number}`,
    });
    expect(url).toBe(await sdkUrl(reference, ONE_PART, 60, signingDate));
    // Credentials that change between reads are not a mismatch: nothing to warn about.
    expect(told).toEqual([]);
  });

  it('leaves the signing to the SDK, and says so, for a bucket whose URL it cannot reproduce', async () => {
    // Something the SDK would sign that this signer does not know: one more signed header.
    const { client, signer, told, signingDate } = signerOfChangedRequests((request) => {
      request.headers['content-md5'] = 'AAAAAAAAAAAAAAAAAAAAAA==';
    });
    const parts = [1, 2, 3].map((partNumber) => ({ partNumber, size: partNumber * MiB }));
    const urls = await signer.presignUploadParts('b', 'uploads/u/x y', 'u', parts, 900);
    expect(told).toEqual(['b']);
    for (const [i, part] of parts.entries()) {
      expect(urls[i]).toContain('X-Amz-SignedHeaders=content-length%3Bcontent-md5%3Bhost');
      expect(urls[i]).toBe(
        await sdkUrl(client, { bucket: 'b', key: 'uploads/u/x y', uploadId: 'u', ...part }, 900, signingDate),
      );
    }
  });

  it('carries query parameters that the endpoint adds', async () => {
    const { client, signer, told, signingDate } = signerOfChangedRequests((request) => {
      request.query.tenant = 'blue green';
    });
    const [url] = await signer.presignUploadParts('b', 'k', 'u', [{ partNumber: 4, size: 7 }], 900);
    expect(told).toEqual([]);
    expect(url).toContain('tenant=blue%20green');
    expect(url).toBe(
      await sdkUrl(
        client,
        { bucket: 'b', key: 'k', uploadId: 'u', partNumber: 4, size: 7 },
        900,
        signingDate,
      ),
    );
  });

  it('computes the signature SigV4 defines (checked with an HMAC written out here)', async () => {
    const signingDate = new Date('2026-12-01T10:00:00Z');
    const signer = new PartUrlSigner(presigningClient(CONFIGS[0]![1], STATIC), { now: () => signingDate });
    const [url] = await signer.presignUploadParts(
      'b',
      'uploads/u/a b',
      'id',
      [{ partNumber: 3, size: 42 }],
      900,
    );
    const parsed = new URL(url!);
    const query = [...parsed.searchParams.entries()]
      .filter(([name]) => name !== 'X-Amz-Signature')
      .map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(value)}`)
      .sort()
      .join('&');
    const canonical = [
      'PUT',
      '/b/uploads/u/a%20b',
      query,
      'content-length:42',
      'host:127.0.0.1:4566',
      '',
      'content-length;host',
      'UNSIGNED-PAYLOAD',
    ].join('\n');
    const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest();
    let key: string | Buffer = `AWS4${STATIC.secretAccessKey}`;
    for (const part of ['20261201', 'us-east-1', 's3', 'aws4_request']) key = hmac(key, part);
    const { createHash } = await import('node:crypto');
    const stringToSign = [
      'AWS4-HMAC-SHA256',
      '20261201T100000Z',
      '20261201/us-east-1/s3/aws4_request',
      createHash('sha256').update(canonical).digest('hex'),
    ].join('\n');
    expect(parsed.searchParams.get('X-Amz-Signature')).toBe(hmac(key, stringToSign).toString('hex'));
  });

  it('refuses an expiry SigV4 does not allow, as the SDK does', async () => {
    const signer = new PartUrlSigner(presigningClient(CONFIGS[0]![1], STATIC));
    await expect(
      signer.presignUploadParts('b', 'k', 'u', [{ partNumber: 1, size: 1 }], 604_801),
    ).rejects.toThrow(/week/);
    await expect(signer.presignUploadParts('b', 'k', 'u', [{ partNumber: 1, size: 1 }], 0)).rejects.toThrow(
      RangeError,
    );
    expect(await signer.presignUploadParts('b', 'k', 'u', [], 900)).toEqual([]);
  });

  it('is what FileStore signs part URLs with', async () => {
    const signingDate = new Date('2026-12-01T10:00:00Z');
    const client = presigningClient(CONFIGS[1]![1], SESSION);
    const store = new FileStore(client, client, 'bucket', {
      partSigner: new PartUrlSigner(client, { now: () => signingDate }),
    });
    const part = { bucket: 'bucket', key: 'uploads/u/f', uploadId: 'id', partNumber: 2 };
    expect(await store.presignUploadPart(part.key, part.uploadId, { partNumber: 2, size: 9 }, 300)).toBe(
      await sdkUrl(client, { ...part, size: 9 }, 300, signingDate),
    );
    const unsized = await store.presignUnsizedUploadPart(part.key, part.uploadId, 2, 300);
    expect(new URL(unsized).searchParams.get('X-Amz-SignedHeaders')).toBe('host');
    expect(unsized).toBe(await sdkUrl(client, part, 300, signingDate));
  });

  it('takes a probe URL apart, or declines one it does not know', () => {
    expect(keyPath('uploads/a b/ü~.x')).toBe('uploads/a%20b/%C3%BC~.x');
    expect(parseProbe('https://host/probe?X-Amz-Algorithm=AWS4-HMAC-SHA256#frag')).toBeUndefined();
    expect(parseProbe('https://host/other?X-Amz-Algorithm=AWS4-HMAC-SHA256')).toBeUndefined();
  });
});
