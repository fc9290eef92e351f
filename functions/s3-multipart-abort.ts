import { abortMultipart } from '../lib/companion/companion.ts';
import { keyQuery, uploadPath } from '../lib/companion/schemas.ts';
import { httpRoute } from '../lib/http/route.ts';

/** DELETE /s3/multipart/{uploadId}?key= (Uppy, Companion mode) -> 200 {job} (ABORTED). */
export const handler = httpRoute({ path: uploadPath, query: keyQuery }, async ({ caller, path, query }) => ({
  status: 200,
  body: await abortMultipart(caller.username, path.uploadId, query.key),
}));
