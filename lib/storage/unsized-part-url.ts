import { UploadPartCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { presigningS3Client } from '../aws/clients.ts';
import { config } from '../config.ts';

/**
 * A presigned UploadPart URL that does NOT sign `content-length`: S3 takes any body up to its own
 * 5 GiB part limit. Only for uploads whose part sizes the client chooses and does not tell (the
 * Companion routes, lib/companion/): every other part URL binds its exact planned size
 * (FileStore.presignUploadParts). What bounds such an upload instead is said in lib/companion/companion.ts.
 */
export function presignUnsizedPart(
  key: string,
  uploadId: string,
  partNumber: number,
  expiresInSeconds: number,
): Promise<string> {
  return getSignedUrl(
    presigningS3Client(),
    new UploadPartCommand({ Bucket: config().bucket, Key: key, UploadId: uploadId, PartNumber: partNumber }),
    { expiresIn: expiresInSeconds },
  );
}
