import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { recoverFailedWorker } from '../lib/exports/dead-workers.ts';
import { failedWorkerRecordSchema } from '../lib/exports/schemas.ts';
import { logger } from '../lib/log.ts';
import { flushMetrics } from '../lib/metrics.ts';

/**
 * The export worker's on-failure destination (serverless.yml): Lambda invokes it with the record of
 * a worker invocation that failed. Not an HTTP route. Locally serverless-offline has no
 * destinations; the janitor covers the same deaths there, later.
 */
export const handler = middy<unknown, unknown, Error, Context>()
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(flushMetrics())
  .handler(async (record) => {
    const parsed = failedWorkerRecordSchema.safeParse(record);
    if (!parsed.success) {
      logger.error('ignoring a malformed failure record', { issues: parsed.error.issues });
      return { result: 'ignored' };
    }
    const { username, jobId } = parsed.data.requestPayload;
    logger.appendKeys({ username, jobId });
    logger.info('an export worker invocation failed', {
      failedRequestId: parsed.data.requestContext.requestId,
      condition: parsed.data.requestContext.condition,
      error: parsed.data.responsePayload,
    });
    return { result: await recoverFailedWorker(parsed.data) };
  });
