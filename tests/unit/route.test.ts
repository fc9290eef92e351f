import { jest } from '@jest/globals';
import { badRequest } from '../../lib/http/errors.ts';
import { httpRoute } from '../../lib/http/route.ts';
import { logger } from '../../lib/log.ts';
import * as z from '../../lib/schema.ts';
import { invoke } from '../support/events.ts';

const echo = httpRoute(
  {
    auth: 'none',
    body: z.object({ name: z.string().check(z.minLength(1)), size: z.number().check(z.int(), z.positive()) }),
    query: z.object({ verbose: z.optional(z.enum(['yes', 'no'])) }),
  },
  async ({ body, query, requestId }) => ({ status: 201, body: { ...body, ...query, requestId } }),
);

const failing = (error: unknown) =>
  httpRoute({ auth: 'none' }, async () => {
    throw error;
  });

const expectErrorShape = (body: any, code: string) => {
  expect(Object.keys(body)).toEqual(['error']);
  expect(body.error.code).toBe(code);
  expect(typeof body.error.message).toBe('string');
  expect(body.error.message.length).toBeGreaterThan(0);
  expect(body.error.requestId).toMatch(/^req-/);
};

describe('the middy route stack', () => {
  beforeAll(() => {
    // Keep test output readable; the logger's own behaviour is not under test here.
    jest.spyOn(logger, 'error').mockImplementation(() => {});
    jest.spyOn(logger, 'info').mockImplementation(() => {});
  });

  it('passes parsed, validated input to the handler and answers JSON', async () => {
    const response = await invoke(echo, {
      method: 'POST',
      body: { name: 'a.txt', size: 3 },
      query: { verbose: 'yes' },
    });
    expect(response.status).toBe(201);
    expect(response.headers['content-type']).toBe('application/json');
    expect(response.body).toMatchObject({ name: 'a.txt', size: 3, verbose: 'yes' });
    expect(response.headers['x-request-id']).toBe(response.body.requestId);
  });

  it('answers 400 MalformedJson for a body that is not JSON', async () => {
    const response = await invoke(echo, {
      method: 'POST',
      body: '{"name": "a.txt",',
      headers: { 'content-type': 'application/json' },
    });
    expect(response.status).toBe(400);
    expectErrorShape(response.body, 'MalformedJson');
  });

  it('answers 400 for a JSON body that tries prototype pollution', async () => {
    const response = await invoke(echo, {
      method: 'POST',
      body: '{"name":"a","size":1,"__proto__":{"admin":true}}',
      headers: { 'content-type': 'application/json' },
    });
    expect(response.status).toBe(400);
    // Named for what it is: the JSON is valid, the key is refused.
    expectErrorShape(response.body, 'ForbiddenJsonKey');
  });

  it('answers 415 when the body is not declared as JSON', async () => {
    const response = await invoke(echo, {
      method: 'POST',
      body: 'name=a.txt',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(response.status).toBe(415);
    expectErrorShape(response.body, 'UnsupportedMediaType');
  });

  it('answers 400 ValidationError naming every bad field', async () => {
    const response = await invoke(echo, {
      method: 'POST',
      body: { name: '', size: 'big' },
      query: { verbose: 'maybe' },
    });
    expect(response.status).toBe(400);
    expectErrorShape(response.body, 'ValidationError');
    const paths = response.body.error.details.issues.map((issue: { path: string }) => issue.path);
    expect(paths).toEqual(expect.arrayContaining(['body.name', 'body.size', 'query.verbose']));
    expect(response.body.error.message).toContain('body.name');
  });

  it('answers a JSON array or scalar body with a validation error, not a crash', async () => {
    for (const body of ['[]', '42', 'null', '"text"']) {
      const response = await invoke(echo, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json' },
      });
      expect(response.status).toBe(400);
      expectErrorShape(response.body, 'ValidationError');
    }
  });

  it('answers a deliberate HttpError with its status, code and headers', async () => {
    const response = await invoke(failing(badRequest('BadName', 'filename must not contain "/"')));
    expect(response.status).toBe(400);
    expectErrorShape(response.body, 'BadName');
    expect(response.body.error.message).toBe('filename must not contain "/"');
  });

  it('answers an unexpected error with a bare 500: no stack, no internal message', async () => {
    const secret = new Error('connect ECONNREFUSED 10.0.0.7:5432 password=hunter2');
    const response = await invoke(failing(secret));
    expect(response.status).toBe(500);
    expectErrorShape(response.body, 'InternalError');
    const text = JSON.stringify(response.body);
    expect(text).not.toContain('ECONNREFUSED');
    expect(text).not.toContain('hunter2');
    expect(text).not.toMatch(/at .*\.ts:\d+/);
    expect(logger.error).toHaveBeenCalled();
  });

  it('answers thrown non-Error values as 500 too', async () => {
    const response = await invoke(failing('a string'));
    expect(response.status).toBe(500);
    expectErrorShape(response.body, 'InternalError');
  });
});
