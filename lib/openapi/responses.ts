import { CHECKSUM_ALGORITHMS } from '../../common/checksums.ts';
import { EXPORT_FORMATS, JOB_STATUSES, JOB_TYPES } from '../../common/statuses.ts';
import type { IssuedToken } from '../auth/issued-tokens.ts';
import type { JobView } from '../jobs/job-view.ts';
import * as z from '../schema.ts';

/**
 * The shapes the service answers with, for the OpenAPI document. The functions at the bottom tie
 * them to the TypeScript types the code returns: if one drifts from the other, type checking fails.
 */

const isoDate = z.string().check(z.regex(/^\d{4}-\d{2}-\d{2}T/, 'an ISO 8601 date-time'));
const count = z.number().check(z.int(), z.gte(0));

export const errorResponse = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    requestId: z.string(),
    details: z.optional(z.unknown()),
  }),
});

export const tokenResponse = z.object({
  token: z.string(),
  tokenType: z.literal('Bearer'),
  expiresIn: count,
  sessionExpiresAt: isoDate,
});

/** The console's session (POST /auth/session and its renewal; GET /auth/session). */
export const sessionResponse = z.object({
  username: z.string(),
  expiresIn: count,
  sessionExpiresAt: isoDate,
});

export const jwksResponse = z.object({
  keys: z.array(
    z.looseObject({
      kty: z.string(),
      kid: z.string(),
      alg: z.string(),
      use: z.literal('sig'),
      crv: z.string(),
      x: z.string(),
    }),
  ),
});

export const healthResponse = z.object({ status: z.literal('ok'), stage: z.string() });

const checksumAlgorithm = z.enum(CHECKSUM_ALGORITHMS);
/** An object's checksum as S3 reports it (base64; a COMPOSITE one ends in `-<parts>`). */
const checksum = z.object({
  algorithm: checksumAlgorithm,
  type: z.enum(['FULL_OBJECT', 'COMPOSITE']),
  value: z.string(),
});

export const jobSchema = z.object({
  jobId: z.string(),
  type: z.enum(JOB_TYPES),
  status: z.enum(JOB_STATUSES),
  filename: z.string(),
  size: count,
  partSize: count,
  partCount: count,
  contentType: z.optional(z.string()),
  checksumAlgorithm: z.optional(checksumAlgorithm),
  checksum: z.optional(checksum),
  progress: z.object({ partsDone: count, partCount: count, bytesDone: count, bytesTotal: count }),
  createdAt: isoDate,
  updatedAt: isoDate,
  finishedAt: z.optional(isoDate),
  error: z.optional(z.string()),
  // Exports only.
  format: z.optional(z.enum(EXPORT_FORMATS)),
  outputSize: z.optional(count),
  downloadUrl: z.optional(z.string()),
  expiresAt: z.optional(isoDate),
});

const signedPart = z.object({
  partNumber: count,
  url: z.string(),
  expiresAt: isoDate,
  // The headers to send with the PUT, as signed: content-length, the part's exact size, and for an
  // upload with a checksum algorithm the part's checksum.
  headers: z.object({
    'content-length': z.string(),
    'x-amz-checksum-crc32': z.optional(z.string()),
    'x-amz-checksum-crc32c': z.optional(z.string()),
    'x-amz-checksum-crc64nvme': z.optional(z.string()),
    'x-amz-checksum-sha256': z.optional(z.string()),
  }),
});
const fileEntry = z.object({
  name: z.string(),
  size: count,
  lastModified: isoDate,
  checksum: z.optional(checksum),
});
const jobRef = z.object({ jobId: z.string(), filename: z.string() });

export const jobResponse = z.object({ job: jobSchema });
export const reconcileResponse = z.object({
  job: jobSchema,
  uploadedParts: z.optional(z.array(count)),
  missingParts: z.optional(z.array(count)),
  parts: z.optional(z.array(z.object({ partNumber: count, size: count, checksum: z.optional(z.string()) }))),
});
export const createUploadResponse = z.object({
  job: jobSchema,
  uploadId: z.string(),
  key: z.string(),
  partSize: count,
  partCount: count,
  checksumAlgorithm: z.optional(checksumAlgorithm),
  parts: z.array(signedPart),
});
export const formUploadResponse = z.object({ job: jobSchema, file: fileEntry });
export const signedPartsResponse = z.object({ parts: z.array(signedPart) });
export const killUploadsResponse = z.object({ aborted: z.array(jobRef) });
export const killExportsResponse = z.object({
  cancelled: z.array(z.object({ jobId: z.string(), filename: z.string(), status: z.enum(JOB_STATUSES) })),
});
export const jobsPageResponse = z.object({ jobs: z.array(jobSchema), nextCursor: z.optional(z.string()) });
export const filesResponse = z.object({ files: z.array(fileEntry) });

// Compile-time ties between the schemas above and what the code returns.
export const sameAsJobView = (view: JobView): z.output<typeof jobSchema> => view;
export const sameAsIssuedToken = (token: IssuedToken): z.output<typeof tokenResponse> => token;
