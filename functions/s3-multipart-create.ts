import { IDEMPOTENCY_KEY_METADATA_FIELD } from '../common/idempotency.ts';
import { createMultipart, multipartRequest } from '../lib/companion/companion.ts';
import { createMultipartBody } from '../lib/companion/schemas.ts';
import { idempotencyOf, replayHeaders } from '../lib/http/idempotency-key.ts';
import { httpRoute } from '../lib/http/route.ts';

/**
 * POST /s3/multipart {filename, type, metadata} (Uppy, Companion mode) -> 200 {key, uploadId}. With an
 * Idempotency-Key header or `metadata.idempotencyKey`, a repeat gets the first create's upload while it
 * is in flight (Idempotent-Replayed: true).
 */
export const handler = httpRoute({ body: createMultipartBody }, async ({ caller, body, event }) => {
  const request = multipartRequest(body);
  const idempotency = idempotencyOf(event, request, {
    path: `body.metadata.${IDEMPOTENCY_KEY_METADATA_FIELD}`,
    value: body.metadata?.[IDEMPOTENCY_KEY_METADATA_FIELD],
  });
  const { created, replayed } = await createMultipart(caller.username, request, idempotency);
  return { status: 200, body: created, headers: replayHeaders(replayed) };
});
