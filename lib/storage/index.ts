import { completingS3Client, presigningS3Client, s3Client, transferS3Client } from '../aws/clients.ts';
import { config } from '../config.ts';
import { logger } from '../log.ts';
import { FileStore } from './file-store.ts';
import { PartUrlSigner } from './part-signer.ts';

let store: FileStore | undefined;
let transferStore: FileStore | undefined;
let partSigner: PartUrlSigner | undefined;

/** A URL without what must not reach a log: the signature, the access key and the session token. */
const redacted = (url: string) =>
  url.replace(/(X-Amz-(?:Signature|Credential|Security-Token))=[^&]*/g, '$1=…');

/** Part URLs, signed directly; should the SDK ever sign differently, it signs them itself and this says so. */
function partUrlSigner(): PartUrlSigner {
  partSigner ??= new PartUrlSigner(presigningS3Client(), {
    onMismatch: (bucket, sdk, direct) =>
      logger.warn('part URLs are signed through the SDK: the direct signer does not reproduce its URL', {
        bucket,
        sdk: redacted(sdk),
        direct: redacted(direct),
      }),
  });
  return partSigner;
}

/** The service's file store, bound to the configured bucket; one per container. */
export function fileStore(): FileStore {
  store ??= new FileStore(s3Client(), presigningS3Client(), config().bucket, {
    partSigner: partUrlSigner(),
    // Completing a large upload takes S3 longer than the other calls' bound (see completingS3Client).
    completer: completingS3Client(),
  });
  return store;
}

/**
 * The same bucket for the export worker's long calls (UploadPartCopy, UploadPart of whole parts):
 * its S3 client allows a long request (see CLIENT_TIMEOUTS in lib/aws/clients.ts). API routes use
 * fileStore(), whose calls are bounded to answer within API Gateway's 29 s.
 */
export function transferFileStore(): FileStore {
  transferStore ??= new FileStore(transferS3Client(), presigningS3Client(), config().bucket, {
    partSigner: partUrlSigner(),
  });
  return transferStore;
}
