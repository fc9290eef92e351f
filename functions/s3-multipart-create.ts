import { createMultipart } from '../lib/companion/companion.ts';
import { createMultipartBody } from '../lib/companion/schemas.ts';
import { httpRoute } from '../lib/http/route.ts';

/** POST /s3/multipart {filename, type, metadata} (Uppy, Companion mode) -> 200 {key, uploadId}. */
export const handler = httpRoute({ body: createMultipartBody }, async ({ caller, body }) => ({
  status: 200,
  body: await createMultipart(caller.username, body),
}));
