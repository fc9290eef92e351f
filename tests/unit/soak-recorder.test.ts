import { createServer, type Server } from 'node:http';
import { errorResponse } from '../../lib/http/error-response.ts';
import { Recorder } from '../../scripts/soak/recorder.ts';

// The soak counts a dependency's 503 apart from the service's own 5xx. These answers are built by
// the service's real error mapper, so a change to its 503 shape shows up here, not as a soak flake.
const answers = {
  '/dependency-timeout': errorResponse(
    Object.assign(new Error('socket timed out'), { name: 'TimeoutError' }),
    'req-timeout',
  ),
  '/bug': errorResponse(new TypeError('cannot read properties of undefined'), 'req-bug'),
  '/no-retry-after': { ...errorResponse(new TypeError('x'), 'req-503'), statusCode: 503 },
  '/refused': {
    statusCode: 401,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ error: { code: 'Unauthorized', message: 'the token has been revoked' } }),
  },
} satisfies Record<string, ReturnType<typeof errorResponse>>;

let server: Server;
let base: string;

beforeAll(async () => {
  server = createServer((request, response) => {
    const answer = (answers as Record<string, ReturnType<typeof errorResponse>>)[request.url ?? ''] ?? {
      statusCode: 200,
      headers: {},
      body: '{}',
    };
    response.writeHead(answer.statusCode ?? 200, answer.headers as Record<string, string>);
    response.end(answer.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

async function record(...paths: string[]) {
  const recorder = new Recorder(base);
  for (const path of paths) await (await recorder.fetch(`${base}${path}`, { method: 'POST' })).text();
  return recorder;
}

describe('soak Recorder', () => {
  it("counts the service's 503 with Retry-After for a timed-out dependency apart from its own 5xx", async () => {
    expect(answers['/dependency-timeout'].statusCode).toBe(503);
    const recorder = await record('/dependency-timeout', '/bug', '/ok', '/ok');
    expect(recorder.dependencyUnavailable().map((error) => error.call)).toEqual(['POST /dependency-timeout']);
    expect(recorder.dependencyUnavailable()[0]?.retryAfter).toMatch(/^\d+$/);
    expect(recorder.apiServerErrors().map((error) => error.call)).toEqual(['POST /bug']);
    expect(recorder.apiAnswers()).toBe(4);
  });

  it('a 503 without Retry-After is a server error like any other', async () => {
    const recorder = await record('/no-retry-after');
    expect(recorder.dependencyUnavailable()).toEqual([]);
    expect(recorder.apiServerErrors()).toHaveLength(1);
  });

  it('holds a 401 against the service only for a live token: not one expired, signed out, or unknown', async () => {
    const tokenUntil = (exp: number, jti: string) =>
      `e30.${Buffer.from(JSON.stringify({ sub: 'ann', exp, jti })).toString('base64url')}.sig`;
    const now = Math.floor(Date.now() / 1000);
    const [live, expired, ended, unknown] = [
      tokenUntil(now + 60, 'live'),
      tokenUntil(now - 5, 'expired'),
      tokenUntil(now + 60, 'ended'),
      tokenUntil(now + 60, 'unknown'),
    ];
    const recorder = new Recorder(base);
    for (const token of [live, expired, ended]) recorder.owners.set(token!, 'ann');
    recorder.endTokens([ended!]);
    for (const token of [live, expired, ended, unknown]) {
      const answer = await recorder.fetch(`${base}/refused`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(answer.status).toBe(401);
    }
    expect(recorder.refusedTokens).toEqual([
      {
        at: expect.any(String),
        call: 'GET /refused',
        username: 'ann',
        message: 'the token has been revoked',
      },
    ]);
  });
});
