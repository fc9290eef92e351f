import { CHECKSUM_ALGORITHMS } from '../../common/checksums.ts';
import { IDEMPOTENCY_KEY_HEADER, IDEMPOTENCY_KEY_METADATA_FIELD } from '../../common/idempotency.ts';
import { MAX_PARTS } from '../../common/part-plan.ts';
import * as z from '../schema.ts';
import { pickedFilenameSchema } from '../storage/keys.ts';
import { checksumValue, mediaTypeSchema } from '../uploads/schemas.ts';

/**
 * The requests and answers of the Companion-compatible routes (lib/companion/companion.ts), in the
 * shapes `@uppy/aws-s3` 6.x sends and reads in its `companionEndpoint` mode.
 */

/** Uppy sends file.meta (name, type, and whatever the app set) as strings, numbers or null. */
const metadata = z
  .record(z.string().check(z.maxLength(128)), z.unknown())
  .check(
    z.describe(
      `Uppy's file meta. The service reads four fields: \`size\` (the file's size in bytes, when the app knows it: counted toward the bytes in flight from the start, and S3 must hold exactly that at completion), \`overwrite\` (true to replace an existing file), \`checksumAlgorithm\` (${CHECKSUM_ALGORITHMS.join(', ')}: S3 then checks every part against the checksum its URL was signed with, given as \`checksum\` when asking for it, and a CRC of the whole file may be sent at completion) and \`${IDEMPOTENCY_KEY_METADATA_FIELD}\` (the ${IDEMPOTENCY_KEY_HEADER} header's key, for Uppy, whose requests carry no headers of the app's: while the upload it opened is in flight, a repeat gets that upload; once it has ended, a repeat opens a new one)`,
    ),
  );

export const createMultipartBody = z.object({
  // The name of the file picked in the browser: a decomposed one (macOS) is composed, not refused.
  filename: pickedFilenameSchema,
  type: z.optional(mediaTypeSchema),
  metadata: z.optional(metadata),
});

/** Uppy puts the key it was given back in the query string (URLSearchParams). */
const key = z.string().check(z.minLength(1), z.maxLength(1024));
export const keyQuery = z.object({ key });

/**
 * A part URL's query: the key, and for an upload created with a `checksumAlgorithm` the part's
 * checksum (base64), which the URL then binds (Uppy's own AwsS3 sends none; the console does).
 */
export const signPartQuery = z.object({ key, checksum: z.optional(checksumValue) });

/**
 * Any string: an upload id that is not one of the caller's answers 404 like an unknown one, not 400.
 * (This service's upload ids are its job ids, 26-character ULIDs.)
 */
const uploadId = z.string().check(z.minLength(1), z.maxLength(1024));

export const uploadPath = z.object({ uploadId });
/** A part number as Uppy writes it in the path; 1 to 10,000 (400 otherwise). */
export const partPath = z.object({
  uploadId,
  partNumber: z.coerce.number().check(z.int(), z.gte(1), z.lte(MAX_PARTS)),
});

const etag = z.string().check(z.minLength(1), z.maxLength(256));

export const completeMultipartBody = z.object({
  parts: z
    .array(z.object({ PartNumber: z.number().check(z.int(), z.gte(1), z.lte(MAX_PARTS)), ETag: etag }))
    .check(z.maxLength(MAX_PARTS)),
  /** The whole file's CRC (an upload with a CRC checksumAlgorithm), for S3 to check the object against. */
  checksum: z.optional(checksumValue),
});
