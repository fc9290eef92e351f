import { httpRoute } from '../lib/http/route.ts';
import { listJobs } from '../lib/jobs/queries.ts';
import * as z from '../lib/schema.ts';

const STATUSES = [
  'UPLOADING',
  'COMPLETING',
  'COMPLETED',
  'ABORTED',
  'FAILED',
  'EXPIRED',
  'QUEUED',
  'RUNNING',
  'SUCCEEDED',
  'CANCELLING',
  'CANCELLED',
] as const;

const query = z.object({
  type: z.optional(z.enum(['upload', 'export'])),
  status: z.optional(z.enum(STATUSES)),
  limit: z._default(z.coerce.number().check(z.int(), z.gte(1), z.lte(100)), 20),
  cursor: z.optional(z.string().check(z.maxLength(200))),
});

/** GET /jobs?type=&status=&limit=&cursor= -> 200 {jobs, nextCursor?}, newest first. */
export const handler = httpRoute({ query }, async ({ caller, query }) => ({
  status: 200,
  body: await listJobs(caller.username, query),
}));
