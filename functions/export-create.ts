import { startExport } from '../lib/exports/exports.ts';
import { startExportBody } from '../lib/exports/schemas.ts';
import { idempotencyOf, replayHeaders } from '../lib/http/idempotency-key.ts';
import { httpRoute } from '../lib/http/route.ts';

/**
 * POST /export {filename, format?: "raw" | "gzip"} -> 202 {job} (QUEUED; the worker runs on its own).
 * With an Idempotency-Key header, a repeat gets the first request's job (Idempotent-Replayed: true).
 */
export const handler = httpRoute({ body: startExportBody }, async ({ caller, body, event }) => {
  const { job, replayed } = await startExport(
    caller.username,
    body.filename,
    body.format,
    idempotencyOf(event, body),
  );
  return { status: 202, body: { job }, headers: replayHeaders(replayed) };
});
