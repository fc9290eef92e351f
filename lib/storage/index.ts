import { presigningS3Client, s3Client, transferS3Client } from '../aws/clients.ts';
import { config } from '../config.ts';
import { FileStore } from './file-store.ts';

let store: FileStore | undefined;
let transferStore: FileStore | undefined;

/** The service's file store, bound to the configured bucket; one per container. */
export function fileStore(): FileStore {
  store ??= new FileStore(s3Client(), presigningS3Client(), config().bucket);
  return store;
}

/**
 * The same bucket for the export worker's long calls (UploadPartCopy, UploadPart of whole parts):
 * its S3 client allows a long request (see CLIENT_TIMEOUTS in lib/aws/clients.ts). API routes use
 * fileStore(), whose calls are bounded to answer within API Gateway's 29 s.
 */
export function transferFileStore(): FileStore {
  transferStore ??= new FileStore(transferS3Client(), presigningS3Client(), config().bucket);
  return transferStore;
}
