import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import httpHeaderNormalizer from '@middy/http-header-normalizer';
import httpJsonBodyParser from '@middy/http-json-body-parser';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import type { Caller } from '../auth/authenticate.ts';
import { logger } from '../log.ts';
import { flushMetrics } from '../metrics.ts';
import type * as z from '../schema.ts';
import { errorResponse } from './error-response.ts';
import { HttpError, notAnObject } from './errors.ts';
import { concretePathConflict } from './unmatched.ts';
import { parseRequest } from './validation.ts';

export type HttpEvent = APIGatewayProxyEventV2;
export type HttpResponse = APIGatewayProxyStructuredResultV2;

export interface RouteResult {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** Set-Cookie values (API Gateway's payload 2.0 sends each as its own header). */
  cookies?: string[];
}

export type Schema = z.ZodMiniType | undefined;
type Parsed<S extends Schema> = S extends z.ZodMiniType ? z.output<S> : undefined;

export interface RouteSpec<B extends Schema, Q extends Schema, P extends Schema> {
  /** Every route needs a valid token unless it says `auth: 'none'`. */
  auth?: 'required' | 'none';
  /** JSON body schema; when set the body must be `application/json`. */
  body?: B;
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

export const requestIdOf = (event: HttpEvent, context: Context): string =>
  event.requestContext?.requestId ?? context.awsRequestId;

export const jsonResponse = (requestId: string, result: RouteResult): HttpResponse => ({
  statusCode: result.status,
  headers: { 'content-type': 'application/json', 'x-request-id': requestId, ...result.headers },
  body: result.body === undefined ? '' : JSON.stringify(result.body),
  ...(result.cookies ? { cookies: result.cookies } : {}),
});

type ContextWithCaller = Context & { caller?: Caller };

/**
 * Who sent a request, from its token headers or else its session cookie (the method decides whether
 * the cookie needs a CSRF token); throws 401 when no valid token says so.
 */
export type Authenticator = (
  headers: HttpEvent['headers'],
  session: { method: string; cookies: string[] | undefined },
) => Promise<Caller>;

/** Runs before any body parsing, so an anonymous request never costs a parse. */
const authentication = (authenticate: Authenticator): middy.MiddlewareObj<HttpEvent, HttpResponse> => ({
  before: async (request) => {
    const { headers, cookies, requestContext } = request.event;
    const caller = await authenticate(headers, { method: requestContext?.http?.method ?? 'GET', cookies });
    (request.context as ContextWithCaller).caller = caller;
    logger.appendKeys({ username: caller.username });
  },
});

const isMultipart = (event: HttpEvent) =>
  /^multipart\/form-data/i.test(event.headers?.['content-type'] ?? '');

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * middy's JSON body parser, and then: every JSON body this service takes is an object. A string,
 * number, array, boolean or null that parsed well is still refused, with a message that says so (a
 * JSON string once answered 415 on POST /upload, which takes forms too, as if it were not JSON).
 * Parsed or not is told by identity: the parser replaces the body only when it parsed it, and no
 * JSON text parses to the very same string. No body at all is not an object either.
 */
const jsonBodyParser = (
  options: Parameters<typeof httpJsonBodyParser>[0] = {},
): middy.MiddlewareObj<HttpEvent, HttpResponse> => {
  const parser = httpJsonBodyParser(options) as middy.MiddlewareObj<HttpEvent, HttpResponse>;
  return {
    before: async (request) => {
      const raw = request.event.body;
      await parser.before?.(request);
      const body: unknown = request.event.body;
      if ((raw == null || body !== raw) && !isPlainObject(body)) throw notAnObject();
    },
  };
};

/** Refuses oversized forms before they are decoded (API Gateway would cut them off at 10 MB anyway). */
const formSizeLimit = (maxBytes: number, message: string): middy.MiddlewareObj<HttpEvent, HttpResponse> => ({
  before: (request) => {
    const { body, isBase64Encoded } = request.event;
    if (!body || !isMultipart(request.event)) return;
    const bytes = isBase64Encoded ? Math.floor((body.length * 3) / 4) : Buffer.byteLength(body);
    if (bytes > maxBytes) throw new HttpError(413, 'PayloadTooLarge', message);
  },
});

export interface FormFile {
  filename: string;
  mimetype: string | undefined;
  content: Buffer;
}

/**
 * Parses `multipart/form-data` with the platform's own parser (undici's, behind Response.formData()
 * in Node): maintained, and adds nothing to the bundle, where busboy would add about 26 KB to a
 * function that must stay under 50 KB zipped. Files become {filename, mimetype, content}.
 */
const formBodyParser = (): middy.MiddlewareObj<HttpEvent, HttpResponse> => ({
  before: async (request) => {
    const event = request.event;
    if (!isMultipart(event) || event.body === undefined) return;
    const bytes = Buffer.from(event.body, event.isBase64Encoded ? 'base64' : 'utf8');
    let form: FormData;
    try {
      form = await new Response(bytes, {
        headers: { 'content-type': event.headers['content-type']! },
      }).formData();
    } catch {
      throw new HttpError(400, 'MalformedForm', 'the multipart/form-data body could not be parsed');
    }
    // No prototype: a field named "__proto__" is just a field, never this object's prototype.
    const fields: Record<string, string | FormFile> = Object.create(null);
    for (const [name, value] of form) {
      fields[name] =
        typeof value === 'string'
          ? value
          : {
              filename: value.name,
              mimetype: value.type || undefined,
              content: Buffer.from(await value.arrayBuffer()),
            };
    }
    (event as { body: unknown }).body = fields;
  },
});

/** A concrete path answered by a template's route with a method the path does not take: 405. */
const concretePaths = (): middy.MiddlewareObj<HttpEvent, HttpResponse> => ({
  before: (request) => {
    const { rawPath, requestContext } = request.event;
    const method = requestContext?.http?.method?.toUpperCase();
    const conflict = rawPath && method ? concretePathConflict(method, rawPath) : undefined;
    if (conflict) throw conflict;
  },
});

/** Outermost middleware: whatever failed inside becomes the JSON error shape, never a stack trace. */
const errorMapper = (): middy.MiddlewareObj<HttpEvent, HttpResponse> => ({
  before: (request) => {
    const jobId = request.event.pathParameters?.jobId;
    logger.appendKeys({
      requestId: requestIdOf(request.event, request.context),
      route: request.event.routeKey,
      ...(jobId ? { jobId } : {}),
    });
  },
  // One line per answered request (errors are logged where they are mapped, in errorResponse).
  after: (request) => {
    logger.info('request handled', { status: request.response?.statusCode });
  },
  onError: (request) => {
    request.response = errorResponse(request.error, requestIdOf(request.event, request.context));
  },
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
    stack.use(jsonBodyParser({ disableContentTypeError: true }));
    stack.use(formBodyParser());
  } else if (spec.body) {
    stack.use(jsonBodyParser());
  }

  return stack.handler(async (event, context) => {
    const requestId = requestIdOf(event, context);
    const caller = (context as ContextWithCaller).caller ?? anonymous;
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
