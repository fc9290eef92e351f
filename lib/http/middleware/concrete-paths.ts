import type middy from '@middy/core';
import type { HttpEvent, HttpResponse } from '../types.ts';
import { concretePathConflict } from '../unmatched.ts';

/** A concrete path answered by a template's route with a method the path does not take: 405. */
export const concretePaths = (): middy.MiddlewareObj<HttpEvent, HttpResponse> => ({
  before: (request) => {
    const { rawPath, requestContext } = request.event;
    const method = requestContext?.http?.method?.toUpperCase();
    const conflict = rawPath && method ? concretePathConflict(method, rawPath) : undefined;
    if (conflict) throw conflict;
  },
});
