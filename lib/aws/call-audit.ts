import { AsyncLocalStorage } from 'node:async_hooks';
import { appendFileSync } from 'node:fs';
import type { MetadataBearer, MiddlewareStack } from '@smithy/types';

/**
 * A record of the AWS calls each function makes, for the test run's IAM check
 * (tests/support/iam-audit.ts): every call a function made in the whole suite must be allowed by
 * the role serverless.yml gives that function. No emulator checks IAM, so without this a missing or
 * too narrow grant shows only after a deploy, as AccessDenied.
 *
 * On only when AWS_CALL_AUDIT_FILE is set (the test stack sets it for its handlers) and the code
 * runs as a function (AWS_LAMBDA_FUNCTION_NAME, or `auditedFunction` below); both are read per call,
 * since serverless-offline run in process shares one environment among functions. Deployed, no client
 * gets the middleware. Each distinct call is appended once per process, as a JSON line.
 */

/** One AWS call as the IAM check reads it: who made it, and the command's input. */
export interface AuditedCall {
  /** AWS_LAMBDA_FUNCTION_NAME: `<service>-<stage>-<function key>`. */
  function: string;
  /** The SDK client's service (`S3`, `DynamoDB`, `Lambda`, `SSM`). */
  service: string;
  /** The operation (`GetObject`, `TransactWriteItems`…). */
  operation: string;
  /** Set when nothing was sent: a presigned URL, which the client then uses with this function's rights. */
  presigned?: boolean;
  /** The command's input (DynamoDB's marshalled), without bodies and payloads. */
  input: unknown;
}

/**
 * The function that in-process code stands for (tests run the janitor and the export worker in
 * their own process: tests/support/as-function.ts). Per async context, so that two such runs at once
 * are told apart; the environment's name, one per process, could not.
 */
export const auditedFunction = new AsyncLocalStorage<string>();

const written = new Set<string>();
/** Bounds the memory the de-duplication takes in a long test process. */
const MAX_REMEMBERED = 50_000;

const auditFile = () => process.env.AWS_CALL_AUDIT_FILE;

/** Bytes say nothing about rights; they would only fill the file. */
const withoutBytes = (key: string, value: unknown) =>
  key === 'Body' || key === 'Payload' || value instanceof Uint8Array ? undefined : value;

function record(call: Omit<AuditedCall, 'function'>) {
  const file = auditFile();
  const fn = auditedFunction.getStore() ?? process.env.AWS_LAMBDA_FUNCTION_NAME;
  if (!file || !fn) return;
  const line = JSON.stringify({ function: fn, ...call }, withoutBytes);
  if (written.has(line)) return;
  if (written.size >= MAX_REMEMBERED) written.clear();
  written.add(line);
  appendFileSync(file, `${line}\n`);
}

/**
 * Records every command sent through `client` (at the build step, so DynamoDB inputs are already
 * marshalled and retries are one call). A client made while the audit is off stays untouched.
 */
export function auditCalls<Client extends { middlewareStack: MiddlewareStack<object, MetadataBearer> }>(
  client: Client,
): Client {
  if (!auditFile()) return client;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      record({
        service: String(context.clientName ?? '').replace(/Client$/, ''),
        operation: String(context.commandName ?? '').replace(/Command$/, ''),
        input: args.input,
      });
      return next(args);
    },
    { step: 'build', name: 'auditCalls' },
  );
  return client;
}

/** Records a presigned S3 URL: whoever uses it acts with the signing function's rights. */
export function auditPresigned(operation: 'UploadPart' | 'GetObject', Bucket: string, Key: string) {
  record({ service: 'S3', operation, presigned: true, input: { Bucket, Key } });
}
