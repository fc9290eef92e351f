import { CHECKSUM_ALGORITHMS } from '../../common/checksums.ts';
import {
  MAX_OBJECT_SIZE,
  MAX_PART_SIZE,
  MAX_PARTS,
  MAX_PARTS_PER_REQUEST,
  MIN_PART_SIZE,
} from '../../common/part-plan.ts';
import * as z from '../schema.ts';
import { filenameSchema } from '../storage/keys.ts';

const int = (min: number, max: number) => z.number().check(z.int(), z.gte(min), z.lte(max));

/**
 * A media type as HTTP defines it (RFC 7231 §3.1.1.1, unchanged in RFC 9110 §8.3.1):
 *
 *   media-type = type "/" subtype *( OWS ";" OWS parameter )
 *   parameter  = token "=" ( token / quoted-string )
 *   OWS        = *( SP / HTAB )
 *
 * Whitespace only as OWS around the ";" (spaces and tabs, nothing else) and inside a quoted string;
 * visible ASCII only (no obs-text). The value becomes the object's Content-Type header in S3, where a
 * newline or another control character made the SDK refuse the header (a 500 before this rule).
 */
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const QUOTED = String.raw`"(?:[\t !#-\[\]-~]|\\[\t -~])*"`;
const OWS = String.raw`[ \t]*`;
export const MEDIA_TYPE = new RegExp(`^${TOKEN}/${TOKEN}(?:${OWS};${OWS}${TOKEN}=(?:${TOKEN}|${QUOTED}))*$`);

/** OWS around each ";" (outside quoted strings) becomes one space after it: what S3 stores and signs. */
const canonicalMediaType = (value: string) =>
  value.replace(/("(?:[^"\\]|\\.)*")|[ \t]*;[ \t]*/g, (_ows, quoted?: string) => quoted ?? '; ');

export const mediaTypeSchema = z
  .string()
  .check(
    z.maxLength(255),
    z.regex(MEDIA_TYPE, 'a media type such as "text/plain; charset=utf-8"'),
    z.overwrite(canonicalMediaType),
  );

/**
 * Empty files are files: the form stores them (POST /upload as multipart/form-data), and the client
 * and CLI send them that way. A multipart upload has no part to send for one, hence this message.
 */
export const EMPTY_FILE_MESSAGE =
  'an empty file has no parts to upload: send it with the form (multipart/form-data, field "file"), which stores it at once';

export const createUploadBody = z.object({
  filename: filenameSchema,
  size: z.number().check(z.int(), z.gte(1, EMPTY_FILE_MESSAGE), z.lte(MAX_OBJECT_SIZE)),
  contentType: z.optional(mediaTypeSchema),
  partSize: z.optional(int(MIN_PART_SIZE, MAX_PART_SIZE)),
  overwrite: z.optional(z.boolean()),
  checksumAlgorithm: z.optional(z.enum(CHECKSUM_ALGORITHMS)),
});

/**
 * A checksum in base64, as S3 writes them: 4 bytes (CRC32, CRC32C), 8 (CRC64NVME) or 32 (SHA256).
 * Whether it has the length of the upload's own algorithm is checked against the job (uploads.ts).
 */
export const checksumValue = z
  .string()
  .check(
    z.regex(/^(?:[A-Za-z0-9+/]{4}){1,10}[A-Za-z0-9+/]{2,3}=?=?$/, 'a checksum in base64'),
    z.maxLength(44),
  );

/** The seed's form: one file in the field `file`; `overwrite=true` to replace an existing file. */
export const createUploadForm = z.object({
  file: z.object(
    {
      filename: filenameSchema,
      mimetype: z.optional(mediaTypeSchema),
      content: z.custom<Buffer>((value) => Buffer.isBuffer(value), 'the form field "file" must be a file'),
    },
    'send the file in a form field named "file"',
  ),
  overwrite: z.optional(z.enum(['true', 'false'])),
});

const partNumber = int(1, MAX_PARTS);

/**
 * `{partNumbers}` for an upload without a checksum algorithm; `{parts: [{partNumber, checksum}]}` for
 * one with (each URL then binds its part's checksum).
 */
export const signPartsBody = z.union([
  z.object({
    partNumbers: z.array(partNumber).check(z.minLength(1), z.maxLength(MAX_PARTS_PER_REQUEST)),
  }),
  z.object({
    parts: z
      .array(z.object({ partNumber, checksum: z.optional(checksumValue) }))
      .check(z.minLength(1), z.maxLength(MAX_PARTS_PER_REQUEST)),
  }),
]);

/** An optional body: the whole file's CRC, for S3 to verify the object against. */
export const completeUploadBody = z.object({ checksum: z.optional(checksumValue) });

export const recordProgressBody = z.object({
  parts: z
    .array(
      z.object({
        partNumber,
        etag: z
          .string()
          .check(z.minLength(1), z.maxLength(256), z.regex(/^[\x21-\x7e]+$/, 'an ETag as S3 returned it')),
        size: int(0, MAX_PART_SIZE),
        checksum: z.optional(checksumValue),
      }),
    )
    .check(z.minLength(1), z.maxLength(MAX_PARTS_PER_REQUEST)),
});
