import { httpRoute } from '../lib/http/route.ts';
import { jobPath } from '../lib/jobs/schemas.ts';
import { completeUpload } from '../lib/uploads/uploads.ts';

/** POST /upload/{jobId}/complete -> 200 {job} once the file is in the uploads folder. */
export const handler = httpRoute({ path: jobPath }, async ({ caller, path }) => ({
  status: 200,
  body: { job: await completeUpload(caller.username, path.jobId) },
}));
