import { httpRoute } from '../lib/http/route.ts';
import { listJobs } from '../lib/jobs/queries.ts';
import { listJobsQuery } from '../lib/jobs/schemas.ts';

/** GET /jobs?type=&status=&limit=&cursor= -> 200 {jobs, nextCursor?}, newest first. */
export const handler = httpRoute({ query: listJobsQuery }, async ({ caller, query }) => ({
  status: 200,
  body: await listJobs(caller.username, query),
}));
