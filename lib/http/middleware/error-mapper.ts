import type middy from '@middy/core';
import { errorResponse } from '../error-response.ts';
import { requestIdOf } from '../request-id.ts';
import type { HttpEvent, HttpResponse } from '../types.ts';

/** Whatever failed inside becomes the JSON error shape, never a stack trace. */
export const errorMapper = (): middy.MiddlewareObj<HttpEvent, HttpResponse> => ({
  onError: (request) => {
    request.response = errorResponse(request.error, requestIdOf(request.event, request.context));
  },
});
