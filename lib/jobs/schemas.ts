import { JOB_STATUSES, JOB_TYPES } from '../../common/statuses.ts';
import * as z from '../schema.ts';
import { jobIdSchema } from './job-ids.ts';

export const jobPath = z.object({ jobId: jobIdSchema });

export const listJobsQuery = z.object({
  type: z.optional(z.enum(JOB_TYPES)),
  status: z.optional(z.enum(JOB_STATUSES)),
  limit: z._default(z.coerce.number().check(z.int(), z.gte(1), z.lte(100)), 20),
  cursor: z.optional(z.string().check(z.maxLength(200))),
});

export const getJobQuery = z.object({ reconcile: z.optional(z.enum(['true', 'false'])) });
