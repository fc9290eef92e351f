import { httpRoute } from '../lib/http/route.ts';
import { jobPath } from '../lib/jobs/schemas.ts';
import { abortUpload } from '../lib/uploads/uploads.ts';

/** DELETE /upload/{jobId} -> 200 {job} (ABORTED; idempotent). */
export const handler = httpRoute({ path: jobPath }, async ({ caller, path }) => ({
  status: 200,
  body: { job: await abortUpload(caller.username, path.jobId) },
}));
