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
