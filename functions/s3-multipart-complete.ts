import { completeMultipart } from '../lib/companion/companion.ts';
import { completeMultipartBody, keyQuery, uploadPath } from '../lib/companion/schemas.ts';
import { httpRoute } from '../lib/http/route.ts';
import { waitBudgetMs } from '../lib/http/route-stack.ts';

/** POST /s3/multipart/{uploadId}/complete?key= {parts, checksum?} (Uppy, Companion mode) -> 200 {location, key, job}. */
export const handler = httpRoute(
  { path: uploadPath, query: keyQuery, body: completeMultipartBody },
  async ({ caller, path, query, body, event, context }) => {
    const host = event.headers.host;
    const scheme =
      event.headers['x-forwarded-proto'] ?? (/^(localhost|127\.)/.test(host ?? '') ? 'http' : 'https');
    const origin = host ? `${scheme}://${host}` : undefined;
    return {
      status: 200,
      body: await completeMultipart(caller.username, path.uploadId, query.key, body.parts, {
        apiOrigin: origin,
        awaitInFlightMs: waitBudgetMs(context),
        checksum: body.checksum,
      }),
    };
  },
);
