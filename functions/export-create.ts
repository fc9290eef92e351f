import { startExport } from '../lib/exports/exports.ts';
import { httpRoute } from '../lib/http/route.ts';
import * as z from '../lib/schema.ts';
import { filenameSchema } from '../lib/storage/keys.ts';

const body = z.object({ filename: filenameSchema, format: z._default(z.enum(['raw', 'gzip']), 'raw') });

/** POST /export {filename, format?: "raw" | "gzip"} -> 202 {job} (QUEUED; the worker runs on its own). */
export const handler = httpRoute({ body }, async ({ caller, body }) => ({
  status: 202,
  body: await startExport(caller.username, body.filename, body.format),
}));
