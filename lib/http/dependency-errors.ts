/**
 * Tells a dependency that is down, slow or throttling (S3, DynamoDB, SSM, Lambda) apart from a bug.
 * Those failures are not the caller's fault and usually pass: the API answers them 503
 * ServiceUnavailable with Retry-After, instead of a 500 (see error-response.ts).
 *
 * Pure: it reads only the error's name, code, HTTP status and causes, as the AWS SDK v3 and Node's
 * sockets set them.
 */

export type DependencyFailureKind = 'throttled' | 'timeout' | 'unreachable' | 'unavailable';

export interface DependencyFailure {
  kind: DependencyFailureKind;
  /** Seconds a client should wait before trying again. */
  retryAfterSeconds: number;
}

/** Service error names (the SDK's `error.name`) that mean "too many requests, slow down". */
const THROTTLING_NAMES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'ProvisionedThroughputExceededException',
  'RequestLimitExceeded',
  'BandwidthLimitExceeded',
  'LimitExceededException',
  'EC2ThrottledException',
]);

/** Timeouts: the SDK's own (connect, request, socket idle) and services' "request timed out". */
const TIMEOUT_NAMES = new Set(['TimeoutError', 'RequestTimeout', 'RequestTimeoutException']);

/** The service said it failed or is unavailable. */
const UNAVAILABLE_NAMES = new Set([
  'InternalError',
  'InternalServerError',
  'InternalFailure',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'ServiceException',
  'EC2UnexpectedException',
]);

/** Socket-level failures: the connection could not be made, or broke. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ERR_SOCKET_CONNECTION_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

const RETRY_AFTER: Record<DependencyFailureKind, number> = {
  throttled: 2,
  timeout: 5,
  unreachable: 5,
  unavailable: 5,
};

interface ErrorLike {
  name?: unknown;
  code?: unknown;
  message?: unknown;
  cause?: unknown;
  errors?: unknown;
  $metadata?: { httpStatusCode?: unknown };
}

function classifyOne(error: ErrorLike): DependencyFailureKind | undefined {
  const name = typeof error.name === 'string' ? error.name : '';
  const code = typeof error.code === 'string' ? error.code : '';
  const status = error.$metadata?.httpStatusCode;
  if (THROTTLING_NAMES.has(name) || THROTTLING_NAMES.has(code) || status === 429) return 'throttled';
  if (TIMEOUT_NAMES.has(name) || TIMEOUT_NAMES.has(code)) return 'timeout';
  if (NETWORK_CODES.has(code)) return code === 'ETIMEDOUT' ? 'timeout' : 'unreachable';
  if (UNAVAILABLE_NAMES.has(name) || UNAVAILABLE_NAMES.has(code)) return 'unavailable';
  // Node's http client when the peer closes mid-response ("socket hang up", "aborted").
  if (name === 'Error' && (error.message === 'socket hang up' || error.message === 'aborted'))
    return 'unreachable';
  // An answer from the service itself, 5xx: its fault, and passing (500, 502, 503, 504…).
  if (typeof status === 'number' && status >= 500 && status <= 599) return 'unavailable';
  return undefined;
}

/**
 * The dependency failure `error` stands for, or undefined when it is anything else (a bug, a
 * validation error, a 4xx of the service that the code should have handled). Looks through
 * `cause` chains and AggregateErrors (Node reports a failed connection to every address of a host
 * as one).
 */
export function dependencyFailure(error: unknown): DependencyFailure | undefined {
  const seen = new Set<unknown>();
  const queue: unknown[] = [error];
  while (queue.length > 0 && seen.size < 20) {
    const current = queue.shift();
    if (typeof current !== 'object' || current === null || seen.has(current)) continue;
    seen.add(current);
    const candidate = current as ErrorLike;
    const kind = classifyOne(candidate);
    if (kind) return { kind, retryAfterSeconds: RETRY_AFTER[kind] };
    if (candidate.cause !== undefined) queue.push(candidate.cause);
    if (Array.isArray(candidate.errors)) queue.push(...candidate.errors);
  }
  return undefined;
}

/** A sentence for the client; it names no host, no key and no internal detail. */
export function dependencyFailureMessage(failure: DependencyFailure): string {
  const why = {
    throttled: 'is throttling requests',
    timeout: 'did not answer in time',
    unreachable: 'could not be reached',
    unavailable: 'is unavailable',
  }[failure.kind];
  return `a service this request depends on ${why}; try again in ${failure.retryAfterSeconds} s`;
}
