import { ApiError, FileJobsError, NetworkError } from './errors.ts';
import { abortedBy, type RetryDecision, type RetryPolicy, withRetries } from './retry.ts';

/** The subset of `fetch` the client uses; pass your own to add logging, proxies or test doubles. */
export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

/**
 * Which failures a call may repeat:
 * - `idempotent`: network failures, 429, 5xx (GETs, and POSTs the service makes idempotent);
 * - `unsent`: only failures where the request surely had no effect (connection refused, 503);
 * - `never`.
 */
export type RetryMode = 'idempotent' | 'unsent' | 'never';

export interface CallOptions {
  query?: Record<string, string | number | boolean | undefined> | undefined;
  /** Sent as JSON. */
  body?: unknown;
  /** Send the bearer token (every route but sign-in, JWKS and health). Default true. */
  auth?: boolean;
  signal?: AbortSignal | undefined;
  retry?: RetryMode;
  timeoutMs?: number;
  /** Sent with every attempt (an Idempotency-Key must be the same in each). */
  headers?: Record<string, string>;
}

const REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed',
  UND_ERR_SOCKET: 'connection closed',
  ETIMEDOUT: 'connection timed out',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
  UND_ERR_HEADERS_TIMEOUT: 'no answer in time',
  UND_ERR_BODY_TIMEOUT: 'the answer stalled',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  CERT_HAS_EXPIRED: 'the TLS certificate has expired',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'the TLS certificate is self-signed',
};

/** The system error code behind a failed fetch (undici wraps it in `cause`, sometimes in an AggregateError). */
function systemCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current; depth++) {
    const candidate = current as { code?: unknown; errors?: unknown[]; cause?: unknown };
    if (typeof candidate.code === 'string') return candidate.code;
    if (Array.isArray(candidate.errors) && candidate.errors.length > 0) {
      const code = systemCode(candidate.errors[0]);
      if (code) return code;
    }
    current = candidate.cause;
  }
  return undefined;
}

const originOf = (url: string) => {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
};

/** A fetch failure as a NetworkError naming the server and the reason in words. */
export function networkError(url: string, error: unknown): NetworkError {
  const code = systemCode(error);
  const cause = (error as { cause?: { message?: string } })?.cause;
  const reason = (code && REASONS[code]) ?? cause?.message ?? (error as Error)?.message ?? String(error);
  return new NetworkError(url, code, `cannot reach ${originOf(url)}: ${reason}`, { cause: error });
}

/**
 * One fetch bounded by `timeoutMs` (headers and body alike, through `read`) and the caller's signal.
 * Aborting the caller's signal rejects with an AbortedError; the timeout with a NetworkError.
 */
export async function fetchWithin<T>(
  fetchFn: FetchLike,
  url: string,
  init: RequestInit,
  options: { signal?: AbortSignal | undefined; timeoutMs: number },
  read: (response: Response) => Promise<T>,
): Promise<T> {
  const timeout = AbortSignal.timeout(Math.max(1, Math.ceil(options.timeoutMs)));
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  try {
    return await read(await fetchFn(url, { ...init, signal }));
  } catch (error) {
    if (options.signal?.aborted) throw abortedBy(options.signal);
    if (timeout.aborted) {
      throw new NetworkError(
        url,
        'TIMEOUT',
        `no answer from ${originOf(url)} within ${Math.round(options.timeoutMs / 1000)} s`,
        { cause: error },
      );
    }
    if (error instanceof FileJobsError) throw error;
    throw networkError(url, error);
  }
}

/** Retry rules for API calls (see RetryMode). */
/**
 * The service's per-user limits that only the user's own uploads free, when they complete or are
 * aborted (`details.limit` of a 429): waiting and asking again does not help, so it is not retried.
 */
const LIMITS_FREED_BY_THE_USER: ReadonlySet<unknown> = new Set(['uploadsInFlight', 'uploadBytesInFlight']);

export function apiRetryDecision(error: unknown, attempt: number, mode: RetryMode): RetryDecision {
  if (mode === 'never') return false;
  if (error instanceof NetworkError) {
    // Nobody listening is usually not a blip: retry briefly, then say so.
    if (error.notSent) return attempt < 2;
    return mode === 'idempotent';
  }
  if (error instanceof ApiError) {
    const retryAfter = error.retryAfterSeconds === undefined ? true : error.retryAfterSeconds * 1000;
    if (error.status === 503) return retryAfter;
    if (mode !== 'idempotent') return false;
    if (error.status === 429) {
      const limit = (error.details as { limit?: unknown } | undefined)?.limit;
      return LIMITS_FREED_BY_THE_USER.has(limit) ? false : retryAfter;
    }
    return error.status === 408 || error.status === 500 || error.status === 502 || error.status === 504;
  }
  return false;
}

export interface TransportOptions {
  apiUrl: string;
  /** The token to send; may renew it first (FileJobsClient). */
  token: () => string | undefined | Promise<string | undefined>;
  fetch: FetchLike;
  retry: RetryPolicy;
  timeoutMs: number;
  userAgent?: string | undefined;
}

/** JSON calls to the service: auth header, timeouts, retries, and errors as ApiError / NetworkError. */
export class Transport {
  readonly apiUrl: string;
  readonly options: TransportOptions;
  /** The service's clock less this machine's (ms), from the last answer's `Date` header. */
  private serverClockOffsetMs = 0;

  constructor(options: TransportOptions) {
    let parsed: URL;
    try {
      parsed = new URL(options.apiUrl);
    } catch {
      throw new FileJobsError('BadApiUrl', `the API URL "${options.apiUrl}" is not a URL`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new FileJobsError(
        'BadApiUrl',
        `the API URL "${options.apiUrl}" must start with http:// or https://`,
      );
    }
    this.apiUrl = parsed.href.replace(/\/+$/, '');
    this.options = options;
  }

  /**
   * The time on the service's clock, as far as its answers tell (to the second): what a token's
   * `iat` and `exp` are counted in. This machine's clock until the first answer.
   */
  serverNow(): number {
    return Date.now() + this.serverClockOffsetMs;
  }

  url(path: string, query?: CallOptions['query']): string {
    const url = new URL(`${this.apiUrl}${path}`);
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    return url.href;
  }

  async call<T>(method: string, path: string, options: CallOptions = {}): Promise<T> {
    const url = this.url(path, options.query);
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
    if (this.options.userAgent) headers['user-agent'] = this.options.userAgent;
    if (options.auth !== false) {
      const token = await this.options.token();
      if (!token) throw new FileJobsError('NotSignedIn', 'not signed in: sign in first or pass a token');
      headers.authorization = `Bearer ${token}`;
    }
    let body: string | FormData | undefined;
    if (options.body instanceof FormData)
      body = options.body; // fetch writes its content type
    else if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] = 'application/json';
    }
    const mode = options.retry ?? (method === 'GET' ? 'idempotent' : 'never');
    return withRetries(
      () =>
        fetchWithin(
          this.options.fetch,
          url,
          { method, headers, ...(body === undefined ? {} : { body }) },
          { signal: options.signal, timeoutMs: options.timeoutMs ?? this.options.timeoutMs },
          async (response) => {
            const serverDate = Date.parse(response.headers.get('date') ?? '');
            if (!Number.isNaN(serverDate)) this.serverClockOffsetMs = serverDate - Date.now();
            const text = await response.text();
            if (!response.ok) throw ApiError.fromResponse(response, text);
            if (!text) return undefined as T;
            try {
              return JSON.parse(text) as T;
            } catch {
              throw new FileJobsError(
                'BadResponse',
                `${method} ${path} answered ${response.status} with a body that is not JSON; is ${this.apiUrl} the file-jobs API?`,
              );
            }
          },
        ),
      (error, attempt) => apiRetryDecision(error, attempt, mode),
      this.options.retry,
      options.signal,
    );
  }
}
