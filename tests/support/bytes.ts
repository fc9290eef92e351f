import { createHash } from 'node:crypto';

export const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** Byte-for-byte equality, reported by length and digest (jest's toEqual walks a buffer per element). */
export function expectSameBytes(actual: Uint8Array, expected: Uint8Array) {
  expect({ length: actual.length, sha256: sha256(actual) }).toEqual({
    length: expected.length,
    sha256: sha256(expected),
  });
}
