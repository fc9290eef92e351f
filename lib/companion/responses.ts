import { jobSchema } from '../openapi/responses.ts';
import * as z from '../schema.ts';

/** The answers of the Companion-compatible routes, for the OpenAPI document (lib/openapi/document.ts). */

export const createMultipartResponse = z.object({ key: z.string(), uploadId: z.string() });
export const signPartResponse = z.object({
  url: z.string(),
  /** Seconds the URL stays valid. */
  expires: z.number(),
  /** Headers the PUT must carry as signed: the part's checksum, for an upload with a checksum algorithm. */
  headers: z.optional(z.record(z.string(), z.string())),
});
export const listPartsResponse = z.array(
  z.object({ PartNumber: z.number(), ETag: z.string(), Size: z.number() }),
);
export const completeMultipartResponse = z.object({
  location: z.string(),
  key: z.string(),
  job: jobSchema,
});
export const abortMultipartResponse = z.object({ job: jobSchema });
