import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import type { HttpEvent, HttpResponse } from '../../lib/http/types.ts';
import { type EventOptions, httpEvent, lambdaContext } from './events.ts';

type Handler = (event: HttpEvent, context: Context) => Promise<HttpResponse>;

const ok: Handler = async () => ({ statusCode: 200, body: '' });

/**
 * One middleware alone in middy around a tiny handler, invoked once: what the handler saw and what
 * came back (or the error that escaped, since nothing maps errors unless the test adds the mapper).
 */
export async function runAlone(
  middleware: middy.MiddlewareObj<HttpEvent, HttpResponse>,
  event: EventOptions | HttpEvent = {},
  handler: Handler = ok,
) {
  let seen: { event: HttpEvent; context: Context } | undefined;
  const wrapped = middy<HttpEvent, HttpResponse>()
    .use(middleware)
    .handler(async (e: HttpEvent, c: Context) => {
      seen = { event: e, context: c };
      return handler(e, c);
    });
  const full = 'requestContext' in event ? event : httpEvent(event);
  const context = lambdaContext();
  try {
    const response = await wrapped(full, context);
    return { response, seen, context, event: full, error: undefined };
  } catch (error) {
    return {
      response: undefined,
      seen,
      context,
      event: full,
      error: error as Error & Record<string, unknown>,
    };
  }
}
