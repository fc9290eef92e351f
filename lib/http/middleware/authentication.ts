import type middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { logger } from '../../log.ts';
import type { Authenticator, Caller, HttpEvent, HttpResponse } from '../types.ts';

type ContextWithCaller = Context & { caller?: Caller };

/** The caller the authentication middleware found, if it ran. */
export const callerOf = (context: Context): Caller | undefined => (context as ContextWithCaller).caller;

/** Runs before any body parsing, so an anonymous request never costs a parse. */
export const authentication = (
  authenticate: Authenticator,
): middy.MiddlewareObj<HttpEvent, HttpResponse> => ({
  before: async (request) => {
    const { headers, cookies, requestContext } = request.event;
    const caller = await authenticate(headers, { method: requestContext?.http?.method ?? 'GET', cookies });
    (request.context as ContextWithCaller).caller = caller;
    logger.appendKeys({ username: caller.username });
  },
});
