import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import httpHeaderNormalizer from '@middy/http-header-normalizer';
import httpJsonBodyParser from '@middy/http-json-body-parser';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { authenticate, type Caller } from '../auth/authenticate.ts';
import { logger } from '../log.ts';
import type { z } from '../schema.ts';
import { errorResponse } from './error-response.ts';
import { parseRequest } from './validation.ts';

export type HttpEvent = APIGatewayProxyEventV2;
export type HttpResponse = APIGatewayProxyStructuredResultV2;

export interface RouteResult {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

type Schema = z.ZodMiniType | undefined;
type Parsed<S extends Schema> = S extends z.ZodMiniType ? z.output<S> : undefined;

export interface RouteSpec<B extends Schema, Q extends Schema, P extends Schema> {
  /** Every route needs a valid token unless it says `auth: 'none'`. */
  auth?: 'required' | 'none';
  /** JSON body schema; when set the body must be `application/json`. */
  body?: B;
  query?: Q;
  path?: P;
}

export interface RouteRequest<B extends Schema, Q extends Schema, P extends Schema> {
  body: Parsed<B>;
  query: Parsed<Q>;
  path: Parsed<P>;
  /** The signed-in caller; on `auth: 'none'` routes an empty username. */
  caller: Caller;
  requestId: string;
  sourceIp: string;
  event: HttpEvent;
  context: Context;
}

const anonymous: Caller = { username: '', tokenId: '' };

export const requestIdOf = (event: HttpEvent, context: Context): string =>
  event.requestContext?.requestId ?? context.awsRequestId;

export const jsonResponse = (requestId: string, result: RouteResult): HttpResponse => ({
  statusCode: result.status,
  headers: { 'content-type': 'application/json', 'x-request-id': requestId, ...result.headers },
  body: result.body === undefined ? '' : JSON.stringify(result.body),
});

/** Outermost middleware: whatever failed inside becomes the JSON error shape, never a stack trace. */
const errorMapper = (): middy.MiddlewareObj<HttpEvent, HttpResponse> => ({
  onError: (request) => {
    request.response = errorResponse(request.error, requestIdOf(request.event, request.context));
  },
});

/**
 * The middleware stack every HTTP handler uses: header normalization, request-scoped structured
 * logs, JSON body parsing, authentication, schema validation of body/query/path, and error mapping.
 */
export function httpRoute<
  B extends Schema = undefined,
  Q extends Schema = undefined,
  P extends Schema = undefined,
>(spec: RouteSpec<B, Q, P>, handle: (request: RouteRequest<B, Q, P>) => Promise<RouteResult>) {
  const stack = middy<HttpEvent, HttpResponse>()
    .use(errorMapper())
    .use(httpHeaderNormalizer())
    .use(injectLambdaContext(logger, { resetKeys: true }));
  if (spec.body) stack.use(httpJsonBodyParser());

  return stack.handler(async (event, context) => {
    const requestId = requestIdOf(event, context);
    logger.appendKeys({ requestId, route: event.routeKey });
    const input = parseRequest({
      body: [spec.body, event.body],
      query: [spec.query, event.queryStringParameters ?? {}],
      path: [spec.path, event.pathParameters ?? {}],
    });
    const caller = spec.auth === 'none' ? anonymous : await authenticate(event.headers);
    if (caller.username) logger.appendKeys({ username: caller.username });
    const request = {
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
