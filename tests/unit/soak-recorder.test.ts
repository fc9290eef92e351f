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
});
