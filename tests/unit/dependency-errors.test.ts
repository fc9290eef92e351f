import { request } from 'node:http';
import { createServer } from 'node:net';
import {
  ConditionalCheckFailedException,
  InternalServerError,
  ProvisionedThroughputExceededException,
  RequestLimitExceeded,
  ThrottlingException,
  TransactionCanceledException,
} from '@aws-sdk/client-dynamodb';
import { TooManyRequestsException } from '@aws-sdk/client-lambda';
import { NoSuchKey, S3ServiceException } from '@aws-sdk/client-s3';
import { dependencyFailure, dependencyFailureMessage } from '../../lib/http/dependency-errors.ts';
import { errorResponse } from '../../lib/http/error-response.ts';
import { HttpError } from '../../lib/http/errors.ts';

const $metadata = (httpStatusCode: number) => ({ httpStatusCode, requestId: 'r', attempts: 3 });

/** The error Node's http client really gives for `url` (a refused port, a reset connection…). */
function httpError(port: number): Promise<Error> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent: false }, (response) => {
      response.resume();
      response.on('error', resolve);
    });
    req.on('error', resolve);
    req.end();
  });
}

/** A port that answers every connection with a reset, or with nothing, or one nobody listens on. */
async function server(onConnection: (socket: import('node:net').Socket) => void) {
  const listener = createServer(onConnection);
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const port = (listener.address() as { port: number }).port;
  return { port, close: () => new Promise<void>((resolve) => listener.close(() => resolve())) };
}

describe('dependencyFailure', () => {
  it.each(
    [
      [
        'DynamoDB ProvisionedThroughputExceededException',
        new ProvisionedThroughputExceededException({ message: 'x', $metadata: $metadata(400) }),
        'throttled',
      ],
      [
        'DynamoDB ThrottlingException',
        new ThrottlingException({ message: 'x', $metadata: $metadata(400) }),
        'throttled',
      ],
      [
        'DynamoDB RequestLimitExceeded',
        new RequestLimitExceeded({ message: 'x', $metadata: $metadata(400) }),
        'throttled',
      ],
      [
        'DynamoDB InternalServerError',
        new InternalServerError({ message: 'x', $metadata: $metadata(500) }),
        'unavailable',
      ],
      [
        'S3 SlowDown',
        new S3ServiceException({
          name: 'SlowDown',
          $fault: 'server',
          message: 'x',
          $metadata: $metadata(503),
        }),
        'throttled',
      ],
      [
        'S3 InternalError',
        new S3ServiceException({
          name: 'InternalError',
          $fault: 'server',
          message: 'x',
          $metadata: $metadata(500),
        }),
        'unavailable',
      ],
      [
        'S3 ServiceUnavailable',
        new S3ServiceException({
          name: 'ServiceUnavailable',
          $fault: 'server',
          message: 'x',
          $metadata: $metadata(503),
        }),
        'unavailable',
      ],
      [
        'S3 RequestTimeout',
        new S3ServiceException({
          name: 'RequestTimeout',
          $fault: 'client',
          message: 'x',
          $metadata: $metadata(400),
        }),
        'timeout',
      ],
      [
        'an unmodelled 502 from a proxy in front of the service',
        new S3ServiceException({
          name: 'Unknown',
          $fault: 'server',
          message: 'x',
          $metadata: $metadata(502),
        }),
        'unavailable',
      ],
      [
        'Lambda TooManyRequestsException',
        new TooManyRequestsException({ message: 'x', $metadata: $metadata(429) }),
        'throttled',
      ],
      [
        'the SDK request timeout',
        Object.assign(new Error('a request has exceeded the configured 2000 ms requestTimeout'), {
          name: 'TimeoutError',
          code: 'ETIMEDOUT',
        }),
        'timeout',
      ],
      [
        'the SDK connection timeout',
        Object.assign(new Error('did not establish a connection'), { name: 'TimeoutError' }),
        'timeout',
      ],
      [
        'a refusal wrapped as a cause',
        new Error('could not read the job', {
          cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
        }),
        'unreachable',
      ],
      [
        'every address of a host refused (AggregateError)',
        Object.assign(
          new AggregateError([
            Object.assign(new Error('connect ECONNREFUSED ::1:9'), { code: 'ECONNREFUSED' }),
          ]),
          { code: 'ECONNREFUSED' },
        ),
        'unreachable',
      ],
      [
        'a DNS failure',
        Object.assign(new Error('getaddrinfo EAI_AGAIN'), { code: 'EAI_AGAIN' }),
        'unreachable',
      ],
    ].map(([what, error, kind]) => [what, kind, error] as const),
  )('%s is a dependency failure: %s', (_, kind, error) => {
    const failure = dependencyFailure(error);
    expect(failure?.kind).toBe(kind);
    expect(failure!.retryAfterSeconds).toBeGreaterThanOrEqual(1);
  });

  it.each([
    ['a bug', new TypeError("Cannot read properties of undefined (reading 'x')")],
    [
      'a lost conditional write',
      new ConditionalCheckFailedException({ message: 'x', $metadata: $metadata(400) }),
    ],
    [
      'a cancelled transaction',
      new TransactionCanceledException({ message: 'x', $metadata: $metadata(400) }),
    ],
    ['a missing S3 key', new NoSuchKey({ message: 'x', $metadata: $metadata(404) })],
    [
      'access denied',
      new S3ServiceException({
        name: 'AccessDenied',
        $fault: 'client',
        message: 'x',
        $metadata: $metadata(403),
      }),
    ],
    ['an abort', Object.assign(new Error('aborted by the caller'), { name: 'AbortError' })],
    ['not an error at all', 'oops'],
    ['nothing', undefined],
  ])('%s is not', (_, error) => {
    expect(dependencyFailure(error)).toBeUndefined();
  });

  it('survives a cause cycle', () => {
    const a = new Error('a');
    const b = new Error('b', { cause: a });
    (a as { cause?: unknown }).cause = b;
    expect(dependencyFailure(a)).toBeUndefined();
  });

  it('classifies the errors real sockets give: refused, reset, cut mid-answer', async () => {
    const closed = await server(() => {});
    await closed.close();
    expect(dependencyFailure(await httpError(closed.port))?.kind).toBe('unreachable');

    const resetting = await server((socket) => socket.resetAndDestroy());
    expect(dependencyFailure(await httpError(resetting.port))?.kind).toBe('unreachable');
    await resetting.close();

    const cutting = await server((socket) => {
      socket.once('data', () => {
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"Item":', () =>
          socket.resetAndDestroy(),
        );
      });
    });
    expect(dependencyFailure(await httpError(cutting.port))?.kind).toBe('unreachable');
    await cutting.close();
  });

  it('says what happened without naming hosts', () => {
    const message = dependencyFailureMessage({ kind: 'timeout', retryAfterSeconds: 5 });
    expect(message).toMatch(/did not answer in time; try again in 5 s/);
  });
});

describe('errorResponse for a dependency failure', () => {
  it('answers 503 ServiceUnavailable with Retry-After and no internals', () => {
    const error = Object.assign(new Error('connect ECONNREFUSED 10.0.0.7:443'), { code: 'ECONNREFUSED' });
    const response = errorResponse(error, 'req-1');
    expect(response.statusCode).toBe(503);
    expect(response.headers).toMatchObject({ 'retry-after': '5', 'content-type': 'application/json' });
    const body = JSON.parse(response.body as string);
    expect(body).toEqual({
      error: { code: 'ServiceUnavailable', message: expect.any(String), requestId: 'req-1' },
    });
    expect(response.body).not.toMatch(/10\.0\.0\.7|ECONNREFUSED|stack/i);
  });

  it('throttling asks for a shorter wait', () => {
    const response = errorResponse(
      new ProvisionedThroughputExceededException({ message: 'x', $metadata: $metadata(400) }),
      'req-2',
    );
    expect(response.statusCode).toBe(503);
    expect(response.headers?.['retry-after']).toBe('2');
  });

  it('leaves errors the code answers on purpose, and bugs, as they were', () => {
    expect(errorResponse(new HttpError(409, 'Conflict', 'no'), 'r').statusCode).toBe(409);
    const bug = errorResponse(new TypeError('x is undefined'), 'r');
    expect(bug.statusCode).toBe(500);
    expect(JSON.parse(bug.body as string).error.code).toBe('InternalError');
  });
});
