import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import httpHeaderNormalizer from '@middy/http-header-normalizer';
import type { Context } from 'aws-lambda';
import { logger } from '../log.ts';
import { flushMetrics } from '../metrics.ts';
import type * as z from '../schema.ts';
import { HttpError } from './errors.ts';
import { authentication, callerOf } from './middleware/authentication.ts';
import { concretePaths } from './middleware/concrete-paths.ts';
import { errorMapper } from './middleware/error-mapper.ts';
import { formBody } from './middleware/form-body.ts';
import { formSizeLimit } from './middleware/form-size-limit.ts';
import { jsonBody } from './middleware/json-body.ts';
import { isMultipart } from './middleware/multipart.ts';
import { requestLog } from './middleware/request-log.ts';
import { requestIdOf } from './request-id.ts';
import type { Authenticator, Caller, HttpEvent, HttpResponse, RouteResult } from './types.ts';
import { parseRequest } from './validation.ts';

export type { FormFile } from './middleware/form-body.ts';
export { requestIdOf } from './request-id.ts';
export type { Authenticator, HttpEvent, HttpResponse, RouteResult } from './types.ts';

export type Schema = z.ZodMiniType | undefined;
type Parsed<S extends Schema> = S extends z.ZodMiniType ? z.output<S> : undefined;

export interface RouteSpec<B extends Schema, Q extends Schema, P extends Schema> {
  /** Every route needs a valid token unless it says `auth: 'none'`. */
  auth?: 'required' | 'none';
  /** JSON body schema; when set the body must be `application/json`. */
  body?: B;
  /** The JSON body may be left out (no body, or an empty one): it is then validated as `{}`. */
  bodyOptional?: boolean;
  /**
   * Also accept `multipart/form-data` bodies up to `maxBytes` (parsed into `form`; `body` is then
   * undefined and the handler validates the form). Larger bodies get 413 with `tooLargeMessage`.
   */
  form?: { maxBytes: number; tooLargeMessage: string };
  query?: Q;
  path?: P;
}

export interface RouteRequest<B extends Schema, Q extends Schema, P extends Schema> {
  body: Parsed<B>;
  query: Parsed<Q>;
  path: Parsed<P>;
  /** The parsed form, on routes that accept one and when the request sent one. */
  form: Record<string, unknown> | undefined;
  /** The signed-in caller; on `auth: 'none'` routes an empty username. */
  caller: Caller;
  requestId: string;
  sourceIp: string;
  event: HttpEvent;
  context: Context;
}

const anonymous: Caller = { username: '', tokenId: '' };

/** What a route keeps of its Lambda time to finish the work it waited for and answer. */
const ANSWER_MARGIN_MS = 5000;

/**
 * How long a route may wait on work in flight elsewhere (another request's completion) before it
 * answers "ask again": what is left of its Lambda time, less the time to answer.
 */
export function waitBudgetMs(context: Context): number {
  const remaining =
    typeof context.getRemainingTimeInMillis === 'function' ? context.getRemainingTimeInMillis() : 0;
  return Math.max(0, remaining - ANSWER_MARGIN_MS);
}

export const jsonResponse = (requestId: string, result: RouteResult): HttpResponse => ({
  statusCode: result.status,
  headers: { 'content-type': 'application/json', 'x-request-id': requestId, ...result.headers },
  body: result.body === undefined ? '' : JSON.stringify(result.body),
  ...(result.cookies ? { cookies: result.cookies } : {}),
});

/**
 * The middleware stack every HTTP handler uses: header normalization, request-scoped structured
 * logs, JSON body parsing, authentication, schema validation of body/query/path, and error mapping.
 * The authenticator comes from the caller (route.ts), so that a route that needs none (public-route.ts)
 * does not bundle the token code at all.
 */
export function routeStack<B extends Schema, Q extends Schema, P extends Schema>(
  spec: RouteSpec<B, Q, P>,
  handle: (request: RouteRequest<B, Q, P>) => Promise<RouteResult>,
  authenticate: Authenticator | undefined,
) {
  // Powertools' context injection goes first so that its cleanup (which drops the request's log keys)
  // runs last, after the error mapping and the request line have been logged with them.
  const stack = middy<HttpEvent, HttpResponse>()
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .use(requestLog())
    .use(errorMapper())
    .use(flushMetrics())
    .use(httpHeaderNormalizer())
    .use(concretePaths());
  if (spec.auth !== 'none') {
    if (!authenticate) throw new Error('a route that needs a token needs an authenticator');
    stack.use(authentication(authenticate));
  }
  if (spec.form) {
    const { maxBytes, tooLargeMessage } = spec.form;
    stack.use(formSizeLimit(maxBytes, tooLargeMessage));
    // Either parser steps aside for the other's content type; the handler below answers 415 for any other.
    stack.use(jsonBody({ disableContentTypeError: true }));
    stack.use(formBody());
  } else if (spec.body) {
    stack.use(jsonBody({}, spec.bodyOptional));
  }

  return stack.handler(async (event, context) => {
    const requestId = requestIdOf(event, context);
    const caller = callerOf(context) ?? anonymous;
    const form =
      spec.form && isMultipart(event) ? (event.body as unknown as Record<string, unknown>) : undefined;
    if (spec.form && !form && typeof event.body === 'string') {
      throw new HttpError(
        415,
        'UnsupportedMediaType',
        'send the body as application/json or multipart/form-data',
      );
    }
    const input = parseRequest({
      body: [form ? undefined : spec.body, event.body],
      query: [spec.query, event.queryStringParameters ?? {}],
      path: [spec.path, event.pathParameters ?? {}],
    });
    const request = {
      form,
      caller,
      body: input.body as Parsed<B>,
      query: input.query as Parsed<Q>,
      path: input.path as Parsed<P>,
      requestId,
      sourceIp: event.requestContext?.http?.sourceIp ?? 'unknown',
      event,
      context,
    };
    return jsonResponse(requestId, await handle(request));
  });
}
