import { httpRoute } from '../lib/http/route.ts';
import { getJob } from '../lib/jobs/queries.ts';
import { getJobQuery, jobPath } from '../lib/jobs/schemas.ts';
import { reconcileUpload } from '../lib/uploads/uploads.ts';

/**
 * GET /jobs/{jobId} -> 200 {job}. With ?reconcile=true an upload is checked against S3's part list:
 * the answer adds `uploadedParts` and `missingParts`, so a client that lost its state resumes.
 */
export const handler = httpRoute({ path: jobPath, query: getJobQuery }, async ({ caller, path, query }) => {
  if (query.reconcile === 'true') {
    const job = await getJob(caller.username, path.jobId);
    if (job.type === 'upload')
      return { status: 200, body: await reconcileUpload(caller.username, path.jobId) };
    return { status: 200, body: { job } };
  }
  return { status: 200, body: { job: await getJob(caller.username, path.jobId) } };
});
