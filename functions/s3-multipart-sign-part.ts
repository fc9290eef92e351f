import { signPart } from '../lib/companion/companion.ts';
import { keyQuery, partPath } from '../lib/companion/schemas.ts';
import { httpRoute } from '../lib/http/route.ts';

/** GET /s3/multipart/{uploadId}/{partNumber}?key= (Uppy, Companion mode) -> 200 {url, expires}. */
export const handler = httpRoute({ path: partPath, query: keyQuery }, async ({ caller, path, query }) => ({
  status: 200,
  body: await signPart(caller.username, path.uploadId, path.partNumber, query.key),
}));
