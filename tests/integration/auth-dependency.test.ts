import { createServer } from 'node:http';

/**
 * Every authenticated request reads the caller's token version from DynamoDB (once per
 * AUTH_USER_CACHE_SECONDS per container): when DynamoDB fails, that is a dependency failure, answered
 * 503 with Retry-After like any other, not a 401 and not a 500. (An unreachable endpoint is covered
 * over HTTP by tests/e2e/faults.test.ts: in jest's module sandbox a socket error from Node's own
 * realm reaches the SDK as a plain wrapper without its code.)
 */

// A DynamoDB that answers every call with 500 InternalServerError.
let calls = 0;
const failing = createServer((_request, response) => {
  calls++;
  response.writeHead(500, { 'content-type': 'application/x-amz-json-1.0' });
  response.end(
    JSON.stringify({ __type: 'com.amazonaws.dynamodb.v20120810#InternalServerError', message: 'down' }),
  );
});
const port = await new Promise<number>((resolve) =>
  failing.listen(0, '127.0.0.1', () => resolve((failing.address() as { port: number }).port)),
);
const saved = process.env.AWS_ENDPOINT_URL_DYNAMODB;
process.env.AWS_ENDPOINT_URL_DYNAMODB = `http://127.0.0.1:${port}`;
const { signingKeyRing } = await import('../../lib/auth/index.ts');
const { signToken } = await import('../../lib/auth/token-signer.ts');
const { config } = await import('../../lib/config.ts');
const { handler } = await import('../../functions/files-list.ts');
const { invoke } = await import('../support/events.ts');

afterAll(() => {
  process.env.AWS_ENDPOINT_URL_DYNAMODB = saved;
  failing.close();
});

it('answers 503 ServiceUnavailable with Retry-After when the token version cannot be read', async () => {
  const token = await signToken(await signingKeyRing(), 'someone', config().tokens, { ver: 1 });
  const response = await invoke(handler, { path: '/files', headers: { authorization: `Bearer ${token}` } });
  expect(response.status).toBe(503);
  expect(response.body.error).toMatchObject({ code: 'ServiceUnavailable' });
  expect(Number(response.headers['retry-after'])).toBeGreaterThan(0);
  expect(calls).toBeGreaterThan(0);
});
