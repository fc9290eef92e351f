import { ErrorCode } from '../../common/error-codes.ts';
/**
 * Errors a route answers on purpose. Anything else that escapes a handler is a fault: it is logged
 * with its stack and answered as a bare 500 (see error-response.ts).
 */
export class HttpError extends Error {
  override name = 'HttpError';
  readonly status: number;
  readonly code: string;
  readonly details: unknown;
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    code: string,
    message: string,
    options: { details?: unknown; headers?: Record<string, string> } = {},
  ) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = options.details;
    this.headers = options.headers ?? {};
  }
}

export const badRequest = (code: string, message: string, details?: unknown) =>
  new HttpError(400, code, message, { details });

const NOT_AN_OBJECT = 'the body must be a JSON object';

/** A JSON body that parsed but is not an object (a string, number, array, boolean or null), or none. */
export const notAnObject = () =>
  badRequest('ValidationError', `invalid request: body: ${NOT_AN_OBJECT}`, {
    issues: [{ path: 'body', message: NOT_AN_OBJECT }],
  });

/**
 * A JSON body with a key that could reach an object's prototype: "__proto__" anywhere, or
 * "constructor" holding a "prototype". Refused, never merged.
 */
export const forbiddenJsonKey = (key: string) =>
  badRequest(
    'ForbiddenJsonKey',
    key === 'constructor'
      ? 'the body must not contain a "constructor" key holding a "prototype" key'
      : `the body must not contain the key ${JSON.stringify(key)}, at any depth`,
  );

export const unauthorized = (message = 'a valid token is required') =>
  new HttpError(401, 'Unauthorized', message, { headers: { 'www-authenticate': 'Bearer' } });

export const notFound = (code: string, message: string) => new HttpError(404, code, message);

export const conflict = (code: string, message: string, details?: unknown) =>
  new HttpError(409, code, message, { details });

export const tooManyRequests = (message: string, retryAfterSeconds: number) =>
  new HttpError(429, ErrorCode.TooManyRequests, message, {
    headers: { 'retry-after': String(Math.max(1, Math.ceil(retryAfterSeconds))) },
  });

/** A dependency (S3, DynamoDB, SSM, Lambda) is down, slow or throttling: worth retrying later. */
export const serviceUnavailable = (message: string, retryAfterSeconds: number) =>
  new HttpError(503, ErrorCode.ServiceUnavailable, message, {
    headers: { 'retry-after': String(Math.max(1, Math.ceil(retryAfterSeconds))) },
  });
