import { createHash, randomBytes } from 'node:crypto';

export const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** Byte-for-byte equality, reported by length and digest (jest's toEqual walks a buffer per element). */
export function expectSameBytes(actual: Uint8Array, expected: Uint8Array) {
  expect({ length: actual.length, sha256: sha256(actual) }).toEqual({
    length: expected.length,
    sha256: sha256(expected),
  });
}

/**
 * A source that a gzip export takes its time over: random text (base64, deflating to about 75 %), so
 * every slice is deflated at level 6. Random bytes would be stored at memory speed
 * (lib/exports/gzip-members.ts), and an export meant to be still running would be done.
 */
export const slowToGzip = (size: number): Buffer =>
  Buffer.from(randomBytes(Math.ceil((size * 3) / 4)).toString('base64')).subarray(0, size);
