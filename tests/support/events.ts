import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { functionName, ROUTES } from '../../lib/http/routes.ts';
import { asFunction } from './as-function.ts';

export interface EventOptions {
  method?: string;
  path?: string;
  routeKey?: string;
  headers?: Record<string, string>;
  /** Objects are sent as JSON with `content-type: application/json`; strings as they are. */
  body?: unknown;
  pathParameters?: Record<string, string>;
  query?: Record<string, string>;
  sourceIp?: string;
}

/** An API Gateway HTTP API (payload v2) event, as Lambda receives it. */
export function httpEvent(options: EventOptions = {}): APIGatewayProxyEventV2 {
  const method = options.method ?? 'GET';
  // Not a route's path ('/' is the console's, GET only): a handler invoked without a path sees no conflict.
  const path = options.path ?? '/test-event';
  const headers: Record<string, string> = { ...options.headers };
  let body: string | undefined;
  if (typeof options.body === 'string') body = options.body;
  else if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers['content-type'] ??= 'application/json';
  }
  return {
    version: '2.0',
    routeKey: options.routeKey ?? `${method} ${path}`,
    rawPath: path,
    rawQueryString: new URLSearchParams(options.query).toString(),
    headers,
    queryStringParameters: options.query,
    pathParameters: options.pathParameters,
    body,
    isBase64Encoded: false,
    requestContext: {
      accountId: '123456789012',
      apiId: 'local',
      domainName: 'localhost',
      domainPrefix: 'localhost',
      http: {
        method,
        path,
        protocol: 'HTTP/1.1',
        sourceIp: options.sourceIp ?? '127.0.0.1',
        userAgent: 'jest',
      },
      requestId: `req-${randomUUID()}`,
      routeKey: options.routeKey ?? `${method} ${path}`,
      stage: '$default',
      time: new Date().toISOString(),
      timeEpoch: Date.now(),
    },
  };
}

export function lambdaContext(overrides: Partial<Context> = {}): Context {
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: 'test',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:test',
    memoryLimitInMB: '512',
    awsRequestId: randomUUID(),
    logGroupName: '/aws/lambda/test',
    logStreamName: 'test',
    getRemainingTimeInMillis: () => 30_000,
    done: () => {},
    fail: () => {},
    succeed: () => {},
    ...overrides,
  };
}

export interface ParsedResponse<T = unknown> {
  status: number;
  headers: Record<string, string | number | boolean>;
  body: T;
}

type Handler = (
  event: APIGatewayProxyEventV2,
  context: Context,
) => Promise<APIGatewayProxyStructuredResultV2>;

const projectRoot = join(import.meta.dirname, '..', '..');
let functionKeys: Promise<Map<unknown, string>> | undefined;

/**
 * The function a route's handler is deployed as, found by the handler itself, so that a handler
 * invoked here is held to its function's role like one serverless-offline runs (the IAM check,
 * tests/support/iam-audit.ts). In-process tests reach paths HTTP does not (a failed invoke, a lost
 * transaction race), and a rare path is where a role is likeliest to lack an action. Looked up only
 * while calls are being recorded (not in the benches, which borrow this file).
 */
async function functionKeyOf(handler: Handler): Promise<string | undefined> {
  if (!process.env.AWS_CALL_AUDIT_FILE) return undefined;
  functionKeys ??= Promise.all(
    Object.values(ROUTES)
      .filter((route) => route.iam.length > 0)
      .map(async (route) => {
        const module = await import(pathToFileURL(join(projectRoot, route.handler)).href);
        return [module.handler, functionName(route)] as const;
      }),
  ).then((entries) => new Map(entries));
  return (await functionKeys).get(handler);
}

/** Invokes a handler with an event, as its function when it is a route's, and parses its JSON answer. */
export async function invoke<T = any>(
  handler: Handler,
  options: EventOptions = {},
): Promise<ParsedResponse<T>> {
  const key = await functionKeyOf(handler);
  const run = () => handler(httpEvent(options), lambdaContext());
  const result = await (key ? asFunction(key, run) : run());
  return {
    status: result.statusCode ?? 200,
    headers: result.headers ?? {},
    body: result.body ? JSON.parse(result.body) : undefined,
  };
}
