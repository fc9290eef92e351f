import { cancelExport } from '../lib/exports/exports.ts';
import { httpRoute } from '../lib/http/route.ts';
import { jobPath } from '../lib/jobs/schemas.ts';

/** DELETE /export/{jobId} -> 200 {job} (CANCELLING, or CANCELLED once cleaned up). */
export const handler = httpRoute({ path: jobPath }, async ({ caller, path }) => ({
  status: 200,
  body: await cancelExport(caller.username, path.jobId),
}));
