/**
 * The console's checksums: each part's CRC32, computed in the page from the local file, which the
 * part's URL binds (the service signs it as an `x-amz-checksum-crc32` header: S3 refuses a body that
 * differs, 400 BadDigest), and the whole file's CRC32 combined from them (common/crc-combine.ts),
 * which S3 checks the object against at completion. So a byte changed anywhere between the disk and
 * S3 fails the upload instead of being stored: a proxy or network that corrupts a body, a file edited
 * while it uploads, a part S3 holds from an earlier page that is not this file's.
 *
 * CRC32 because S3 combines it into a full-object checksum (as the CLI's default) and hash-wasm runs
 * it at memory speed; MD5 (part-match.ts) only compares, since S3 cannot check a whole file by it.
 */
import { createCRC32, type IHasher } from 'hash-wasm';
import type { CrcAlgorithm } from '../common/checksum-model.ts';
import { crcToBase64 } from '../common/crc-combine.ts';

/** What the console asks every upload it creates to be checked with. */
export const CONSOLE_CHECKSUM_ALGORITHM = 'CRC32' satisfies CrcAlgorithm;
/** The one algorithm computed here (crc32Base64). */
export type ComputedChecksumAlgorithm = typeof CONSOLE_CHECKSUM_ALGORITHM;

/** Feeds a blob to a hash-wasm hasher a slice at a time (a part may be 64 MiB); gives its hex digest. */
export async function hexDigestOf(hasher: IHasher, blob: Blob): Promise<string> {
  hasher.init();
  const reader = blob.stream().getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    hasher.update(value);
  }
  return hasher.digest('hex');
}

/** A blob's CRC32 in base64, as S3 writes checksums. */
export async function crc32Base64(blob: Blob): Promise<string> {
  return crcToBase64(BigInt(`0x${await hexDigestOf(await createCRC32(), blob)}`), 4);
}
