import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { Crc32c, Crc64Nvme } from '@aws-sdk/checksums/crc';
import { CHECKSUM_BYTES, type ChecksumAlgorithm } from './checksum-model.ts';
import { crcToBase64 } from './crc-combine.ts';

/**
 * S3's additional checksums as the service, the client library and the export worker compute them
 * (Node: zlib's CRC32, the SDK's CRC32C and CRC64NVME, node:crypto's SHA-256). The S3 model and the
 * algorithms' facts are common/checksum-model.ts; combining CRCs, common/crc-combine.ts. Both are
 * re-exported here.
 */
export * from './checksum-model.ts';
export * from './crc-combine.ts';

/** The base64 text of exactly CHECKSUM_BYTES[algorithm] bytes, in its one canonical spelling. */
export function isChecksumValue(algorithm: ChecksumAlgorithm, value: string): boolean {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) return false;
  const bytes = Buffer.from(value, 'base64');
  return bytes.length === CHECKSUM_BYTES[algorithm] && bytes.toString('base64') === value;
}

/** What a checksum value should look like, for error messages. */
export const checksumValueHint = (algorithm: ChecksumAlgorithm): string =>
  `the base64 of the ${CHECKSUM_BYTES[algorithm]}-byte ${algorithm} (${Buffer.alloc(CHECKSUM_BYTES[algorithm]).toString('base64').length} characters)`;

/** A running checksum over bytes fed in order. */
export interface ChecksumHasher {
  update(bytes: Uint8Array): void;
  /** The checksum of everything fed so far, in base64. */
  digest(): Promise<string>;
}

class Crc32Hasher implements ChecksumHasher {
  private crc = 0;
  update(bytes: Uint8Array) {
    this.crc = crc32(bytes, this.crc);
  }
  async digest() {
    return crcToBase64(BigInt(this.crc), 4);
  }
}

/** The SDK's JavaScript CRC32C and CRC64NVME (Node has no native code for either). */
class SdkCrcHasher implements ChecksumHasher {
  private readonly crc: { update(data: Uint8Array): void; digest(): Promise<Uint8Array> };
  constructor(algorithm: 'CRC32C' | 'CRC64NVME') {
    this.crc = algorithm === 'CRC32C' ? new Crc32c() : new Crc64Nvme();
  }
  update(bytes: Uint8Array) {
    this.crc.update(bytes);
  }
  async digest() {
    return Buffer.from(await this.crc.digest()).toString('base64');
  }
}

class Sha256Hasher implements ChecksumHasher {
  private readonly hash = createHash('sha256');
  update(bytes: Uint8Array) {
    this.hash.update(bytes);
  }
  async digest() {
    return this.hash.copy().digest('base64');
  }
}

export function checksumHasher(algorithm: ChecksumAlgorithm): ChecksumHasher {
  switch (algorithm) {
    case 'CRC32':
      return new Crc32Hasher();
    case 'CRC32C':
    case 'CRC64NVME':
      return new SdkCrcHasher(algorithm);
    case 'SHA256':
      return new Sha256Hasher();
  }
}

/** The checksum of one buffer, in base64. */
export function checksumOf(algorithm: ChecksumAlgorithm, bytes: Uint8Array): Promise<string> {
  const hasher = checksumHasher(algorithm);
  hasher.update(bytes);
  return hasher.digest();
}
