import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  NoSuchKey,
  NoSuchUpload,
  NotFound,
  PutObjectCommand,
  paginateListObjectsV2,
  paginateListParts,
  type S3Client,
  UploadPartCommand,
  type UploadPartCommandInput,
  type UploadPartCommandOutput,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { BuildMiddleware, HttpRequest } from '@smithy/types';
import {
  CHECKSUM_ALGORITHMS,
  type Checksum,
  type ChecksumAlgorithm,
  type ChecksumType,
  checksumHeader,
  checksumType,
} from '../../common/checksums.ts';
import { auditPresigned } from '../aws/call-audit.ts';
import { type PartToSign, PartUrlSigner } from './part-signer.ts';

/** SigV4 takes a payload hash already in the request as given (@smithy/signature-v4) and hashes nothing. */
const unsignedPayload: BuildMiddleware<UploadPartCommandInput, UploadPartCommandOutput> =
  (next) => (args) => {
    const request = args.request as Partial<HttpRequest>;
    if (request.headers) request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
    return next(args);
  };

export interface StoredObject {
  key: string;
  size: number;
  lastModified: Date;
  etag: string;
  /** The object's additional checksum, when asked for (head with `checksum: true`) and it has one. */
  checksum?: Checksum;
}

/** The SDK's field for each algorithm's value: ChecksumCRC32, ChecksumCRC32C, … */
type ChecksumField = `Checksum${ChecksumAlgorithm}`;
const checksumField = (algorithm: ChecksumAlgorithm): ChecksumField => `Checksum${algorithm}`;
const CHECKSUM_FIELDS = CHECKSUM_ALGORITHMS.map(
  (algorithm) => [algorithm, checksumField(algorithm)] as const,
);

/** The checksum an S3 answer carries (HeadObject, CompleteMultipartUpload, a part), if any. */
function checksumIn(
  answer: Partial<Record<ChecksumField, string>> & { ChecksumType?: string | undefined },
): Checksum | undefined {
  for (const [algorithm, field] of CHECKSUM_FIELDS) {
    const value = answer[field];
    if (!value) continue;
    // A composite value ends in "-<parts>"; S3 names the type on objects, not always on parts.
    const type = (answer.ChecksumType as ChecksumType | undefined) ?? checksumType(algorithm);
    return { algorithm, type, value };
  }
  return undefined;
}

export interface StoredPart {
  partNumber: number;
  etag: string;
  size: number;
  /** When S3 received the part (ListParts only): the activity of clients that report no progress. */
  lastModified?: Date;
  /** The part's checksum (base64) as S3 checked it, for an upload created with an algorithm. */
  checksum?: string;
}

/** A part to sign a URL for that binds the part's checksum as well as its size. */
export interface PartToSignWithChecksum extends PartToSign {
  checksum?: { algorithm: ChecksumAlgorithm; value: string } | undefined;
}

/** A part to sign a URL for: its number and the exact bytes the URL will accept. */
export type { PartToSign };

/** The headers a client sends with a part PUT to a URL from presignUploadParts, as they were signed. */
export const partHeaders = (size: number, checksum?: PartToSignWithChecksum['checksum']) => ({
  'content-length': String(size),
  ...(checksum ? { [checksumHeader(checksum.algorithm)]: checksum.value } : {}),
});

/**
 * `Content-Disposition: attachment` for a download named `name` (RFC 6266): the exact name in
 * `filename*=UTF-8''…` (RFC 8187 percent-encoding, which every current browser reads first), and for
 * older clients an ASCII fallback in `filename="…"` where anything that is not printable ASCII, the
 * quote and backslash (which would end or escape the quoted string) and a `%` before two hex digits
 * (which some clients decode) become "_". The header stays one line of visible ASCII whatever the name.
 */
export function contentDisposition(name: string): string {
  const fallback = name.replace(/[^\x20-\x7e]|["\\]|%(?=[0-9A-Fa-f]{2})/gu, '_');
  const exact = encodeURIComponent(name).replace(
    /['()*]/g,
    (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `attachment; filename="${fallback}"; filename*=UTF-8''${exact}`;
}

export interface OpenUpload {
  key: string;
  uploadId: string;
  initiated: Date;
}

/**
 * The bucket, seen as the service needs it: whole objects, folders (key prefixes) and multipart
 * uploads. Every S3 call of the domain goes through here; the domain never builds an SDK command.
 */
export class FileStore {
  private readonly s3: S3Client;
  private readonly presigner: S3Client;
  private readonly partSigner: PartUrlSigner;
  private readonly completer: S3Client;
  readonly bucket: string;

  /**
   * `partSigner` signs part URLs (by default one over `presigner`); `completer` sends
   * CompleteMultipartUpload (by default `s3`), which may need a longer timeout than other calls.
   */
  constructor(
    s3: S3Client,
    presigner: S3Client,
    bucket: string,
    options: { partSigner?: PartUrlSigner; completer?: S3Client } = {},
  ) {
    this.s3 = s3;
    this.presigner = presigner;
    this.partSigner = options.partSigner ?? new PartUrlSigner(presigner);
    this.completer = options.completer ?? s3;
    this.bucket = bucket;
  }

  /** With a checksum, S3 refuses the body unless it matches (400 BadDigest), and stores it with the object. */
  async putObject(
    key: string,
    body: Uint8Array | string,
    contentType?: string,
    checksum?: { algorithm: ChecksumAlgorithm; value: string },
  ): Promise<void> {
    await this.s3.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ContentType: contentType,
        ...(checksum
          ? { ChecksumAlgorithm: checksum.algorithm, [checksumField(checksum.algorithm)]: checksum.value }
          : {}),
      }),
    );
  }

  /** Whole object in memory: for small objects only (tests, small form uploads). */
  async getObjectBytes(key: string): Promise<Uint8Array | undefined> {
    try {
      const response = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return await response.Body!.transformToByteArray();
    } catch (error) {
      if (error instanceof NoSuchKey) return undefined;
      throw error;
    }
  }

  /** The object's size, date and ETag; its checksum too with `checksum: true` (ChecksumMode ENABLED). */
  async head(key: string, options: { checksum?: boolean } = {}): Promise<StoredObject | undefined> {
    try {
      const head = await this.s3.send(
        new HeadObjectCommand({
          Bucket: this.bucket,
          Key: key,
          ...(options.checksum ? { ChecksumMode: 'ENABLED' as const } : {}),
        }),
      );
      const checksum = options.checksum ? checksumIn(head) : undefined;
      return {
        key,
        size: head.ContentLength ?? 0,
        lastModified: head.LastModified ?? new Date(0),
        etag: head.ETag ?? '',
        ...(checksum ? { checksum } : {}),
      };
    } catch (error) {
      if (error instanceof NotFound || error instanceof NoSuchKey) return undefined;
      throw error;
    }
  }

  async deleteObject(key: string): Promise<void> {
    await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  /** Every object under `prefix`, in key order, across all pages. */
  async list(prefix: string): Promise<StoredObject[]> {
    const objects: StoredObject[] = [];
    for await (const page of this.listPages(prefix)) objects.push(...page);
    return objects;
  }

  /** The objects under `prefix` a page (up to 1,000) at a time: a whole area is never held at once. */
  async *listPages(prefix: string): AsyncGenerator<StoredObject[]> {
    for await (const page of paginateListObjectsV2(
      { client: this.s3 },
      { Bucket: this.bucket, Prefix: prefix },
    )) {
      yield (page.Contents ?? []).map((item) => ({
        key: item.Key!,
        size: item.Size ?? 0,
        lastModified: item.LastModified ?? new Date(0),
        etag: item.ETag ?? '',
      }));
    }
  }

  /**
   * Bytes `start` to `end` (inclusive) of an object as they arrive, failing if its ETag is no longer
   * `ifMatch`. Read as a stream rather than collected, so a caller can use the first bytes while the
   * rest are on the way, and no second copy of the range is made to join its chunks.
   */
  async streamRange(
    key: string,
    start: number,
    end: number,
    ifMatch?: string,
  ): Promise<AsyncIterable<Uint8Array>> {
    const response = await this.s3.send(
      new GetObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Range: `bytes=${start}-${end}`,
        IfMatch: ifMatch,
      }),
    );
    // In Node the body is an http.IncomingMessage: a Readable, so an async iterable of Buffers.
    return response.Body as unknown as AsyncIterable<Uint8Array>;
  }

  /** Deletes every object under `prefix`; returns how many there were. */
  async deletePrefix(prefix: string): Promise<number> {
    const objects = await this.list(prefix);
    for (let start = 0; start < objects.length; start += 1000) {
      const batch = objects.slice(start, start + 1000);
      await this.s3.send(
        new DeleteObjectsCommand({
          Bucket: this.bucket,
          Delete: { Objects: batch.map((object) => ({ Key: object.key })), Quiet: true },
        }),
      );
    }
    return objects.length;
  }

  /**
   * With an algorithm, S3 requires and checks every part's checksum, and the object gets a checksum of
   * the algorithm's type (FULL_OBJECT for the CRCs, COMPOSITE for SHA256).
   */
  async createMultipartUpload(
    key: string,
    contentType?: string,
    checksumAlgorithm?: ChecksumAlgorithm,
  ): Promise<string> {
    const created = await this.s3.send(
      new CreateMultipartUploadCommand({
        Bucket: this.bucket,
        Key: key,
        ContentType: contentType,
        ...(checksumAlgorithm
          ? { ChecksumAlgorithm: checksumAlgorithm, ChecksumType: checksumType(checksumAlgorithm) }
          : {}),
      }),
    );
    return created.UploadId!;
  }

  /**
   * A URL the client PUTs one part's bytes to; S3 answers with the part's ETag. The URL signs the
   * part's exact Content-Length, so it cannot store more (or fewer) bytes than the plan says.
   */
  async presignUploadPart(
    key: string,
    uploadId: string,
    part: PartToSign,
    expiresInSeconds: number,
  ): Promise<string> {
    const [url] = await this.presignUploadParts(key, uploadId, [part], expiresInSeconds);
    return url!;
  }

  /**
   * URLs for many parts of one upload, each binding its part's exact size: `content-length` is a
   * signed header (X-Amz-SignedHeaders=content-length;host), so S3 answers 403 SignatureDoesNotMatch
   * to a PUT of any other length. Without it, each URL would take up to 5 GiB whatever the plan.
   *
   * Signed directly (lib/storage/part-signer.ts): the same URLs as the SDK's getSignedUrl, byte for
   * byte, at a few microseconds each (10,000 in about 0.05 s instead of 4 s one by one).
   */
  presignUploadParts(
    key: string,
    uploadId: string,
    parts: readonly PartToSignWithChecksum[],
    expiresInSeconds: number,
  ): Promise<string[]> {
    auditPresigned('UploadPart', this.bucket, key);
    return this.partSigner.presignUploadParts(this.bucket, key, uploadId, parts, expiresInSeconds);
  }

  /**
   * A part URL that does not bind the length (S3 takes up to 5 GiB): only for clients that choose
   * their part sizes and do not say them (the Companion routes). It binds the part's checksum when
   * given, as presignUploadParts does. Signed directly too.
   */
  async presignUnsizedUploadPart(
    key: string,
    uploadId: string,
    partNumber: number,
    expiresInSeconds: number,
    checksum?: PartToSignWithChecksum['checksum'],
  ): Promise<string> {
    auditPresigned('UploadPart', this.bucket, key);
    const [url] = await this.partSigner.presignUnsizedParts(
      this.bucket,
      key,
      uploadId,
      [{ partNumber, checksum }],
      expiresInSeconds,
    );
    return url!;
  }

  presignGetObject(key: string, expiresInSeconds: number, downloadName?: string): Promise<string> {
    auditPresigned('GetObject', this.bucket, key);
    return getSignedUrl(
      this.presigner,
      new GetObjectCommand({
        Bucket: this.bucket,
        Key: key,
        ResponseContentDisposition: downloadName ? contentDisposition(downloadName) : undefined,
      }),
      { expiresIn: expiresInSeconds },
    );
  }

  /**
   * Uploads one part's bytes from here (the export worker's compressed output). With a checksum
   * (required when the upload was created with an algorithm), S3 refuses a body that does not match.
   *
   * A part sent with its checksum is signed with `UNSIGNED-PAYLOAD`, as S3 allows: otherwise SigV4
   * hashes the whole body with SHA-256 on the worker's main thread (0.33 s of CPU per 512 MiB,
   * measured in a profile of a gzip export) only to prove what TLS and the checksum S3 verifies
   * already prove. The checksum header itself is signed. Without a checksum the body stays signed.
   */
  async uploadPart(
    key: string,
    uploadId: string,
    partNumber: number,
    body: Uint8Array,
    checksum?: { algorithm: ChecksumAlgorithm; value: string },
  ): Promise<string> {
    const command = new UploadPartCommand({
      Bucket: this.bucket,
      Key: key,
      UploadId: uploadId,
      PartNumber: partNumber,
      Body: body,
      ...(checksum ? { [checksumField(checksum.algorithm)]: checksum.value } : {}),
    });
    if (checksum) command.middlewareStack.add(unsignedPayload, { step: 'build', name: 'unsignedPayload' });
    const result = await this.s3.send(command);
    return result.ETag!;
  }

  /**
   * Copies bytes `start`..`end` (inclusive) of `sourceKey` into a part, inside S3: no byte passes
   * through the caller. `ifMatch` makes it fail if the source changed since the job began.
   */
  async uploadPartCopy(
    key: string,
    uploadId: string,
    partNumber: number,
    source: { key: string; start: number; end: number; ifMatch?: string | undefined },
  ): Promise<{ etag: string; checksum?: string }> {
    const result = await this.s3.send(
      new UploadPartCopyCommand({
        Bucket: this.bucket,
        Key: key,
        UploadId: uploadId,
        PartNumber: partNumber,
        CopySource: `${this.bucket}/${encodeURIComponent(source.key).replace(/%2F/g, '/')}`,
        CopySourceRange: `bytes=${source.start}-${source.end}`,
        CopySourceIfMatch: source.ifMatch,
      }),
    );
    // S3 computes a copied part's checksum itself when the upload has an algorithm.
    const checksum = checksumIn(result.CopyPartResult!)?.value;
    return { etag: result.CopyPartResult!.ETag!, ...(checksum ? { checksum } : {}) };
  }

  /** The parts S3 holds for an upload, in part order; undefined when the upload no longer exists. */
  async listParts(key: string, uploadId: string): Promise<StoredPart[] | undefined> {
    const parts: StoredPart[] = [];
    try {
      // The paginator follows NextPartNumberMarker even on the last page, and some S3 implementations
      // repeat it there: stop on IsTruncated=false (and on a repeated marker, as a backstop).
      const pages = paginateListParts(
        { client: this.s3, stopOnSameToken: true },
        { Bucket: this.bucket, Key: key, UploadId: uploadId },
      );
      for await (const page of pages) {
        for (const part of page.Parts ?? []) {
          const checksum = checksumIn(part)?.value;
          parts.push({
            partNumber: part.PartNumber!,
            etag: part.ETag!,
            size: part.Size ?? 0,
            ...(part.LastModified ? { lastModified: part.LastModified } : {}),
            ...(checksum ? { checksum } : {}),
          });
        }
        if (!page.IsTruncated) break;
      }
    } catch (error) {
      if (error instanceof NoSuchUpload) return undefined;
      throw error;
    }
    return parts.sort((a, b) => a.partNumber - b.partNumber);
  }

  /**
   * Completes an upload from `parts` (each with its checksum when the upload has an algorithm). With
   * `checksum`, the whole file's full-object CRC, S3 verifies the object against it and refuses the
   * completion with 400 BadDigest when it differs (the upload stays open). Returns the object's ETag
   * and checksum as S3 answers them, so that recording the completion needs no HeadObject.
   */
  async completeMultipartUpload(
    key: string,
    uploadId: string,
    parts: StoredPart[],
    options: { algorithm?: ChecksumAlgorithm | undefined; checksum?: string | undefined } = {},
  ): Promise<{ etag?: string; checksum?: Checksum }> {
    const { algorithm, checksum } = options;
    const field = algorithm ? checksumField(algorithm) : undefined;
    const result = await this.completer.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.bucket,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: {
          Parts: parts.map((part) => ({
            PartNumber: part.partNumber,
            ETag: part.etag,
            ...(field && part.checksum ? { [field]: part.checksum } : {}),
          })),
        },
        ...(field && checksum ? { [field]: checksum, ChecksumType: 'FULL_OBJECT' as const } : {}),
      }),
    );
    const answered = checksumIn(result);
    return { ...(result.ETag ? { etag: result.ETag } : {}), ...(answered ? { checksum: answered } : {}) };
  }

  /** Idempotent: aborting an upload that is already gone is not an error. */
  async abortMultipartUpload(key: string, uploadId: string): Promise<void> {
    try {
      await this.s3.send(
        new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }),
      );
    } catch (error) {
      if (!(error instanceof NoSuchUpload)) throw error;
    }
  }

  /** Open multipart uploads under `prefix`, across all pages (the SDK has no paginator for this one). */
  async listOpenUploads(prefix: string): Promise<OpenUpload[]> {
    const uploads: OpenUpload[] = [];
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    do {
      const page = await this.s3.send(
        new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: prefix, KeyMarker, UploadIdMarker }),
      );
      for (const upload of page.Uploads ?? []) {
        uploads.push({
          key: upload.Key!,
          uploadId: upload.UploadId!,
          initiated: upload.Initiated ?? new Date(0),
        });
      }
      [KeyMarker, UploadIdMarker] = page.IsTruncated ? [page.NextKeyMarker, page.NextUploadIdMarker] : [];
    } while (KeyMarker || UploadIdMarker);
    return uploads;
  }
}
