import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { runJanitor } from '../lib/janitor/janitor.ts';
import { logger } from '../lib/log.ts';
import { flushMetrics } from '../lib/metrics.ts';

/** Scheduled (every 15 minutes by default): cleans up after clients and workers that went away. */
export const handler = middy()
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(flushMetrics())
  .handler(async () => runJanitor());
