import * as z from '../schema.ts';
import { filenameSchema } from '../storage/keys.ts';
import { MAX_OBJECT_SIZE, MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE } from './part-plan.ts';
import { MAX_PARTS_PER_REQUEST } from './uploads.ts';

const int = (min: number, max: number) => z.number().check(z.int(), z.gte(min), z.lte(max));

export const createUploadBody = z.object({
  filename: filenameSchema,
  size: int(1, MAX_OBJECT_SIZE),
  contentType: z.optional(
    z
      .string()
      .check(z.maxLength(255), z.regex(/^[\w.+-]+\/[\w.+-]+(?:\s*;\s*[\w.+-]+=[\w.+"-]+)*$/, 'a MIME type')),
  ),
  partSize: z.optional(int(MIN_PART_SIZE, MAX_PART_SIZE)),
  overwrite: z.optional(z.boolean()),
});

/** The seed's form: one file in the field `file`; `overwrite=true` to replace an existing file. */
export const createUploadForm = z.object({
  file: z.object(
    {
      filename: filenameSchema,
      mimetype: z.optional(z.string()),
      content: z.custom<Buffer>((value) => Buffer.isBuffer(value), 'the form field "file" must be a file'),
    },
    'send the file in a form field named "file"',
  ),
  overwrite: z.optional(z.enum(['true', 'false'])),
});

const partNumber = int(1, MAX_PARTS);

export const signPartsBody = z.object({
  partNumbers: z.array(partNumber).check(z.minLength(1), z.maxLength(MAX_PARTS_PER_REQUEST)),
});

export const recordProgressBody = z.object({
  parts: z
    .array(
      z.object({
        partNumber,
        etag: z
          .string()
          .check(z.minLength(1), z.maxLength(256), z.regex(/^[\x21-\x7e]+$/, 'an ETag as S3 returned it')),
        size: int(0, MAX_PART_SIZE),
      }),
    )
    .check(z.minLength(1), z.maxLength(MAX_PARTS_PER_REQUEST)),
});
