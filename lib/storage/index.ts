import { presigningS3Client, s3Client } from '../aws/clients.ts';
import { config } from '../config.ts';
import { FileStore } from './file-store.ts';

let store: FileStore | undefined;

/** The service's file store, bound to the configured bucket; one per container. */
export function fileStore(): FileStore {
  store ??= new FileStore(s3Client(), presigningS3Client(), config().bucket);
  return store;
}
