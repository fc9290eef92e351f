import { createHmac, createSecretKey, hash, type KeyObject } from 'node:crypto';
import { type S3Client, UploadPartCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { AwsCredentialIdentity } from '@smithy/types';
import { type ChecksumAlgorithm, checksumHeader } from '../../common/checksums.ts';
import { MAX_PRESIGN_SECONDS } from './presign-limits.ts';

export { MAX_PRESIGN_SECONDS };

/**
 * SigV4 query-string presigning of S3 UploadPart URLs, built directly: the URL that
 * `getSignedUrl(client, new UploadPartCommand({Bucket, Key, UploadId, PartNumber, ContentLength}),
 * {expiresIn, signableHeaders: new Set(['content-length'])})` gives, byte for byte, at a few
 * microseconds each instead of a run through the SDK's middleware stack per URL (10,000 URLs:
 * about 4 s through getSignedUrl one by one on a 2-core Xeon; see bench/upload.ts).
 *
 * What it builds (AWS SigV4, "Authenticating Requests: Using Query Parameters"):
 * - the canonical request `PUT`, the path (the endpoint's base path, then each `/`-separated segment
 *   of the key percent-encoded as the SDK does: RFC 3986, also `!'()*`), the sorted query
 *   (X-Amz-Algorithm, X-Amz-Content-Sha256=UNSIGNED-PAYLOAD, X-Amz-Credential, X-Amz-Date,
 *   X-Amz-Expires, X-Amz-Security-Token when the credentials have one, X-Amz-SignedHeaders,
 *   partNumber, uploadId, x-id=UploadPart), the signed headers `content-length` and `host` (and
 *   `x-amz-checksum-<algorithm>` for a part of an upload with a checksum algorithm: S3 checks the
 *   body against it, and ignores a checksum hoisted into the query), and `UNSIGNED-PAYLOAD`;
 * - the string to sign `AWS4-HMAC-SHA256 / date / scope / sha256(canonical request)`;
 * - the signature, HMAC-SHA256 under kSigning = HMAC chain of "AWS4"+secret over the day, region,
 *   service and "aws4_request", derived once per day, region, service and credentials.
 *
 * Where the bytes go (endpoint: path-style or virtual host, custom endpoint, FIPS/dual-stack, …) and
 * the signing region and service come from the SDK itself: once per bucket, a probe URL is signed
 * with getSignedUrl (the SDK's own endpoint rules and client config) and taken apart. The probe is
 * then rebuilt here from the same inputs and compared byte for byte: if the SDK ever signs in a way
 * this code does not reproduce (S3 Express, SigV4a, a new query parameter, …), that bucket is signed
 * with getSignedUrl, URL by URL, and never wrongly.
 *
 * Credentials come from the client's credential provider on every batch (the SDK memoizes it and
 * fetches new ones before they expire, as Lambda's rotate); the derived key follows them.
 */

const ALGORITHM = 'AWS4-HMAC-SHA256';
const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
const SIGNED_HEADERS = 'content-length;host';
const PROBE_KEY = 'probe';
const PROBE_UPLOAD_ID = 'probe-upload';
const PROBE_ATTEMPTS = 3;

/** RFC 3986 percent-encoding as the SDK's escapeUri does it (encodeURIComponent plus !'()*). */
export function escapeUri(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** An object key as a URL path, as the SDK serializes a greedy label: each segment escaped, `/` kept. */
export function keyPath(key: string): string {
  return key
    .split('/')
    .map((segment) => (/^[\w.~-]*$/.test(segment) ? segment : escapeUri(segment)))
    .join('/');
}

/** `20260102T030405Z` and `20260102` for a date, as SigV4 writes them. */
export function sigv4Dates(date: Date): { longDate: string; shortDate: string } {
  const longDate = date
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replace(/[-:]/g, '');
  return { longDate, shortDate: longDate.slice(0, 8) };
}

/** kSigning: HMAC("AWS4" + secret, day) -> region -> service -> "aws4_request". */
export function signingKey(
  secretAccessKey: string,
  shortDate: string,
  region: string,
  service: string,
): Buffer {
  let key: Buffer | string = `AWS4${secretAccessKey}`;
  for (const data of [shortDate, region, service, 'aws4_request']) {
    key = createHmac('sha256', key).update(data).digest();
  }
  return key as Buffer;
}

/** Where and how one bucket's part URLs are signed, learnt from the SDK's probe URL. */
interface BucketTarget {
  /** Everything before the key: `http://127.0.0.1:4566/bucket/` or `https://bucket.s3.eu-west-1.amazonaws.com/`. */
  urlPrefix: string;
  /** The same, as the canonical request's path starts. */
  pathPrefix: string;
  host: string;
  region: string;
  service: string;
  /** Query parameters the endpoint itself adds (escaped `name=value`), none on plain S3. */
  extraQuery: { name: string; text: string }[];
}

export interface PartToSign {
  partNumber: number;
  /** The exact Content-Length the URL accepts. */
  size: number;
  /** The part's checksum, bound as a signed `x-amz-checksum-*` header (the body must match it). */
  checksum?: { algorithm: ChecksumAlgorithm; value: string } | undefined;
}

/** A part with its size (the URL binds it) or without (the URL takes any length). */
type AnyPart = {
  partNumber: number;
  size: number | undefined;
  checksum?: PartToSign['checksum'];
};

export interface PartUrlSignerOptions {
  /** The signing clock (tests); getSignedUrl's own default is `new Date()`, uncorrected for skew. */
  now?: () => Date;
  /** Told once per bucket when the SDK's probe URL is not what this signer builds (then the SDK signs). */
  onMismatch?: (bucket: string, sdk: string, direct: string) => void;
}

/** How a bucket's URLs are signed: here, by the SDK, or by the SDK until a probe can tell. */
type Target = BucketTarget | 'sdk' | 'sdk-this-time';

export class PartUrlSigner {
  private readonly client: S3Client;
  private readonly now: () => Date;
  private readonly onMismatch: PartUrlSignerOptions['onMismatch'];
  private readonly targets = new Map<string, Promise<Target>>();
  private cachedKey:
    | { scope: string; accessKeyId: string; secretAccessKey: string; sessionToken?: string; key: KeyObject }
    | undefined;
  /** Signing keys derived (the cache's misses): one per day, region, service and credentials. */
  keysDerived = 0;

  constructor(client: S3Client, options: PartUrlSignerOptions = {}) {
    this.client = client;
    this.now = options.now ?? (() => new Date());
    this.onMismatch = options.onMismatch;
  }

  /** One presigned UploadPart URL per part, in the order given, each binding its part's size. */
  presignUploadParts(
    bucket: string,
    key: string,
    uploadId: string,
    parts: readonly PartToSign[],
    expiresInSeconds: number,
  ): Promise<string[]> {
    return this.sign(bucket, key, uploadId, parts, expiresInSeconds);
  }

  /**
   * UploadPart URLs that do not bind the length (X-Amz-SignedHeaders=host): S3 takes any body up to
   * its 5 GiB part limit. Only for clients that choose their part sizes and do not say them (Uppy
   * through the Companion routes); every other part URL binds its size (presignUploadParts). A part's
   * checksum, when given, is bound as with a sized URL.
   */
  presignUnsizedParts(
    bucket: string,
    key: string,
    uploadId: string,
    parts: readonly Omit<PartToSign, 'size'>[],
    expiresInSeconds: number,
  ): Promise<string[]> {
    return this.sign(
      bucket,
      key,
      uploadId,
      parts.map((part) => ({ ...part, size: undefined })),
      expiresInSeconds,
    );
  }

  private async sign(
    bucket: string,
    key: string,
    uploadId: string,
    parts: readonly AnyPart[],
    expiresInSeconds: number,
  ): Promise<string[]> {
    if (parts.length === 0) return [];
    checkExpiry(expiresInSeconds);
    const target = await this.target(bucket);
    const date = this.now();
    if (target === 'sdk' || target === 'sdk-this-time') {
      return Promise.all(
        parts.map((part) => this.sdkUrl(bucket, key, uploadId, part, expiresInSeconds, date)),
      );
    }
    const credentials = await this.credentials();
    return this.build(target, credentials, key, uploadId, parts, expiresInSeconds, date);
  }

  private async credentials(): Promise<AwsCredentialIdentity> {
    const credentials = await this.client.config.credentials();
    if (typeof credentials?.accessKeyId !== 'string' || typeof credentials.secretAccessKey !== 'string') {
      throw new Error('the S3 client resolved no usable credentials');
    }
    return credentials;
  }

  private key(credentials: AwsCredentialIdentity, shortDate: string, region: string, service: string) {
    const scope = `${shortDate}/${region}/${service}`;
    const cached = this.cachedKey;
    if (
      cached?.scope === scope &&
      cached.accessKeyId === credentials.accessKeyId &&
      cached.secretAccessKey === credentials.secretAccessKey &&
      cached.sessionToken === credentials.sessionToken
    ) {
      return cached.key;
    }
    // A KeyObject: createHmac with a raw key costs about 15 µs more per URL than with one.
    const key = createSecretKey(signingKey(credentials.secretAccessKey, shortDate, region, service));
    this.keysDerived++;
    this.cachedKey = {
      scope,
      accessKeyId: credentials.accessKeyId,
      secretAccessKey: credentials.secretAccessKey,
      ...(credentials.sessionToken === undefined ? {} : { sessionToken: credentials.sessionToken }),
      key,
    };
    return key;
  }

  /** The URLs for `parts`, built here: one SHA-256 and one HMAC per URL. */
  private build(
    target: BucketTarget,
    credentials: AwsCredentialIdentity,
    objectKey: string,
    uploadId: string,
    parts: readonly AnyPart[],
    expiresInSeconds: number,
    date: Date,
  ): string[] {
    // All sized (content-length;host signed) or all unsized (host alone); all with a checksum of one
    // algorithm, or none.
    const sized = parts[0]!.size !== undefined;
    const algorithm = parts[0]!.checksum?.algorithm;
    if (parts.some((part) => (part.size !== undefined) !== sized))
      throw new Error('parts of one batch must all be sized or all unsized');
    if (parts.some((part) => part.checksum?.algorithm !== algorithm))
      throw new Error('parts of one batch must all carry a checksum of one algorithm, or none');
    const checksumName = algorithm ? checksumHeader(algorithm) : undefined;
    const signedHeaders = `${sized ? SIGNED_HEADERS : 'host'}${checksumName ? `;${checksumName}` : ''}`;
    const { longDate, shortDate } = sigv4Dates(date);
    const scope = `${shortDate}/${target.region}/${target.service}/aws4_request`;
    const kSigning = this.key(credentials, shortDate, target.region, target.service);
    const fixed: [string, string][] = [
      ['X-Amz-Algorithm', ALGORITHM],
      ['X-Amz-Content-Sha256', UNSIGNED_PAYLOAD],
      ['X-Amz-Credential', `${credentials.accessKeyId}/${scope}`],
      ['X-Amz-Date', longDate],
      ['X-Amz-Expires', String(expiresInSeconds)],
      ['X-Amz-SignedHeaders', signedHeaders],
      ['uploadId', uploadId],
      ['x-id', 'UploadPart'],
    ];
    if (credentials.sessionToken) fixed.push(['X-Amz-Security-Token', credentials.sessionToken]);
    // Sorted by escaped name (canonical query) and by name (the SDK's URL): the same for these names.
    const entries = [
      ...fixed.map(([name, value]) => ({
        name: escapeUri(name),
        text: `${escapeUri(name)}=${escapeUri(value)}`,
      })),
      ...target.extraQuery,
      { name: 'partNumber', text: `partNumber=${PART}` },
    ].sort(byName);
    const canonicalQuery = Template.of(entries.map((entry) => entry.text).join('&'));
    const urlQuery = Template.of(
      [...entries, { name: 'X-Amz-Signature', text: `X-Amz-Signature=${SIGNATURE}` }]
        .sort(byName)
        .map((entry) => entry.text)
        .join('&'),
    );
    const path = keyPath(objectKey);
    const head = `PUT\n${target.pathPrefix}${path}\n`;
    const hostLine = `host:${target.host}\n`;
    const tail = `\n${signedHeaders}\n${UNSIGNED_PAYLOAD}`;
    const stringHead = `${ALGORITHM}\n${longDate}\n${scope}\n`;
    const urlHead = `${target.urlPrefix}${path}?`;
    return parts.map(({ partNumber, size, checksum }) => {
      const number = String(partNumber);
      const length = sized ? `content-length:${size}\n` : '';
      const checksumLine = checksum ? `${checksumName}:${checksum.value}\n` : '';
      const canonicalRequest = `${head}${canonicalQuery.fill(number, '')}\n${length}${hostLine}${checksumLine}${tail}`;
      const stringToSign = stringHead + hash('sha256', canonicalRequest, 'hex');
      const signature = createHmac('sha256', kSigning).update(stringToSign).digest('hex');
      return urlHead + urlQuery.fill(number, signature);
    });
  }

  /** Learns (once per bucket) where the bucket's part URLs go, and checks that this code signs as the SDK does. */
  private target(bucket: string): Promise<Target> {
    let target = this.targets.get(bucket);
    if (!target) {
      target = this.probe(bucket);
      this.targets.set(bucket, target);
      // A failed or inconclusive probe (no credentials yet, or new ones on every read) is tried
      // again on the next call.
      target.then(
        (result) => result === 'sdk-this-time' && this.targets.delete(bucket),
        () => this.targets.delete(bucket),
      );
    }
    return target;
  }

  private async probe(bucket: string): Promise<Target> {
    const part = { partNumber: 7, size: 5 * 1024 * 1024 };
    for (let attempt = 1; attempt <= PROBE_ATTEMPTS; attempt++) {
      const date = this.now();
      const credentials = await this.credentials();
      const sdk = await this.sdkUrl(bucket, PROBE_KEY, PROBE_UPLOAD_ID, part, 900, date);
      const parsed = parseProbe(sdk);
      if (!parsed) {
        this.onMismatch?.(bucket, sdk, '(a URL this signer cannot take apart)');
        return 'sdk';
      }
      const direct = this.build(parsed, credentials, PROBE_KEY, PROBE_UPLOAD_ID, [part], 900, date)[0]!;
      if (direct === sdk) return parsed;
      // New credentials came between the two reads (the old ones were about to expire): again.
      if (!signedWith(sdk, credentials)) continue;
      this.onMismatch?.(bucket, sdk, direct);
      return 'sdk';
    }
    return 'sdk-this-time';
  }

  private sdkUrl(
    bucket: string,
    key: string,
    uploadId: string,
    { partNumber, size, checksum }: AnyPart,
    expiresIn: number,
    signingDate: Date,
  ): Promise<string> {
    return getSignedUrl(
      this.client,
      new UploadPartCommand({
        Bucket: bucket,
        Key: key,
        UploadId: uploadId,
        PartNumber: partNumber,
        ContentLength: size,
        ...(checksum ? { [`Checksum${checksum.algorithm}`]: checksum.value } : {}),
      }),
      sdkSigningOptions(expiresIn, signingDate, size !== undefined, checksum?.algorithm),
    );
  }
}

/**
 * How getSignedUrl signs the same URL: content-length signed when sized; a checksum header kept a
 * header (unhoisted) and signed.
 */
export function sdkSigningOptions(
  expiresIn: number,
  signingDate: Date,
  sized: boolean,
  algorithm?: ChecksumAlgorithm,
) {
  const checksumName = algorithm ? checksumHeader(algorithm) : undefined;
  const signable = [...(sized ? ['content-length'] : []), ...(checksumName ? [checksumName] : [])];
  return {
    expiresIn,
    signingDate,
    ...(signable.length ? { signableHeaders: new Set(signable) } : {}),
    ...(checksumName ? { unhoistableHeaders: new Set([checksumName]) } : {}),
  };
}

function checkExpiry(seconds: number): void {
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_PRESIGN_SECONDS) {
    throw new RangeError(
      `a presigned URL lives from 1 s to ${MAX_PRESIGN_SECONDS} s (a week), not ${seconds}`,
    );
  }
}

/** Whether a presigned URL carries these credentials' access key and session token. */
function signedWith(url: string, credentials: AwsCredentialIdentity): boolean {
  const query = new URL(url).searchParams;
  return (
    query.get('X-Amz-Credential')?.split('/')[0] === credentials.accessKeyId &&
    (query.get('X-Amz-Security-Token') ?? undefined) === (credentials.sessionToken || undefined)
  );
}

/** Placeholders in a query template: braces cannot occur in escaped text (they become %7B, %7D). */
const PART = '{P}';
const SIGNATURE = '{S}';

const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** A query with the part number and the signature still to fill in. */
class Template {
  private readonly pieces: string[];
  private readonly holes: string[];

  private constructor(pieces: string[], holes: string[]) {
    this.pieces = pieces;
    this.holes = holes;
  }

  static of(text: string): Template {
    const split = text.split(/\{([PS])\}/);
    return new Template(
      split.filter((_, index) => index % 2 === 0),
      split.filter((_, index) => index % 2 === 1),
    );
  }

  fill(partNumber: string, signature: string): string {
    let out = this.pieces[0]!;
    for (let i = 0; i < this.holes.length; i++) {
      out += (this.holes[i] === 'P' ? partNumber : signature) + this.pieces[i + 1]!;
    }
    return out;
  }
}

/** Query parameters of every presigned part URL; anything else in the probe came from the endpoint. */
const OWN_PARAMETERS = new Set([
  'X-Amz-Algorithm',
  'X-Amz-Content-Sha256',
  'X-Amz-Credential',
  'X-Amz-Date',
  'X-Amz-Expires',
  'X-Amz-Security-Token',
  'X-Amz-Signature',
  'X-Amz-SignedHeaders',
  'partNumber',
  'uploadId',
  'x-id',
]);

/**
 * The SDK's probe URL taken apart: what comes before the key, the host, the scope's region and
 * service; undefined when it is not a plain SigV4 UploadPart URL signing content-length and host.
 */
export function parseProbe(url: string): BucketTarget | undefined {
  if (url.includes('#')) return undefined;
  const [base, query = ''] = url.split('?', 2) as [string, string?];
  const match = /^([a-z][a-z0-9+.-]*:\/\/)([^/@]+)(\/.*)$/i.exec(base);
  if (!match || !match[3]!.endsWith(`/${PROBE_KEY}`)) return undefined;
  const [, scheme, host, path] = match as unknown as [string, string, string, string];
  const pathPrefix = path.slice(0, -PROBE_KEY.length);
  const parameters = new Map<string, string>();
  const extraQuery: { name: string; text: string }[] = [];
  for (const text of query.split('&')) {
    const name = text.split('=', 1)[0]!;
    if (OWN_PARAMETERS.has(name)) parameters.set(name, decodeURIComponent(text.slice(name.length + 1)));
    else extraQuery.push({ name, text });
  }
  const scope = parameters.get('X-Amz-Credential')?.split('/') ?? [];
  const [region, service, terminator] = scope.slice(-3);
  if (
    parameters.get('X-Amz-Algorithm') !== ALGORITHM ||
    parameters.get('X-Amz-Content-Sha256') !== UNSIGNED_PAYLOAD ||
    parameters.get('X-Amz-SignedHeaders') !== SIGNED_HEADERS ||
    parameters.get('x-id') !== 'UploadPart' ||
    terminator !== 'aws4_request' ||
    !region ||
    !service
  ) {
    return undefined;
  }
  return { urlPrefix: `${scheme}${host}${pathPrefix}`, pathPrefix, host, region, service, extraQuery };
}
