import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import type { ServiceInputTypes, ServiceOutputTypes } from '@aws-sdk/client-s3';
import { S3Client } from '@aws-sdk/client-s3';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { InitializeMiddleware } from '@smithy/types';
import { config } from '../config.ts';
import { auditCalls } from './call-audit.ts';

/**
 * The one place AWS SDK clients are made. Each is created on first use and then reused for the life
 * of the container, so connections stay warm across invocations.
 */

let s3: S3Client | undefined;
let transferS3: S3Client | undefined;
let presigningS3: S3Client | undefined;
let completingS3: S3Client | undefined;
let documents: DynamoDBDocumentClient | undefined;

/**
 * Timeouts and retries, chosen so that an API route answers well inside API Gateway's 29 s even when
 * a dependency accepts connections and never answers (a "blackhole"), instead of hanging until the
 * Lambda is killed (which API Gateway turns into a bare 503 and serverless-offline into a 200 with
 * `errorMessage`). A dependency error that ends is answered 503 ServiceUnavailable with Retry-After
 * (lib/http/dependency-errors.ts).
 *
 * - `connectionTimeout`: TCP connect. Inside an AWS region this takes milliseconds; 2 s means the
 *   endpoint is unreachable (1 s was seen to expire against a local emulator on a loaded 2-core
 *   machine, with 200 requests opening connections at once).
 * - `requestTimeout` with `throwOnRequestTimeout: true`: from sending the request to the response
 *   headers. In @smithy/node-http-handler 4.x, `requestTimeout` alone only logs a warning; the flag
 *   makes it a TimeoutError that the SDK retries. (Older handlers treated `requestTimeout` as a
 *   socket idle timeout that threw; ignoring the unknown flag, they stay bounded too.)
 * - `socketTimeout`: idle time on the socket, which also bounds a response body that stops arriving
 *   after its headers.
 * - `maxAttempts` in the SDK's `standard` retry mode (exponential backoff with jitter, a retry quota
 *   per client, throttling backed off from 500 ms): timeouts, resets, refusals, 5xx and throttling
 *   are retried.
 *
 * Worst case per call with a blackholed or unreachable dependency: attempts × the longer of the
 * connect and request timeouts, plus backoff.
 * - DynamoDB (single-digit ms p99): 2 s connect, 2 s request, 3 attempts: about 6.3 s.
 * - S3 control calls (Head, List, Create/Complete/Abort multipart, PutObject of a form file of at most
 *   a few MiB, Delete): 2 s connect, 3 s request and idle, 3 attempts: about 9.3 s.
 * - S3 CompleteMultipartUpload from a route: one attempt, 20 s request and idle (completingS3Client).
 * - SSM (signing keys, once per container) and the asynchronous Lambda invoke: as S3.
 * A route fails at its first failing call, so each stays under these figures plus its own work.
 * Presigning does no I/O.
 *
 * The export worker (900 s Lambda) copies and uploads whole parts: server-side UploadPartCopy of
 * up to hundreds of MiB, UploadPart of a compressed part. Those need `transferS3Client()`, whose
 * request timeout (120 s) stays under the worker's lease, so a hung copy is retried before the
 * janitor would consider the worker dead.
 */
export const CLIENT_TIMEOUTS = {
  dynamodb: { connectionTimeout: 2000, requestTimeout: 2000, socketTimeout: 2000, maxAttempts: 3 },
  s3: { connectionTimeout: 2000, requestTimeout: 3000, socketTimeout: 3000, maxAttempts: 3 },
  s3Transfer: { connectionTimeout: 2000, requestTimeout: 120_000, socketTimeout: 0, maxAttempts: 3 },
  s3Complete: { connectionTimeout: 2000, requestTimeout: 20_000, socketTimeout: 20_000, maxAttempts: 1 },
  ssm: { connectionTimeout: 2000, requestTimeout: 3000, socketTimeout: 3000, maxAttempts: 3 },
  lambda: { connectionTimeout: 2000, requestTimeout: 3000, socketTimeout: 3000, maxAttempts: 3 },
} as const;

type Timeouts = (typeof CLIENT_TIMEOUTS)[keyof typeof CLIENT_TIMEOUTS];

/** The client options that carry one entry of CLIENT_TIMEOUTS. */
export function clientTimeouts({ connectionTimeout, requestTimeout, socketTimeout, maxAttempts }: Timeouts) {
  return {
    maxAttempts,
    retryMode: 'standard',
    requestHandler: {
      connectionTimeout,
      requestTimeout,
      throwOnRequestTimeout: true,
      ...(socketTimeout ? { socketTimeout } : {}),
    },
  };
}

const ignore = () => {};

const guardStream = (body: unknown) => {
  if (body && typeof (body as { on?: unknown }).on === 'function')
    (body as NodeJS.ReadableStream).on('error', ignore);
};

/**
 * Gives every streamed response body (S3 GetObject's) an 'error' listener before the caller gets
 * it. When the connection breaks before the body is read, Node's HTTP client destroys it with
 * "aborted", and the SDK's checksum-checking wrapper around it fails too; with no listener on the
 * wrapper that is an uncaught exception, which kills the whole invocation (and every handler of a
 * serverless-offline): the chaos soak met it in the export worker. The reader still gets the error
 * from the stream it reads. (The SDK does the same in lib-storage's downloads, aws-sdk-js-v3 PR
 * 8165.) tests/integration/response-streams.test.ts.
 */
export function guardResponseStreams(client: S3Client): S3Client {
  const guard: InitializeMiddleware<ServiceInputTypes, ServiceOutputTypes> = (next) => async (args) => {
    const result = await next(args);
    guardStream((result.output as { Body?: unknown }).Body);
    return result;
  };
  // Outermost, so the listener is on the stream the caller gets, whatever the SDK wrapped it in.
  client.middlewareStack.add(guard, { step: 'initialize', priority: 'high', name: 'guardResponseStreams' });
  return client;
}

function s3Options(timeouts: Timeouts = CLIENT_TIMEOUTS.s3) {
  const { region, endpoints } = config();
  // Emulators serve buckets by path, not by virtual host.
  return {
    region,
    endpoint: endpoints.s3,
    forcePathStyle: endpoints.s3 !== undefined,
    ...clientTimeouts(timeouts),
  };
}

/** S3 for the API's control calls: bounded so that a route answers within its budget. */
export function s3Client(): S3Client {
  s3 ??= auditCalls(guardResponseStreams(new S3Client(s3Options())));
  return s3;
}

/**
 * S3 for the export worker's long calls (UploadPartCopy of a large range, UploadPart of a whole
 * part): a long request timeout that still throws. Not for API routes.
 */
export function transferS3Client(): S3Client {
  transferS3 ??= auditCalls(guardResponseStreams(new S3Client(s3Options(CLIENT_TIMEOUTS.s3Transfer))));
  return transferS3;
}

/**
 * CompleteMultipartUpload from an API route: S3 assembles the object before it answers (AWS sends
 * its 200 at once and then spaces; moto and LocalStack stay silent until the end: 4-10 s for 1 GiB
 * on a loaded 2-core machine). Under the s3 client's 3 s the call timed out, the SDK's retry met an
 * upload in the middle of completing (moto: a 500), and the route answered 503 with Retry-After 5:
 * every large upload paid a failed call and 5 s. One attempt of up to 20 s keeps the route inside
 * API Gateway's 29 s (its other calls come first and are bounded as above); a failure is a 503 that
 * the client's idempotent completion repeats.
 */
export function completingS3Client(): S3Client {
  completingS3 ??= auditCalls(guardResponseStreams(new S3Client(s3Options(CLIENT_TIMEOUTS.s3Complete))));
  return completingS3;
}

/**
 * Used only to presign. With the SDK's default checksum mode a presigned UploadPart URL carries the
 * CRC32 of an empty body, which real S3 rejects once the client sends real bytes.
 */
export function presigningS3Client(): S3Client {
  presigningS3 ??= new S3Client({ ...s3Options(), requestChecksumCalculation: 'WHEN_REQUIRED' });
  return presigningS3;
}

export function documentClient(): DynamoDBDocumentClient {
  if (!documents) {
    const { region, endpoints } = config();
    documents = DynamoDBDocumentClient.from(
      auditCalls(
        new DynamoDBClient({
          region,
          endpoint: endpoints.dynamodb,
          ...clientTimeouts(CLIENT_TIMEOUTS.dynamodb),
        }),
      ),
      {
        marshallOptions: { removeUndefinedValues: true },
      },
    );
  }
  return documents;
}

let ssm: SSMClient | undefined;

/** Reads a SecureString parameter, decrypted. */
export async function readSecureParameter(name: string): Promise<string> {
  ssm ??= auditCalls(new SSMClient({ region: config().region, ...clientTimeouts(CLIENT_TIMEOUTS.ssm) }));
  const { Parameter } = await ssm.send(new GetParameterCommand({ Name: name, WithDecryption: true }));
  if (!Parameter?.Value) throw new Error(`SSM parameter ${name} is empty`);
  return Parameter.Value;
}

let lambda: LambdaClient | undefined;

export function lambdaClient(): LambdaClient {
  const { region, endpoints } = config();
  lambda ??= auditCalls(
    new LambdaClient({
      region,
      endpoint: endpoints.lambda,
      ...clientTimeouts(CLIENT_TIMEOUTS.lambda),
    }),
  );
  return lambda;
}

/**
 * Starts a function asynchronously (InvocationType Event): Lambda queues the event and answers at
 * once. Locally the endpoint is serverless-offline's invoke API.
 */
export async function invokeAsync(functionName: string, payload: unknown): Promise<void> {
  const result = await lambdaClient().send(
    new InvokeCommand({
      FunctionName: functionName,
      InvocationType: 'Event',
      Payload: new TextEncoder().encode(JSON.stringify(payload)),
    }),
  );
  if (result.StatusCode !== 202)
    throw new Error(`asynchronous invoke of ${functionName} answered ${result.StatusCode}`);
}
