import type middy from '@middy/core';
import { logger } from '../../log.ts';
import { requestIdOf } from '../request-id.ts';
import type { HttpEvent, HttpResponse } from '../types.ts';

/**
 * Tags every log line of the request with its id, route and job, and writes one line per answered
 * request. Errors are logged where they are mapped (error-response.ts), so `after` alone suffices.
 */
export const requestLog = (): middy.MiddlewareObj<HttpEvent, HttpResponse> => ({
  before: (request) => {
    const jobId = request.event.pathParameters?.jobId;
    logger.appendKeys({
      requestId: requestIdOf(request.event, request.context),
      route: request.event.routeKey,
      ...(jobId ? { jobId } : {}),
    });
  },
  after: (request) => {
    logger.info('request handled', { status: request.response?.statusCode });
  },
});
