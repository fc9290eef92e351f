import { randomUUID } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { STATUS_CODES } from 'node:http';
import { connect } from 'node:net';
import { startOffline } from '../../scripts/local-stack.ts';
import { api, expectError } from '../support/http.ts';
import { testStack } from '../support/stack-env.ts';
import { createTestUser } from '../support/users.ts';

/**
 * What the API does with input it did not ask for, over the real serverless-offline: unknown routes
 * and methods, bodies that are JSON but not objects, keys that could pollute a prototype, and media
 * types with whitespace where HTTP allows none.
 */

type User = Awaited<ReturnType<typeof createTestUser>> & { jwt: string };

let user: User;

beforeAll(async () => {
  const created = await createTestUser('in');
  user = { ...created, jwt: await created.token() };
});

const name = () => `input-${randomUUID().slice(0, 8)}.txt`;

/** A body sent exactly as written, declared as JSON. */
const postJson = (path: string, body: string) =>
  api(path, { method: 'POST', token: user.jwt, body, headers: { 'content-type': 'application/json' } });

describe('unknown routes and methods', () => {
  it.each([
    ['GET', '/nope'],
    ['GET', '/upload/kill/more'],
    ['POST', '/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/extra'],
    ['DELETE', '/files/x/y'],
    ['PATCH', '/files/x'],
  ])('%s %s answers 404 NotFound in the error shape', async (method, path) => {
    const response = await api(path, { method, token: user.jwt });
    const error = expectError(response, 404, 'NotFound');
    expect(error.message).toContain(path);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(response.headers.get('x-request-id')).toBe(error.requestId);
  });

  it.each([
    ['PUT', '/files', 'GET'],
    ['DELETE', '/auth/signin', 'POST'],
    ['GET', '/upload', 'POST'],
    ['PATCH', '/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV', 'GET'],
    // `/upload/{jobId}` takes DELETE; `/upload/kill` is one of its paths, and takes DELETE itself.
    ['POST', '/upload/kill', 'DELETE'],
    ['GET', '/upload/01ARZ3NDEKTSV4RRFFQ69G5FAV', 'DELETE'],
    // `/export/kill` takes POST; that `DELETE /export/{jobId}` matches it too does not count: a
    // concrete path wins (OpenAPI), even where API Gateway routes the request to the template's route.
    ['GET', '/export/kill', 'POST'],
    ['DELETE', '/export/kill', 'POST'],
    ['PUT', '/health', 'GET'],
    // The web console's page and its session.
    ['DELETE', '/', 'GET'],
    ['PUT', '/auth/session', 'DELETE, GET, POST'],
  ])('%s %s answers 405 MethodNotAllowed with Allow: %s', async (method, path, allow) => {
    const response = await api(path, { method, token: user.jwt });
    const error = expectError(response, 405, 'MethodNotAllowed');
    expect(error.message).toContain(method);
    expect(response.headers.get('allow')).toBe(allow);
  });

  it('answers without a token too: the route is unknown before anyone is asked who they are', async () => {
    expectError(await api('/nope'), 404, 'NotFound');
    const response = await api('/files', { method: 'PUT' });
    expectError(response, 405, 'MethodNotAllowed');
    expect(response.headers.get('allow')).toBe('GET');
  });

  it('still answers CORS preflights on known paths, and the real request carries CORS headers', async () => {
    const origin = 'https://console.example.com';
    const preflight = await fetch(`${testStack().apiUrl}/upload`, {
      method: 'OPTIONS',
      headers: {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    });
    expect(preflight.status).toBeLessThan(300);
    expect(preflight.headers.get('access-control-allow-origin')).toMatch(
      /^(\*|https:\/\/console\.example\.com)$/,
    );
    expect(preflight.headers.get('access-control-allow-methods')).toMatch(/POST/);
    expect(preflight.headers.get('access-control-allow-headers')?.toLowerCase()).toMatch(/authorization/);

    const real = await api('/files', { token: user.jwt, headers: { origin } });
    expect(real.status).toBe(200);
    expect(real.headers.get('access-control-allow-origin')).toMatch(/^(\*|https:\/\/console\.example\.com)$/);
  });
});

describe('JSON bodies', () => {
  // A JSON string ("abc") is in the unit tests only: serverless-offline hands the handler the string
  // it parsed (abc), not the body that was sent, so here it is malformed JSON; in AWS it was a 415.
  it.each([
    ['a number', '42'],
    ['an array', '[{"filename":"a.txt","size":1}]'],
    ['null', 'null'],
    ['true', 'true'],
    // serverless-offline hands these over parsed, as a boolean and a number (not as text).
    ['false', 'false'],
    ['zero', '0'],
  ])('refuses %s as the body with 400 "the body must be a JSON object"', async (_case, body) => {
    for (const path of ['/upload', '/export', '/auth/signin']) {
      const response = await postJson(path, body);
      const error = expectError(response, 400);
      expect({ path, message: error.message }).toEqual({
        path,
        message: expect.stringContaining('the body must be a JSON object'),
      });
    }
  });

  it.each(['false', '0', '[]', '"x"', 'null'])(
    'refuses %s as the optional body of POST /upload/{jobId}/complete with 400, the job untouched',
    async (body) => {
      const created = await api('/upload', {
        method: 'POST',
        token: user.jwt,
        body: { filename: name(), size: 1 },
      });
      expect(created.status).toBe(201);
      const jobId = created.body.job.jobId as string;
      expectError(await postJson(`/upload/${jobId}/complete`, body), 400);
      const job = await api(`/jobs/${jobId}`, { token: user.jwt });
      expect(job.body.job.status).toBe('UPLOADING');
      await api(`/upload/${jobId}`, { method: 'DELETE', token: user.jwt });
    },
  );

  it.each([
    ['at the top', (filename: string) => `{"filename":"${filename}","size":1,"__proto__":{"admin":true}}`],
    ['deeper down', (filename: string) => `{"filename":"${filename}","size":1,"x":{"__proto__":{"a":1}}}`],
    [
      'as constructor.prototype',
      (filename: string) => `{"filename":"${filename}","size":1,"constructor":{"prototype":{"a":1}}}`,
    ],
  ])(
    'refuses a __proto__ key %s with a 400 that names the key, not "not valid JSON"',
    async (_case, body) => {
      const response = await postJson('/upload', body(name()));
      const error = expectError(response, 400, 'ForbiddenJsonKey');
      expect(error.message).not.toMatch(/not valid JSON/);
      expect(error.message).toMatch(/"(__proto__|constructor)"/);
      expect(({} as Record<string, unknown>).admin).toBeUndefined();
    },
  );
});

/** Bytes sent as they are over one connection, and the raw answer (no client to tidy them). */
function rawRequest(request: Buffer): Promise<string> {
  const { apiUrl } = testStack();
  const { hostname, port } = new URL(apiUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.end(request));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.setTimeout(10_000, () => socket.destroy(new Error('no answer in 10 s')));
  });
}

describe('requests that are not valid HTTP', () => {
  it.each([
    [
      'a control character in a header value',
      Buffer.from('Cookie: a=\x01b\r\n', 'latin1'),
      400,
      'ValidationError',
    ],
    ['a DEL in a header value', Buffer.from('X-Thing: b\x7f\r\n', 'latin1'), 400, 'ValidationError'],
    [
      'headers larger than the server takes',
      Buffer.from(`X-Big: ${'a'.repeat(20_000)}\r\n`),
      431,
      'HeadersTooLarge',
    ],
  ])('answers %s in the JSON error shape (%s)', async (_case, header, status, code) => {
    const answer = await rawRequest(
      Buffer.concat([Buffer.from('GET /health HTTP/1.1\r\nHost: x\r\n'), header, Buffer.from('\r\n')]),
    );
    const [head = '', body = ''] = answer.split('\r\n\r\n');
    expect(head.split('\r\n')[0]).toBe(`HTTP/1.1 ${status} ${STATUS_CODES[status]}`);
    expect(head).toMatch(/^content-type: application\/json/im);
    expect(JSON.parse(body)).toEqual({
      error: { code, message: expect.any(String), requestId: expect.any(String) },
    });
  });

  it('reads the token past a malformed cookie, which hapi once answered with its own 400', async () => {
    const response = await api('/files', {
      token: user.jwt,
      headers: { cookie: 'junk="x; other=%%%; fj_session=' },
    });
    expect(response.status).toBe(200);
  });
});

describe('media types (RFC 7231 §3.1.1.1)', () => {
  it.each([
    'text/plain',
    'text/plain;charset=utf-8',
    'text/plain; charset=utf-8',
    'text/plain ;\tcharset=utf-8',
    'text/plain;\tcharset="utf-8"',
    'multipart/mixed; boundary="a b;c\\"d"',
    'application/vnd.api+json; charset=utf-8; ext="x"',
  ])('accepts %j', async (contentType) => {
    const response = await api('/upload', {
      method: 'POST',
      token: user.jwt,
      body: { filename: name(), size: 1, contentType },
    });
    expect({ status: response.status, body: response.body.error }).toEqual({ status: 201, body: undefined });
  });

  it.each([
    ['a newline', 'text/plain\nx-evil: 1'],
    ['a newline as OWS', 'text/plain;\ncharset=utf-8'],
    ['a carriage return', 'text/plain;\rcharset=utf-8'],
    ['a vertical tab', 'text/plain;\vcharset=utf-8'],
    ['a form feed', 'text/plain;\fcharset=utf-8'],
    ['a no-break space', 'text/plain;\u00a0charset=utf-8'],
    ['a newline in a quoted string', 'text/plain; charset="utf\n8"'],
    ['a space around the slash', 'text / plain'],
    ['leading whitespace', ' text/plain'],
    ['trailing whitespace', 'text/plain '],
    ['a space around the =', 'text/plain; charset = utf-8'],
    ['an empty parameter', 'text/plain;'],
    ['no subtype', 'text'],
    ['non-ASCII', 'text/plain; charset="ütf"'],
    ['an unclosed quote', 'text/plain; charset="utf-8'],
  ])('refuses %s with 400', async (_case, contentType) => {
    const error = expectError(
      await api('/upload', {
        method: 'POST',
        token: user.jwt,
        body: { filename: name(), size: 1, contentType },
      }),
      400,
      'ValidationError',
    );
    expect(error.message).toContain('contentType');
  });
});

describe('file names', () => {
  it.each([
    ['an unpaired high surrogate', String.raw`{"filename":"a\ud800b.txt","size":1}`],
    ['an unpaired low surrogate', String.raw`{"filename":"\udc00.txt","size":1}`],
  ])('refuses %s with 400, not a 500 from S3 key encoding', async (_case, body) => {
    for (const path of ['/upload', '/export']) {
      const response = await postJson(path, body);
      expectError(response, 400, 'ValidationError');
    }
  });

  it('accepts a name with a surrogate pair (an emoji)', async () => {
    const response = await postJson('/upload', String.raw`{"filename":"party \ud83c\udf89.txt","size":1}`);
    expect(response.status).toBe(201);
    expect(response.body.job.filename).toBe('party 🎉.txt');
  });
});

describe('CORS with a configured list of origins (a deployed stage)', () => {
  // A serverless-offline of its own, started as a deployed stage is configured: the API answers
  // the preflights of the listed origins only. (The bucket's rule is checked in the packaged
  // template: moto applies no bucket CORS.)
  const allowed = 'https://console.example.com';
  let apiUrl: string;
  let stop: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    const logFile = process.env.TEST_LOG_FILE;
    const offline = await startOffline(
      'test',
      { CORS_ALLOWED_ORIGINS: `${allowed},https://admin.example.com` },
      {},
      (line) => {
        if (logFile) appendFileSync(logFile, `[cors] ${line}\n`);
      },
    );
    apiUrl = offline.apiUrl;
    stop = offline.stop;
  }, 180_000);

  afterAll(async () => {
    await stop?.();
  });

  const preflight = (origin: string) =>
    fetch(`${apiUrl}/upload`, {
      method: 'OPTIONS',
      headers: {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization',
      },
    });

  it('allows a listed origin', async () => {
    const response = await preflight(allowed);
    expect(response.status).toBe(204);
    expect(response.headers.get('access-control-allow-origin')).toBe(allowed);
    expect(response.headers.get('access-control-allow-methods')).toMatch(/POST/);
  });

  it('allows a listed origin the Companion routes, with the headers Uppy and the Bearer wrapper send', async () => {
    const calls = [
      ['POST', '/s3/multipart'],
      ['GET', '/s3/multipart/01JABCDEFGHJKMNPQRSTVWXYZ0/1?key=uploads%2Fa%2Fb'],
      ['GET', '/s3/multipart/01JABCDEFGHJKMNPQRSTVWXYZ0?key=uploads%2Fa%2Fb'],
      ['POST', '/s3/multipart/01JABCDEFGHJKMNPQRSTVWXYZ0/complete?key=uploads%2Fa%2Fb'],
      ['DELETE', '/s3/multipart/01JABCDEFGHJKMNPQRSTVWXYZ0?key=uploads%2Fa%2Fb'],
    ] as const;
    for (const [method, path] of calls) {
      for (const origin of [allowed, 'https://evil.example']) {
        const response = await fetch(`${apiUrl}${path}`, {
          method: 'OPTIONS',
          headers: {
            origin,
            'access-control-request-method': method,
            'access-control-request-headers': 'authorization,content-type',
          },
        });
        expect({ method, path, origin, allow: response.headers.get('access-control-allow-origin') }).toEqual({
          method,
          path,
          origin,
          allow: origin === allowed ? allowed : null,
        });
        if (origin === allowed)
          expect(response.headers.get('access-control-allow-methods')).toContain(method);
      }
    }
  });

  it('gives any other origin nothing to go on', async () => {
    for (const origin of ['https://evil.example', 'https://console.example.com.evil.example', 'null']) {
      const response = await preflight(origin);
      expect({ origin, allow: response.headers.get('access-control-allow-origin') }).toEqual({
        origin,
        allow: null,
      });
    }
  });
});
