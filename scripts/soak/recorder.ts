import { decodeJwt } from 'jose';
import type { FetchLike } from '../../client/index.ts';
import { ErrorCode } from '../../common/error-codes.ts';

/** One HTTP answer of 500 or more, with enough to find it in the handlers' logs. */
export interface ServerError {
  at: string;
  call: string;
  status: number;
  body: string;
  /** For a part PUT: the multipart upload it was for. */
  uploadId?: string;
  /** Whose call it was (API calls). */
  username?: string;
  /** The answer's Retry-After header, when it had one. */
  retryAfter?: string;
  /** The service's error code (`{"error": {"code": …}}`), when the body had one. */
  code?: string;
}

/**
 * The service's documented answer to a dependency (S3, DynamoDB) that is down or too slow: 503
 * `ServiceUnavailable` with Retry-After, which clients retry. Not a fault of the service itself.
 */
export const isDependencyUnavailable = (error: ServerError) =>
  !error.call.startsWith('S3 ') &&
  error.status === 503 &&
  error.retryAfter !== undefined &&
  error.code === ErrorCode.ServiceUnavailable;

function codeOf(body: string): { code?: string } {
  try {
    const code = (JSON.parse(body) as { error?: { code?: unknown } }).error?.code;
    return typeof code === 'string' ? { code } : {};
  } catch {
    return {};
  }
}

/**
 * Every HTTP exchange any soak client makes goes through one counting fetch: each status by route,
 * the server errors with their bodies, and the bytes moved. Counting at the fetch level (not per
 * client call) also sees the attempts that the client library retried and so hid.
 */
export class Recorder {
  readonly statuses = new Map<string, number>();
  readonly serverErrors: ServerError[] = [];
  networkErrors = 0;
  /** Requests that got no answer within the client's own timeout. */
  readonly timeouts: { at: string; call: string; username?: string }[] = [];
  /** Requests whose connection failed (refused, reset, cut): their outcome is unknown to the client. */
  readonly connectionFailures: { at: string; call: string; username?: string }[] = [];
  /** Bearer token -> username, so that a fault can be laid at the right user's jobs. */
  readonly owners = new Map<string, string>();
  /** Tokens of sign-ins the soak ended on purpose (signed out): their 401s are asked for. */
  private readonly endedTokens = new Set<string>();
  /** 401s to a soak user's token that had neither expired nor been signed out. */
  readonly refusedTokens: { at: string; call: string; username: string; message: string }[] = [];
  bytesUp = 0;
  bytesDown = 0;
  private readonly apiUrl: string;

  constructor(apiUrl: string) {
    this.apiUrl = apiUrl.replace(/\/+$/, '');
  }

  /** `POST /upload/{id}/complete` for API calls; `S3 PUT part` / `S3 GET object` for presigned ones. */
  describe(method: string, url: string): string {
    if (url.startsWith(this.apiUrl)) {
      const path = new URL(url).pathname
        .replace(/\/[0-9A-HJKMNP-TV-Z]{26}(?=\/|$)/g, '/{id}')
        .replace(/^(\/s3\/multipart\/\{id\})\/\d+$/, '$1/{partNumber}');
      return `${method} ${path}`;
    }
    const query = new URL(url).searchParams;
    if (method === 'PUT' && query.has('partNumber')) return 'S3 PUT part';
    return `S3 ${method} object`;
  }

  /** These tokens' sign-in is about to be ended (a sign-out): a 401 to them is no fault. */
  endTokens(tokens: string[]) {
    for (const token of tokens) this.endedTokens.add(token);
  }

  /** A 401 to a live token of a soak user: the service refused a sign-in nobody ended. */
  private async noteRefusal(token: string, call: string, response: Response) {
    const username = this.owners.get(token);
    if (!username || this.endedTokens.has(token)) return;
    const expiresAt = decodeJwt(token).exp ?? 0;
    if (Date.now() / 1000 >= expiresAt - 1) return;
    const body = (await response
      .clone()
      .json()
      .catch(() => undefined)) as { error?: { message?: string } } | undefined;
    this.refusedTokens.push({
      at: new Date().toISOString(),
      call,
      username,
      message: body?.error?.message ?? '',
    });
  }

  count(call: string, status: number | 'network-error' | 'timeout') {
    const key = `${call} ${status}`;
    this.statuses.set(key, (this.statuses.get(key) ?? 0) + 1);
  }

  readonly fetch: FetchLike = async (url, init) => {
    const method = (init.method ?? 'GET').toUpperCase();
    const call = this.describe(method, url);
    const token = new Headers(init.headers).get('authorization')?.replace(/^Bearer /, '');
    const username = token ? this.owners.get(token) : undefined;
    const who = username ? { username } : {};
    let response: Response;
    try {
      response = await globalThis.fetch(url, init);
    } catch (error) {
      // A request the caller aborted (a kill) is not the server's doing; one that got no answer
      // within the client's request timeout is, in a way: count it apart.
      const signal = init.signal as AbortSignal | undefined;
      if (!signal?.aborted) {
        this.networkErrors++;
        this.connectionFailures.push({ at: new Date().toISOString(), call, ...who });
        this.count(call, 'network-error');
      } else if ((signal.reason as Error | undefined)?.name === 'TimeoutError') {
        this.timeouts.push({ at: new Date().toISOString(), call, ...who });
        this.count(call, 'timeout');
      }
      throw error;
    }
    this.count(call, response.status);
    if (response.status === 401 && token && !call.startsWith('S3 '))
      await this.noteRefusal(token, call, response);
    if (response.status >= 500) {
      const body = await response
        .clone()
        .text()
        .catch(() => '');
      const uploadId = call.startsWith('S3 ') ? new URL(url).searchParams.get('uploadId') : null;
      this.serverErrors.push({
        at: new Date().toISOString(),
        call,
        status: response.status,
        body: body.replace(/\s+/g, ' ').slice(0, 400),
        ...codeOf(body),
        ...(uploadId ? { uploadId } : {}),
        ...who,
        ...(response.headers.has('retry-after')
          ? { retryAfter: response.headers.get('retry-after') ?? '' }
          : {}),
      });
    }
    if (response.ok && method === 'PUT') {
      const length = Number(new Headers(init.headers).get('content-length'));
      if (Number.isFinite(length)) this.bytesUp += length;
    }
    return response;
  };

  /** Statuses per route, sorted, as `{ "POST /upload 201": 12, … }`. */
  table(): Record<string, number> {
    return Object.fromEntries([...this.statuses.entries()].sort(([a], [b]) => a.localeCompare(b)));
  }

  /** Answers by class: `{ "2xx": …, "4xx": …, "5xx": … }`. */
  classes(): Record<string, number> {
    const classes: Record<string, number> = {};
    for (const [key, count] of this.statuses) {
      const status = key.slice(key.lastIndexOf(' ') + 1);
      const label = /^\d+$/.test(status) ? `${status[0]}xx` : status;
      classes[label] = (classes[label] ?? 0) + count;
    }
    return classes;
  }

  /** Server errors from the API (not from the S3 emulator's presigned URLs), dependency 503s apart. */
  apiServerErrors(): ServerError[] {
    return this.serverErrors.filter(
      (error) => !error.call.startsWith('S3 ') && !isDependencyUnavailable(error),
    );
  }

  /** The API's 503s for a slow or unavailable dependency (see isDependencyUnavailable). */
  dependencyUnavailable(): ServerError[] {
    return this.serverErrors.filter(isDependencyUnavailable);
  }

  /** How many answers the API gave (retried attempts included). */
  apiAnswers(): number {
    let answers = 0;
    for (const [key, count] of this.statuses) {
      if (!key.startsWith('S3 ') && /\s\d+$/.test(key)) answers += count;
    }
    return answers;
  }
}
