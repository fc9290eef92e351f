import { createRequire } from 'node:module';
import { jest } from '@jest/globals';
import { handler as unmatchedRoute } from '../../functions/unmatched-route.ts';
import { createMultipartBody } from '../../lib/companion/schemas.ts';
import { httpRoute } from '../../lib/http/route.ts';
import { ROUTE_KEYS } from '../../lib/http/route-keys.ts';
import { allowedMethods, concretePathConflict, unmatchedRequest } from '../../lib/http/unmatched.ts';
import { logger } from '../../lib/log.ts';
import { openApiDocument } from '../../lib/openapi/document.ts';
import * as z from '../../lib/schema.ts';
import {
  FILENAME_JSON_SCHEMA,
  filenameProblem,
  filenameSchema,
  MAX_FILENAME_BYTES,
  pickedFilenameSchema,
} from '../../lib/storage/keys.ts';
import { createUploadBody, createUploadForm, mediaTypeSchema } from '../../lib/uploads/schemas.ts';
import { invoke } from '../support/events.ts';

const { corsOrigins } = createRequire(import.meta.url)('../../lib/http/cors-origins.cjs') as {
  corsOrigins: (stage: string, configured: string | undefined) => { api: string[]; bucket: unknown[] };
};

beforeAll(() => {
  jest.spyOn(logger, 'error').mockImplementation(() => {});
  jest.spyOn(logger, 'info').mockImplementation(() => {});
});

describe('file-name rules in the OpenAPI document', () => {
  const names = [
    'a.txt',
    'report 2024.pdf',
    '.hidden',
    'a.b.c',
    'équipe.txt',
    '日本語.gz',
    'emoji 🎉.bin',
    '',
    '.',
    '..',
    'a..b',
    '../x',
    'a/b',
    'a\\b',
    'a\u0000b',
    'a\nb',
    'a\tb',
    'a\u007fb',
    ' lead',
    'trail ',
    '\u00a0nbsp',
    'nbsp\u00a0',
    '\u3000ideographic',
    'x\ufeff',
    'in side',
    'party 🎉',
  ];

  const schemaOf = (body: string) => {
    const operation = (openApiDocument() as any).paths[body === 'upload' ? '/upload' : '/export'].post;
    return operation.requestBody.content['application/json'].schema.properties.filename;
  };

  it('states the rules the server checks, from the same source (lib/storage/keys.ts)', () => {
    for (const body of ['upload', 'export']) {
      expect(schemaOf(body)).toMatchObject({
        type: 'string',
        minLength: 1,
        maxLength: MAX_FILENAME_BYTES,
        pattern: FILENAME_JSON_SCHEMA.pattern,
      });
      expect(schemaOf(body).description).toMatch(/NFC/);
    }
  });

  it.each(names)('the pattern and the server agree on %j', (name) => {
    const pattern = new RegExp(FILENAME_JSON_SCHEMA.pattern, 'u');
    const byDocument = pattern.test(name) && name.length >= 1 && name.length <= MAX_FILENAME_BYTES;
    expect({ name, byDocument }).toEqual({ name, byDocument: filenameProblem(name) === undefined });
  });

  it('leaves only the byte count, well-formed Unicode and NFC to words', () => {
    const pattern = new RegExp(FILENAME_JSON_SCHEMA.pattern, 'u');
    const long = 'é'.repeat(200); // 200 characters, 400 bytes
    expect(pattern.test(long) && long.length <= MAX_FILENAME_BYTES).toBe(true);
    expect(filenameProblem(long)).toMatch(/bytes/);
    const decomposed = 'e\u0301.txt';
    expect(pattern.test(decomposed)).toBe(true);
    expect(filenameProblem(decomposed)).toMatch(/NFC/);
    // Most validators cannot read a surrogate in a pattern (schemathesis would drop it whole).
    expect(FILENAME_JSON_SCHEMA.pattern).not.toMatch(/\\ud[89a-f]/i);
    expect(pattern.test('a\ud800b')).toBe(true);
    expect(filenameProblem('a\ud800b')).toMatch(/well-formed/);
    expect(FILENAME_JSON_SCHEMA.description).toMatch(/well-formed Unicode/);
  });

  it('composes a name picked in a browser (Companion routes) instead of refusing it, and says so', () => {
    const decomposed = 'cafe\u0301 re\u0301sume\u0301.txt'; // as macOS may hand a picked file's name over
    const composed = 'caf\u00e9 r\u00e9sum\u00e9.txt';
    expect(z.safeParse(filenameSchema, decomposed).success).toBe(false);
    expect(z.parse(pickedFilenameSchema, decomposed)).toBe(composed);
    expect(z.parse(createMultipartBody, { filename: decomposed }).filename).toBe(composed);
    // Composed first, then every other rule as for any name.
    for (const bad of ['', '..', 'a/b', ' lead', 'a\ud800b', 'e\u0301'.repeat(200)])
      expect(z.safeParse(pickedFilenameSchema, bad).success).toBe(false);
    const operation = (openApiDocument() as any).paths['/s3/multipart'].post;
    const filename = operation.requestBody.content['application/json'].schema.properties.filename;
    expect(filename).toMatchObject({ pattern: FILENAME_JSON_SCHEMA.pattern, maxLength: MAX_FILENAME_BYTES });
    expect(filename.description).toMatch(/composed to NFC/);
  });
});

describe('media types', () => {
  it.each([
    ['text/plain', 'text/plain'],
    ['text/plain;charset=utf-8', 'text/plain; charset=utf-8'],
    ['text/plain \t;\t charset=utf-8', 'text/plain; charset=utf-8'],
    ['multipart/mixed; boundary="a ;\tb\\"c"', 'multipart/mixed; boundary="a ;\tb\\"c"'],
    ['a/b;x=1 ; y="2"', 'a/b; x=1; y="2"'],
  ])('accepts %j as %j (OWS around ";" made one space)', (input, stored) => {
    expect(z.parse(mediaTypeSchema, input)).toBe(stored);
    expect(z.parse(createUploadBody, { filename: 'a', size: 1, contentType: input }).contentType).toBe(
      stored,
    );
  });

  it.each([
    'text/plain\n',
    'text/plain;\ncharset=utf-8',
    'text/plain;\r\ncharset=utf-8',
    'text/plain;\vcharset=utf-8',
    'text/plain;\u00a0charset=utf-8',
    'text/plain; charset="a\nb"',
    'text/plain; charset="ü"',
    'text/plain;',
    ' text/plain',
    'text/plain ',
    'text/plain; charset = utf-8',
    'text',
    'text/plain; charset="x',
  ])('refuses %j', (input) => {
    expect(mediaTypeSchema.safeParse(input).success).toBe(false);
  });

  it("holds a form file's type to the same rule", () => {
    const file = (mimetype: string) => ({ file: { filename: 'a.txt', mimetype, content: Buffer.from('x') } });
    expect(createUploadForm.safeParse(file('text/plain;charset=utf-8')).success).toBe(true);
    expect(createUploadForm.safeParse(file('text/plain\nx: y')).success).toBe(false);
  });
});

describe('unknown routes and methods (lib/http/unmatched.ts)', () => {
  it('knows the routes the OpenAPI document describes', () => {
    const documented = Object.entries<Record<string, unknown>>((openApiDocument() as any).paths).flatMap(
      ([path, operations]) => Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`),
    );
    expect([...ROUTE_KEYS].sort()).toEqual(documented.sort());
  });

  it.each([
    ['/files', ['GET']],
    ['/upload', ['POST']],
    ['/upload/kill', ['DELETE']],
    ['/upload/01ARZ3NDEKTSV4RRFFQ69G5FAV', ['DELETE']],
    ['/upload/01ARZ3NDEKTSV4RRFFQ69G5FAV/parts', ['POST']],
    ['/export/kill', ['POST']],
    ['/export/01ARZ3NDEKTSV4RRFFQ69G5FAV', ['DELETE']],
    ['/.well-known/jwks.json', ['GET']],
    ['/s3/multipart', ['POST']],
    ['/s3/multipart/01ARZ3NDEKTSV4RRFFQ69G5FAV', ['DELETE', 'GET']],
    ['/s3/multipart/01ARZ3NDEKTSV4RRFFQ69G5FAV/7', ['GET']],
    ['/s3/multipart/01ARZ3NDEKTSV4RRFFQ69G5FAV/complete', ['POST']],
    ['/.well-known/jwksXjson', []],
    ['/upload//parts', []],
    ['/files/', []],
    ['/nope', []],
    ['/', ['GET']],
    ['/auth/session', ['DELETE', 'GET', 'POST']],
  ])('%s takes %j', (path, methods) => {
    expect(allowedMethods(path)).toEqual(methods);
  });

  it('answers 404, 405 with Allow, or (OPTIONS on a known path) the methods to allow', () => {
    expect(unmatchedRequest('GET', '/nope')).toMatchObject({ status: 404, code: 'NotFound' });
    expect(unmatchedRequest('OPTIONS', '/nope')).toMatchObject({ status: 404, code: 'NotFound' });
    expect(unmatchedRequest('PUT', '/files')).toMatchObject({
      status: 405,
      code: 'MethodNotAllowed',
      headers: { allow: 'GET' },
    });
    expect(unmatchedRequest('OPTIONS', '/export/kill')).toEqual({ allow: ['POST'] });
    // Companion's single-request uploads are not served, and the answer says what to do instead.
    expect(unmatchedRequest('GET', '/s3/params')).toMatchObject({
      status: 404,
      message: expect.stringContaining('shouldUseMultipart: true'),
    });
    // A template's route that took a concrete path's request (API Gateway routes DELETE /export/kill
    // to DELETE /export/{jobId}) answers the concrete path's 405.
    expect(concretePathConflict('DELETE', '/export/kill')).toMatchObject({
      status: 405,
      headers: { allow: 'POST' },
    });
    expect(concretePathConflict('POST', '/export/kill')).toBeUndefined();
    expect(concretePathConflict('DELETE', '/export/01ARZ3NDEKTSV4RRFFQ69G5FAV')).toBeUndefined();
    expect(concretePathConflict('DELETE', '/upload/kill')).toBeUndefined();
    // A literal segment wins over a parameter anywhere: GET .../complete reaches the part-signing
    // route (GET /s3/multipart/{uploadId}/{partNumber}), but its path is complete's, POST only.
    expect(concretePathConflict('GET', '/s3/multipart/01ARZ3NDEKTSV4RRFFQ69G5FAV/complete')).toMatchObject({
      status: 405,
      headers: { allow: 'POST' },
    });
    expect(concretePathConflict('POST', '/s3/multipart/01ARZ3NDEKTSV4RRFFQ69G5FAV/complete')).toBeUndefined();
    expect(concretePathConflict('GET', '/s3/multipart/01ARZ3NDEKTSV4RRFFQ69G5FAV/3')).toBeUndefined();
    const long = unmatchedRequest('GET', `/${'x'.repeat(5000)}`) as Error;
    expect(long.message.length).toBeLessThan(300);
  });
});

describe('the $default route handler', () => {
  // In AWS a CORS preflight may reach the $default route (it matches no other route): a 2xx lets
  // API Gateway add the configured CORS headers to it.
  it.each([
    ['OPTIONS', '/files', 204, 'GET'],
    ['PUT', '/files', 405, 'GET'],
    ['DELETE', '/export/kill', 405, 'POST'],
  ])('answers %s %s with %i and Allow: %s', async (method, path, status, allow) => {
    const response = await invoke(unmatchedRoute, { method, path, routeKey: '$default' });
    expect({ status: response.status, allow: response.headers.allow }).toEqual({ status, allow });
  });

  it('answers an unknown path 404, OPTIONS too', async () => {
    for (const method of ['GET', 'OPTIONS']) {
      const response = await invoke(unmatchedRoute, { method, path: '/nope', routeKey: '$default' });
      expect(response.status).toBe(404);
      expect(response.body.error.code).toBe('NotFound');
    }
  });
});

describe('JSON bodies', () => {
  const echo = httpRoute({ auth: 'none', body: z.looseObject({ name: z.string() }) }, async ({ body }) => ({
    status: 200,
    body: { body, proto: Object.getPrototypeOf(body) === Object.prototype },
  }));
  const form = httpRoute(
    {
      auth: 'none',
      body: z.object({ name: z.string() }),
      form: { maxBytes: 1024, tooLargeMessage: 'too large' },
    },
    async ({ form }) => ({
      status: 200,
      body: { fields: Object.keys(form ?? {}), proto: Object.getPrototypeOf(form) },
    }),
  );
  const json = (body: string) => ({ method: 'POST', body, headers: { 'content-type': 'application/json' } });

  it.each(['"abc"', '1', '[]', '[{"name":"a"}]', 'null', 'false'])(
    'refuses %s: the body must be a JSON object (also on a route that takes forms)',
    async (body) => {
      for (const route of [echo, form]) {
        const response = await invoke(route, json(body));
        expect(response.status).toBe(400);
        expect(response.body.error).toMatchObject({
          code: 'ValidationError',
          message: expect.stringContaining('the body must be a JSON object'),
        });
      }
    },
  );

  it('refuses an empty JSON body the same way', async () => {
    const response = await invoke(echo, { method: 'POST', headers: { 'content-type': 'application/json' } });
    expect(response.status).toBe(400);
    expect(response.body.error.message).toContain('the body must be a JSON object');
  });

  it.each([
    ['{"name":"a","__proto__":{"admin":true}}', '"__proto__"'],
    ['{"name":"a","deep":[{"__proto__":{"admin":true}}]}', '"__proto__"'],
    ['{"name":"a","constructor":{"prototype":{"admin":true}}}', '"constructor"'],
  ])('refuses %s with ForbiddenJsonKey naming the key; no prototype changes', async (body, key) => {
    const response = await invoke(echo, json(body));
    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe('ForbiddenJsonKey');
    expect(response.body.error.message).toContain(key);
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
  });

  it('takes a form field named __proto__ as a field, never as the prototype', async () => {
    const data = new FormData();
    data.append('__proto__', new Blob(['x']), 'a.txt');
    data.append('name', 'a');
    const request = new Request('http://x', { method: 'POST', body: data });
    const response = await invoke(form, {
      method: 'POST',
      body: Buffer.from(await request.arrayBuffer()).toString('latin1'),
      headers: { 'content-type': request.headers.get('content-type')! },
    });
    expect(response.status).toBe(200);
    expect(response.body.fields.sort()).toEqual(['__proto__', 'name']);
    expect(response.body.proto).toBeNull();
  });
});

describe('CORS origins (serverless.yml, lib/http/cors-origins.cjs)', () => {
  const apiOrigin = { 'Fn::GetAtt': ['HttpApi', 'ApiEndpoint'] };

  it('allows any origin by default only on the stages that run on this machine', () => {
    expect(corsOrigins('local', undefined)).toEqual({ api: ['*'], bucket: ['*'] });
    expect(corsOrigins('test', '')).toEqual({ api: ['*'], bucket: ['*'] });
    // A deployed stage: no other origin for the API, and only the API's own for the bucket.
    expect(corsOrigins('prod', undefined)).toEqual({ api: [], bucket: [apiOrigin] });
    expect(corsOrigins('dev', '  ')).toEqual({ api: [], bucket: [apiOrigin] });
  });

  it('takes a configured list on any stage', () => {
    expect(
      corsOrigins('prod', 'https://a.example.com, http://localhost:5173/,https://a.example.com'),
    ).toEqual({
      api: ['https://a.example.com', 'http://localhost:5173'],
      bucket: ['https://a.example.com', 'http://localhost:5173', apiOrigin],
    });
    expect(corsOrigins('local', 'https://a.example.com')).toEqual({
      api: ['https://a.example.com'],
      bucket: ['https://a.example.com'],
    });
    expect(corsOrigins('prod', '*')).toEqual({ api: ['*'], bucket: ['*'] });
  });

  it.each([
    'a.example.com',
    'https://a.example.com/console',
    'ftp://a.example.com',
    '*, https://a.example.com',
    'https://',
  ])('refuses %j, naming the setting', (configured) => {
    expect(() => corsOrigins('prod', configured)).toThrow(/CORS_ALLOWED_ORIGINS/);
  });
});
