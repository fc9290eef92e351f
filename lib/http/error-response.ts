import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { logger } from '../log.ts';
import { dependencyFailure, dependencyFailureMessage } from './dependency-errors.ts';
import { forbiddenJsonKey, HttpError, notAnObject, serviceUnavailable } from './errors.ts';

export interface ErrorBody {
  error: { code: string; message: string; requestId: string; details?: unknown };
}

/** Errors thrown by middy's own middlewares carry a status and `expose`; give them our codes. */
interface MiddyHttpError extends Error {
  statusCode: number;
  expose?: boolean;
  cause?: { package?: string; data?: unknown };
}

const isMiddyHttpError = (error: unknown): error is MiddyHttpError =>
  error instanceof Error && typeof (error as MiddyHttpError).statusCode === 'number';

function fromMiddy(error: MiddyHttpError): HttpError | undefined {
  if (error.statusCode >= 500 || error.expose === false) return undefined;
  if (error.cause?.package === '@middy/http-json-body-parser') {
    if (error.statusCode === 415)
      return new HttpError(415, 'UnsupportedMediaType', 'send the request body as application/json');
    const data = error.cause.data;
    // Its prototype guard names the key it refused; a parse error carries the body instead.
    if (/forbidden key/i.test(error.message) && typeof data === 'string') return forbiddenJsonKey(data);
    if (data === undefined || data === '') return notAnObject();
    return new HttpError(400, 'MalformedJson', 'the request body is not valid JSON');
  }
  if (error.statusCode === 413) {
    return new HttpError(413, 'PayloadTooLarge', error.message);
  }
  return new HttpError(error.statusCode, 'BadRequest', error.message);
}

/** Maps any error to the service's JSON error shape. Never leaks a stack trace or an internal message. */
export function errorResponse(error: unknown, requestId: string): APIGatewayProxyStructuredResultV2 {
  let known = error instanceof HttpError ? error : isMiddyHttpError(error) ? fromMiddy(error) : undefined;
  // A dependency that is down, slow or throttling: 503 with Retry-After, not a 500.
  const failure = known ? undefined : dependencyFailure(error);
  if (failure) {
    known = serviceUnavailable(dependencyFailureMessage(failure), failure.retryAfterSeconds);
    logger.error('dependency failed', { kind: failure.kind, error: error as Error });
  } else if (!known) {
    logger.error('unhandled error', { error: error as Error });
  } else if (known.status >= 500) {
    logger.error('request failed', { error: known });
  } else {
    logger.info('request rejected', { status: known.status, code: known.code });
  }
  const status = known?.status ?? 500;
  const body: ErrorBody = {
    error: {
      code: known?.code ?? 'InternalError',
      message: known?.message ?? 'the service failed to handle this request; try again later',
      requestId,
      ...(known?.details === undefined ? {} : { details: known.details }),
    },
  };
  return {
    statusCode: status,
    headers: { 'content-type': 'application/json', 'x-request-id': requestId, ...known?.headers },
    body: JSON.stringify(body),
  };
}
