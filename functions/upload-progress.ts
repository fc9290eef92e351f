import { httpRoute } from '../lib/http/route.ts';
import { jobPath } from '../lib/jobs/schemas.ts';
import { recordProgressBody } from '../lib/uploads/schemas.ts';
import { recordProgress } from '../lib/uploads/uploads.ts';

/** POST /upload/{jobId}/progress {parts: [{partNumber, etag, size}]} -> 200 {job} */
export const handler = httpRoute(
  { path: jobPath, body: recordProgressBody },
  async ({ caller, path, body }) => ({
    status: 200,
    body: { job: await recordProgress(caller.username, path.jobId, body.parts) },
  }),
);
