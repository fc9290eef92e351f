import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { S3Client } from '@aws-sdk/client-s3';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { config } from '../config.ts';

/**
 * The one place AWS SDK clients are made. Each is created on first use and then reused for the life
 * of the container, so connections stay warm across invocations.
 */

let s3: S3Client | undefined;
let presigningS3: S3Client | undefined;
let documents: DynamoDBDocumentClient | undefined;

/**
 * Fail fast on a dead connection instead of hanging until the Lambda times out. Requests may take
 * longer: a server-side part copy of a large range legitimately runs for a while.
 */
const requestHandler = (requestTimeout: number) => ({ connectionTimeout: 3000, requestTimeout });

function s3Options() {
  const { region, endpoints } = config();
  // Emulators serve buckets by path, not by virtual host.
  return {
    region,
    endpoint: endpoints.s3,
    forcePathStyle: endpoints.s3 !== undefined,
    requestHandler: requestHandler(120_000),
  };
}

export function s3Client(): S3Client {
  s3 ??= new S3Client(s3Options());
  return s3;
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
      new DynamoDBClient({ region, endpoint: endpoints.dynamodb, requestHandler: requestHandler(10_000) }),
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
  ssm ??= new SSMClient({ region: config().region });
  const { Parameter } = await ssm.send(new GetParameterCommand({ Name: name, WithDecryption: true }));
  if (!Parameter?.Value) throw new Error(`SSM parameter ${name} is empty`);
  return Parameter.Value;
}

let lambda: LambdaClient | undefined;

/**
 * Starts a function asynchronously (InvocationType Event): Lambda queues the event and answers at
 * once. Locally the endpoint is serverless-offline's invoke API.
 */
export async function invokeAsync(functionName: string, payload: unknown): Promise<void> {
  const { region, endpoints } = config();
  lambda ??= new LambdaClient({ region, endpoint: endpoints.lambda, requestHandler: requestHandler(10_000) });
  const result = await lambda.send(
    new InvokeCommand({
      FunctionName: functionName,
      InvocationType: 'Event',
      Payload: new TextEncoder().encode(JSON.stringify(payload)),
    }),
  );
  if (result.StatusCode !== 202)
    throw new Error(`asynchronous invoke of ${functionName} answered ${result.StatusCode}`);
}
