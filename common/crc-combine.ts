import { CHECKSUM_BYTES, type CrcAlgorithm } from './checksum-model.ts';

/**
 * Combining CRCs: crc(A‖B) from crc(A), crc(B) and the length of B, for each of S3's CRCs. What
 * lets a client that reads a file's parts in parallel (the client library, the console) name the
 * whole file's CRC at completion, and the export worker report its output's. No Node in here: the
 * browser console uses it too.
 */

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
    const crc = crcFromBase64(partChecksum);
    this.crc = this.crc === undefined ? crc : combineCrc(this.algorithm, this.crc, crc, length);
    this.bytes += length;
    return this;
  }

  /** The CRC of every part appended so far (of no bytes, when none were). */
  digest(): string {
    return crcToBase64(this.crc ?? 0n, CHECKSUM_BYTES[this.algorithm]);
  }

  get length(): number {
    return this.bytes;
  }
}

/** A CRC's big-endian bytes in base64, as S3 writes checksums (atob/btoa: Node and browsers alike). */
export function crcToBase64(value: bigint, bytes: number): string {
  let binary = '';
  for (let i = bytes - 1; i >= 0; i--)
    binary += String.fromCharCode(Number((value >> BigInt(8 * i)) & 0xffn));
  return btoa(binary);
}

function crcFromBase64(value: string): bigint {
  let result = 0n;
  for (const char of atob(value)) result = (result << 8n) | BigInt(char.charCodeAt(0));
  return result;
}
