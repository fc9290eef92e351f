import { listParts } from '../lib/companion/companion.ts';
import { keyQuery, uploadPath } from '../lib/companion/schemas.ts';
import { httpRoute } from '../lib/http/route.ts';

/** GET /s3/multipart/{uploadId}?key= (Uppy, Companion mode) -> 200 [{PartNumber, ETag, Size}]. */
export const handler = httpRoute({ path: uploadPath, query: keyQuery }, async ({ caller, path, query }) => ({
  status: 200,
  body: await listParts(caller.username, path.uploadId, query.key),
}));
