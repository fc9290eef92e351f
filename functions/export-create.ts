import { startExport } from '../lib/exports/exports.ts';
import { startExportBody } from '../lib/exports/schemas.ts';
import { httpRoute } from '../lib/http/route.ts';

/** POST /export {filename, format?: "raw" | "gzip"} -> 202 {job} (QUEUED; the worker runs on its own). */
export const handler = httpRoute({ body: startExportBody }, async ({ caller, body }) => ({
  status: 202,
  body: await startExport(caller.username, body.filename, body.format),
}));
