import { request as httpRequest } from 'node:http';
import { S3Client } from '@aws-sdk/client-s3';
import { FileStore } from '../../lib/storage/file-store.ts';
import { testStack } from './stack-env.ts';

let store: FileStore | undefined;

/** Direct access to the test bucket, to check what the service left in S3. */
export function testBucket(): FileStore {
  if (!store) {
    const stack = testStack();
    const client = new S3Client({ region: stack.region, endpoint: stack.s3Endpoint, forcePathStyle: true });
    store = new FileStore(client, client, stack.bucket);
  }
  return store;
}

/** PUTs bytes to a presigned part URL as a browser or the CLI would; returns S3's ETag. */
export async function putPart(url: string, body: Uint8Array): Promise<string> {
  const response = await fetch(url, { method: 'PUT', body });
  if (response.status !== 200)
    throw new Error(`part PUT failed: ${response.status} ${await response.text()}`);
  return response.headers.get('etag')!;
}

/**
 * A PUT on a connection of its own: S3 may answer (403, 400) before it has read the body, and a
 * connection left with unread body bytes must not carry the next request.
 */
export function putOnNewConnection(
  url: string,
  body: Uint8Array,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { method: 'PUT', agent: false, headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () =>
        resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString() }),
      );
      response.on('error', reject);
    });
    // The server may close the connection after an early answer, while the body is still going out.
    request.on('error', reject);
    request.end(body);
  });
}

/** The S3 error code in an XML error body. */
export const s3ErrorCode = (xml: string) => /<Code>([^<]+)<\/Code>/.exec(xml)?.[1];
