import { killExports } from '../lib/exports/exports.ts';
import { httpRoute } from '../lib/http/route.ts';

/** POST /export/kill -> 200 {cancelled: [{jobId, filename, status}]}, or 404 NoExportFound. */
export const handler = httpRoute({}, async ({ caller }) => ({
  status: 200,
  body: await killExports(caller.username),
}));
