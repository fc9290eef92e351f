import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { Crc32c, Crc64Nvme } from '@aws-sdk/checksums/crc';

/**
 * S3's additional checksums, as the service, the client library and the export worker compute them.
 * Pure code, shared by lib/ and client/ (no AWS client in here).
 *
 * The S3 model (Amazon S3 User Guide, "Checking object integrity"):
 * - A multipart upload created with a `ChecksumAlgorithm` needs every part's checksum in an
 *   `x-amz-checksum-<algorithm>` header, which S3 checks against the body it received (400 BadDigest
 *   on a mismatch), and lists it per part (ListParts) for CompleteMultipartUpload to name.
 * - CRC32, CRC32C and CRC64NVME are of type FULL_OBJECT: the object's checksum is the CRC of the whole
 *   file, which S3 derives from the parts' CRCs (CRCs combine: crc(A‖B) from crc(A), crc(B) and the
 *   length of B). A client that sends the whole file's CRC with CompleteMultipartUpload has S3 verify
 *   it (400 BadDigest when it differs).
 * - SHA256 is COMPOSITE: the object's checksum is the SHA-256 of the parts' SHA-256s, then `-N`.
 *
 * Values travel as S3 writes them: the checksum's big-endian bytes in base64.
 */

export const CHECKSUM_ALGORITHMS = ['CRC32', 'CRC32C', 'CRC64NVME', 'SHA256'] as const;
export type ChecksumAlgorithm = (typeof CHECKSUM_ALGORITHMS)[number];
export type ChecksumType = 'FULL_OBJECT' | 'COMPOSITE';
/** The CRC algorithms: full-object checksums that S3 verifies at completion. */
export type CrcAlgorithm = Exclude<ChecksumAlgorithm, 'SHA256'>;

/** A stored object's checksum as the service shows it (files, jobs, export outputs). */
export interface Checksum {
  algorithm: ChecksumAlgorithm;
  type: ChecksumType;
  value: string;
}

/**
 * The client library's default: CRC32 runs in zlib's native code (about 4.7 GB/s on one core here,
 * against 1.8 GB/s for SHA-256 and 0.45 GB/s for CRC32C in JavaScript; measured by
 * `node bench/checksums.ts`), a few percent of an upload's time.
 */
export const DEFAULT_CHECKSUM_ALGORITHM: CrcAlgorithm = 'CRC32';

export const checksumType = (algorithm: ChecksumAlgorithm): ChecksumType =>
  algorithm === 'SHA256' ? 'COMPOSITE' : 'FULL_OBJECT';

export const isCrcAlgorithm = (algorithm: ChecksumAlgorithm): algorithm is CrcAlgorithm =>
  algorithm !== 'SHA256';

/** The number of bytes in one checksum of the algorithm. */
export const CHECKSUM_BYTES: Readonly<Record<ChecksumAlgorithm, number>> = {
  CRC32: 4,
  CRC32C: 4,
  CRC64NVME: 8,
  SHA256: 32,
};

/** The header a part PUT (or a completion) carries the checksum in: `x-amz-checksum-crc32`, … */
export const checksumHeader = (algorithm: ChecksumAlgorithm): string =>
  `x-amz-checksum-${algorithm.toLowerCase()}`;

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
    return toBase64(BigInt(this.crc), 4);
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

/** Reflected polynomials (the CRCs as S3 defines them: init and final xor all ones, reflected). */
const POLYNOMIALS: Readonly<Record<CrcAlgorithm, { poly: bigint; bits: number }>> = {
  CRC32: { poly: 0xedb88320n, bits: 32 },
  CRC32C: { poly: 0x82f63b78n, bits: 32 },
  CRC64NVME: { poly: 0x9a6c9329ac4bc9b5n, bits: 64 },
};

/** a·b modulo the polynomial, in the reflected bit order (zlib's multmodp). */
function multiplyModP(a: bigint, b: bigint, poly: bigint, bits: number): bigint {
  let m = 1n << BigInt(bits - 1);
  let product = 0n;
  let factor = b;
  while (m !== 0n) {
    if ((a & m) !== 0n) {
      product ^= factor;
      if ((a & (m - 1n)) === 0n) break;
    }
    m >>= 1n;
    factor = (factor & 1n) !== 0n ? (factor >> 1n) ^ poly : factor >> 1n;
  }
  return product;
}

/** x^(8·bytes) modulo the polynomial: the shift a CRC undergoes over `bytes` zero bytes. */
function shiftFor(bytes: number, poly: bigint, bits: number): bigint {
  let power = 1n << BigInt(bits - 1); // x^0
  let square = 1n << BigInt(bits - 2); // x^1, squared below to x^8 (one byte)
  for (let i = 0; i < 3; i++) square = multiplyModP(square, square, poly, bits);
  let n = BigInt(bytes);
  while (n > 0n) {
    if ((n & 1n) !== 0n) power = multiplyModP(square, power, poly, bits);
    square = multiplyModP(square, square, poly, bits);
    n >>= 1n;
  }
  return power;
}

/**
 * The shifts of recent lengths: a file's parts all have one length but the last, so combining 10,000
 * part CRCs computes two shifts, not 10,000 (0.6 s for CRC32, 1.3 s for CRC64NVME without this).
 */
const shifts = new Map<string, bigint>();
const MAX_CACHED_SHIFTS = 64;

function cachedShift(algorithm: CrcAlgorithm, bytes: number): bigint {
  const key = `${algorithm}:${bytes}`;
  let shift = shifts.get(key);
  if (shift === undefined) {
    const { poly, bits } = POLYNOMIALS[algorithm];
    shift = shiftFor(bytes, poly, bits);
    if (shifts.size >= MAX_CACHED_SHIFTS) shifts.delete(shifts.keys().next().value!);
    shifts.set(key, shift);
  }
  return shift;
}

/** crc(A‖B) from crc(A), crc(B) and B's length (zlib's crc32_combine, for any of S3's CRCs). */
export function combineCrc(algorithm: CrcAlgorithm, crcA: bigint, crcB: bigint, lengthB: number): bigint {
  const { poly, bits } = POLYNOMIALS[algorithm];
  return multiplyModP(cachedShift(algorithm, lengthB), crcA, poly, bits) ^ crcB;
}

/**
 * The whole file's CRC from its parts' CRCs, given in part order with their lengths: what the client
 * sends with its completion (its parts are read in parallel, never the file from start to end) and
 * what the export worker reports for its output.
 */
export class FullObjectCrc {
  readonly algorithm: CrcAlgorithm;
  private crc: bigint | undefined;
  private bytes = 0;

  constructor(algorithm: CrcAlgorithm) {
    this.algorithm = algorithm;
  }

  /** Appends the next part, by its checksum (base64) and length. */
  append(partChecksum: string, length: number): this {
    const crc = fromBase64(partChecksum);
    this.crc = this.crc === undefined ? crc : combineCrc(this.algorithm, this.crc, crc, length);
    this.bytes += length;
    return this;
  }

  /** The CRC of every part appended so far (of no bytes, when none were). */
  digest(): string {
    return toBase64(this.crc ?? 0n, CHECKSUM_BYTES[this.algorithm]);
  }

  get length(): number {
    return this.bytes;
  }
}

function toBase64(value: bigint, bytes: number): string {
  const out = Buffer.alloc(bytes);
  for (let i = bytes - 1; i >= 0; i--) {
    out[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return out.toString('base64');
}

function fromBase64(value: string): bigint {
  let result = 0n;
  for (const byte of Buffer.from(value, 'base64')) result = (result << 8n) | BigInt(byte);
  return result;
}
