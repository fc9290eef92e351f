import { EXPORT_FORMATS } from '../../common/statuses.ts';
import { jobIdSchema } from '../jobs/job-ids.ts';
import * as z from '../schema.ts';
import { filenameSchema } from '../storage/keys.ts';

export const startExportBody = z.object({
  filename: filenameSchema,
  format: z._default(z.enum(EXPORT_FORMATS), 'raw'),
});

/** The worker's input (WorkerEvent): the job, and the token of a hand-off or restart. */
export const workerEventSchema = z.object({
  username: z.string().check(z.minLength(1), z.maxLength(64)),
  jobId: jobIdSchema,
  token: z.optional(z.string().check(z.maxLength(64))),
});

/**
 * What Lambda sends an asynchronous invocation's on-failure destination when the worker's
 * invocation failed (crashed, ran out of memory or time, or threw): the failed invocation's id and
 * the event it was given. Other fields (condition, the error) are only logged.
 */
export const failedWorkerRecordSchema = z.looseObject({
  requestContext: z.looseObject({ requestId: z.string().check(z.minLength(1), z.maxLength(100)) }),
  requestPayload: workerEventSchema,
});
