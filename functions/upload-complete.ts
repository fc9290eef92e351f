import { httpRoute } from '../lib/http/route.ts';
import { waitBudgetMs } from '../lib/http/route-stack.ts';
import { jobPath } from '../lib/jobs/schemas.ts';
import { completeUploadBody } from '../lib/uploads/schemas.ts';
import { completeUpload } from '../lib/uploads/uploads.ts';

/** POST /upload/{jobId}/complete [{checksum}] -> 200 {job} once the file is in the uploads folder. */
export const handler = httpRoute(
  { path: jobPath, body: completeUploadBody, bodyOptional: true },
  async ({ caller, path, body, context }) => ({
    status: 200,
    body: {
      job: await completeUpload(caller.username, path.jobId, {
        ...body,
        awaitInFlightMs: waitBudgetMs(context),
      }),
    },
  }),
);
