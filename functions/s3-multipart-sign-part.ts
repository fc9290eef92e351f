import { signPart } from '../lib/companion/companion.ts';
import { partPath, signPartQuery } from '../lib/companion/schemas.ts';
import { httpRoute } from '../lib/http/route.ts';

/** GET /s3/multipart/{uploadId}/{partNumber}?key=[&checksum=] (Uppy, Companion mode) -> 200 {url, expires, headers?}. */
export const handler = httpRoute(
  { path: partPath, query: signPartQuery },
  async ({ caller, path, query }) => ({
    status: 200,
    body: await signPart(caller.username, path.uploadId, path.partNumber, query.key, query.checksum),
  }),
);
