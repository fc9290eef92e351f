import { apiRetryDecision } from '../../client/http.ts';
import { ApiError, FileJobsClient, FileJobsError, NetworkError } from '../../client/index.ts';
import { backoffDelay, retryPolicy, withRetries } from '../../client/retry.ts';

/** A fetch that answers from a script, recording every call. */
function scriptedFetch(...answers: (Response | Error | (() => Response))[]) {
  const calls: { url: string; init: RequestInit }[] = [];
  const fetch = async (url: string, init: RequestInit) => {
    calls.push({ url, init });
    const next = answers.shift();
    if (!next) throw new Error('no more scripted answers');
    if (next instanceof Error) throw next;
    return typeof next === 'function' ? next() : next;
  };
  return { fetch, calls };
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });

const serviceError = (status: number, code: string, message: string, headers: Record<string, string> = {}) =>
  json(status, { error: { code, message, requestId: `req-${code}` } }, headers);

/** What undici throws when nobody listens. */
const refused = () => Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
const reset = () => Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNRESET' } });

/** Sleeps recorded, not waited. */
function fakeSleeps() {
  const waits: number[] = [];
  return { waits, sleep: async (ms: number) => void waits.push(ms) };
}

function client(
  fetch: ReturnType<typeof scriptedFetch>['fetch'],
  sleep = fakeSleeps().sleep,
  random = () => 0.5,
) {
  return new FileJobsClient({ apiUrl: 'http://api.test/', token: 'tok', fetch, retry: { sleep, random } });
}

describe('backoff', () => {
  it('grows exponentially with full jitter, capped', () => {
    const policy = { baseDelayMs: 100, maxDelayMs: 1000, random: () => 0.999 };
    expect([0, 1, 2, 3, 4, 5].map((n) => backoffDelay(n, policy))).toEqual([99, 199, 399, 799, 999, 999]);
    expect(backoffDelay(3, { ...policy, random: () => 0 })).toBe(0);
  });

  it('retries until success, waiting the backoff between attempts', async () => {
    const { waits, sleep } = fakeSleeps();
    let attempts = 0;
    const result = await withRetries(
      async () => {
        if (++attempts < 4) throw new Error('flaky');
        return 'ok';
      },
      () => true,
      retryPolicy({ retries: 5, baseDelayMs: 100, maxDelayMs: 10_000, random: () => 0.5, sleep }),
    );
    expect(result).toBe('ok');
    expect(waits).toEqual([50, 100, 200]);
  });

  it('gives up after the last retry and rethrows the last error', async () => {
    const { sleep } = fakeSleeps();
    let attempts = 0;
    await expect(
      withRetries(
        async () => {
          throw new Error(`failure ${++attempts}`);
        },
        () => true,
        retryPolicy({ retries: 2, sleep }),
      ),
    ).rejects.toThrow('failure 3');
  });

  it('stops waiting as soon as the signal aborts', async () => {
    const controller = new AbortController();
    const started = Date.now();
    const pending = withRetries(
      async () => {
        throw new Error('down');
      },
      () => 60_000,
      retryPolicy({ retries: 3, maxRetryAfterMs: 120_000 }),
      controller.signal,
    );
    setTimeout(() => controller.abort(), 20);
    await expect(pending).rejects.toMatchObject({ name: 'AbortError', code: 'Aborted' });
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

describe('API calls', () => {
  it('sends the bearer token and JSON, and parses the answer', async () => {
    const { fetch, calls } = scriptedFetch(json(200, { files: [{ name: 'a', size: 1, lastModified: 'x' }] }));
    expect(await client(fetch).listFiles()).toEqual([{ name: 'a', size: 1, lastModified: 'x' }]);
    expect(calls[0]!.url).toBe('http://api.test/files');
    expect((calls[0]!.init.headers as Record<string, string>).authorization).toBe('Bearer tok');
  });

  it('turns the service error shape into an ApiError with status, code, message and requestId', async () => {
    const { fetch } = scriptedFetch(serviceError(404, 'JobNotFound', 'no job 01ABC'));
    const error = await client(fetch)
      .getJob('01ABC')
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({
      status: 404,
      code: 'JobNotFound',
      message: 'no job 01ABC',
      requestId: 'req-JobNotFound',
    });
  });

  it('describes a non-JSON error (a gateway, a wrong URL) without losing the status', async () => {
    const { fetch } = scriptedFetch(
      new Response('<html>Bad gateway</html>', { status: 404, statusText: 'Not Found' }),
    );
    await expect(client(fetch).listFiles()).rejects.toMatchObject({
      status: 404,
      code: 'Http404',
      message: expect.stringContaining('Bad gateway'),
    });
  });

  it('retries GETs on 503 and 5xx with backoff, honouring Retry-After', async () => {
    const { waits, sleep } = fakeSleeps();
    const { fetch, calls } = scriptedFetch(
      serviceError(503, 'ServiceUnavailable', 'busy', { 'retry-after': '2' }),
      serviceError(500, 'InternalError', 'oops'),
      reset(),
      json(200, { files: [] }),
    );
    expect(await client(fetch, sleep).listFiles()).toEqual([]);
    expect(calls).toHaveLength(4);
    expect(waits).toEqual([2000, 200, 400]);
  });

  it('never repeats sign-in after 429 or 401, but does when the connection was refused', async () => {
    const { fetch, calls } = scriptedFetch(
      serviceError(429, 'TooManyRequests', 'locked', { 'retry-after': '30' }),
      refused(),
      json(200, { token: 't', tokenType: 'Bearer', expiresIn: 3600 }),
    );
    const api = client(fetch);
    await expect(api.signIn('a', 'b')).rejects.toMatchObject({ status: 429, retryAfterSeconds: 30 });
    expect(calls).toHaveLength(1);
    await expect(api.signIn('a', 'b')).resolves.toMatchObject({ token: 't' });
    expect(api.token).toBe('t');
  });

  it('does not repeat a non-idempotent POST whose connection broke mid-way', async () => {
    const { fetch, calls } = scriptedFetch(reset(), json(200, { token: 't' }));
    await expect(client(fetch).signIn('ann', 'pw')).rejects.toBeInstanceOf(NetworkError);
    expect(calls).toHaveLength(1);
  });

  it('repeats POST /export and POST /upload under one Idempotency-Key, a fresh one per call', async () => {
    const { fetch, calls } = scriptedFetch(
      reset(),
      serviceError(503, 'ServiceUnavailable', 'try again', { 'retry-after': '1' }),
      json(202, { job: { jobId: 'j1' } }),
      json(202, { job: { jobId: 'j2' } }),
      reset(),
      json(201, { job: { jobId: 'u1' }, parts: [] }),
    );
    const api = client(fetch);
    expect((await api.startExport('a.bin')).jobId).toBe('j1');
    expect((await api.startExport('a.bin')).jobId).toBe('j2');
    await api.createUpload({ filename: 'b.bin', size: 10 });
    const keys = calls.map((call) => new Headers(call.init.headers).get('idempotency-key'));
    expect(keys.every((key) => key && /^[0-9a-f-]{36}$/.test(key))).toBe(true);
    expect(keys[0]).toBe(keys[1]);
    expect(keys[1]).toBe(keys[2]);
    expect(keys[3]).not.toBe(keys[2]);
    expect(keys[4]).toBe(keys[5]);
    expect(keys[4]).not.toBe(keys[3]);
  });

  it('sends the Idempotency-Key the caller chose', async () => {
    const { fetch, calls } = scriptedFetch(json(202, { job: { jobId: 'j1' } }));
    await client(fetch).startExport('a.bin', 'gzip', { idempotencyKey: 'order-42' });
    expect(new Headers(calls[0]!.init.headers).get('idempotency-key')).toBe('order-42');
  });

  it('reports a server that is down as a NetworkError naming it, after a short retry', async () => {
    const { waits, sleep } = fakeSleeps();
    const { fetch, calls } = scriptedFetch(refused(), refused(), refused(), refused());
    const error = await client(fetch, sleep)
      .listFiles()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NetworkError);
    expect((error as NetworkError).message).toBe('cannot reach http://api.test: connection refused');
    expect(calls).toHaveLength(3);
    expect(waits).toHaveLength(2);
  });

  it('times a request out as a NetworkError', async () => {
    const hanging = (_url: string, init: RequestInit) =>
      new Promise<Response>((_resolve, reject) =>
        init.signal?.addEventListener('abort', () => reject(init.signal?.reason)),
      );
    const api = new FileJobsClient({
      apiUrl: 'http://api.test',
      token: 't',
      fetch: hanging,
      requestTimeoutMs: 30,
      retry: { retries: 0 },
    });
    await expect(api.listFiles()).rejects.toMatchObject({ name: 'NetworkError', reason: 'TIMEOUT' });
  });

  it('refuses to call a protected route without a token, and a bad API URL', async () => {
    const api = new FileJobsClient({ apiUrl: 'http://api.test', fetch: scriptedFetch().fetch });
    await expect(api.listFiles()).rejects.toMatchObject({ code: 'NotSignedIn' });
    expect(() => new FileJobsClient({ apiUrl: 'not a url' })).toThrow(FileJobsError);
    expect(() => new FileJobsClient({ apiUrl: 'ftp://x' })).toThrow(/http/);
  });

  it('classifies failures per retry mode', () => {
    const unavailable = new ApiError(503, 'ServiceUnavailable', 'x');
    const badGateway = new ApiError(502, 'Http502', 'x');
    const conflict = new ApiError(409, 'JobNotActive', 'x');
    const dropped = new NetworkError('http://x', 'ECONNRESET', 'x');
    expect(apiRetryDecision(badGateway, 0, 'idempotent')).toBe(true);
    expect(apiRetryDecision(badGateway, 0, 'unsent')).toBe(false);
    expect(apiRetryDecision(unavailable, 0, 'unsent')).toBe(true);
    expect(apiRetryDecision(conflict, 0, 'idempotent')).toBe(false);
    expect(apiRetryDecision(dropped, 0, 'idempotent')).toBe(true);
    expect(apiRetryDecision(dropped, 0, 'unsent')).toBe(false);
    expect(apiRetryDecision(unavailable, 0, 'never')).toBe(false);
  });

  it("retries a 429 after its Retry-After, except a limit only the user's own uploads free", () => {
    const limited = (limit: string, retryAfterSeconds: number) =>
      new ApiError(429, 'TooManyRequests', 'x', { details: { limit, max: 2 }, retryAfterSeconds });
    expect(apiRetryDecision(limited('jobsPerMinute', 35), 0, 'idempotent')).toBe(35_000);
    expect(apiRetryDecision(limited('exportsRunning', 10), 0, 'idempotent')).toBe(10_000);
    expect(apiRetryDecision(limited('uploadsInFlight', 60), 0, 'idempotent')).toBe(false);
    expect(apiRetryDecision(limited('uploadBytesInFlight', 60), 0, 'idempotent')).toBe(false);
    expect(apiRetryDecision(limited('jobsPerMinute', 35), 0, 'unsent')).toBe(false);
  });

  it('pages through every job', async () => {
    const job = (jobId: string) => ({ jobId });
    const { fetch, calls } = scriptedFetch(
      json(200, { jobs: [job('3'), job('2')], nextCursor: 'c1' }),
      json(200, { jobs: [job('1')] }),
    );
    const ids: string[] = [];
    for await (const found of client(fetch).jobs({ type: 'upload', limit: 2 })) ids.push(found.jobId);
    expect(ids).toEqual(['3', '2', '1']);
    expect(calls[1]!.url).toBe('http://api.test/jobs?type=upload&limit=2&cursor=c1');
  });
});
