import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { invokeAsync } from '../lib/aws/clients.ts';
import { config } from '../lib/config.ts';
import { recoverOwnFailureOffline } from '../lib/exports/dead-workers.ts';
import type { WorkerEvent } from '../lib/exports/exports.ts';
import { workerEventSchema } from '../lib/exports/schemas.ts';
import { bookkeepingDeadline, runExport } from '../lib/exports/worker.ts';
import { logger } from '../lib/log.ts';
import { flushMetrics } from '../lib/metrics.ts';

/** Time kept back from the Lambda timeout for the last part, the hand-off and the final write. */
const SAFETY_MARGIN_MS = 90_000;

/**
 * The export worker, started asynchronously by POST /export (and by itself to continue). Not an
 * HTTP route: its input is `{username, jobId, token?}`.
 */
export const handler = middy<WorkerEvent, unknown, Error, Context>()
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(flushMetrics())
  .handler(async (event, context) => {
    const parsed = workerEventSchema.safeParse(event);
    if (!parsed.success) {
      logger.error('ignoring a malformed worker event', { issues: parsed.error.issues });
      return { result: 'skipped' };
    }
    const { exports } = config();
    const deadline =
      Date.now() +
      Math.min(exports.invocationBudgetSeconds * 1000, context.getRemainingTimeInMillis() - SAFETY_MARGIN_MS);
    try {
      const result = await runExport(parsed.data, {
        deadline,
        continueWith: (next) => invokeAsync(exports.workerFunction, next),
        remainingMs: () => context.getRemainingTimeInMillis(),
        requestId: context.awsRequestId,
      });
      return { result };
    } catch (error) {
      // In Lambda the failed invocation goes to the on-failure destination (exportWorkerFailed).
      if (process.env.IS_OFFLINE !== 'true') throw error;
      const until = bookkeepingDeadline({ remainingMs: () => context.getRemainingTimeInMillis() });
      return { result: await recoverOwnFailureOffline(context.awsRequestId, parsed.data, error, until) };
    }
  });
