import { randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { MiB } from '../../common/part-plan.ts';
import { gzip, gzipSlice, incompressible } from '../../lib/exports/gzip-members.ts';

/**
 * The gzip worker's choice per slice (lib/exports/gzip-members.ts): level 6, or deflate's stored
 * blocks for bytes that deflate cannot shrink (already-compressed files).
 */

const GZIP_HEADER_BYTES = 10;
/** The first deflate block's type (RFC 1951 3.2.3: BTYPE, bits 1-2 of its first byte): 0 is stored. */
const firstBlockType = (member: Buffer) => (member[GZIP_HEADER_BYTES]! >> 1) & 0b11;

const text = (size: number) =>
  Buffer.from(
    Array.from({ length: Math.ceil(size / 40) }, (_, i) => `row ${i}, value ${(i * 7919) % 1000}\n`).join(''),
  ).subarray(0, size);

describe('gzip slices', () => {
  it('stores an incompressible slice: the same bytes back, no larger than level 6 makes them', async () => {
    const slice = randomBytes(8 * MiB);
    expect(await incompressible(slice)).toBe(true);
    const member = await gzipSlice(slice);
    expect(firstBlockType(member)).toBe(0);
    expect(gunzipSync(member).equals(slice)).toBe(true);
    expect(member.length).toBeLessThanOrEqual((await gzip(slice)).length);
  });

  it('compresses a compressible slice at level 6, byte for byte as gzip() does', async () => {
    const slice = text(8 * MiB);
    expect(await incompressible(slice)).toBe(false);
    const member = await gzipSlice(slice);
    expect(member.equals(await gzip(slice))).toBe(true);
    expect(member.length).toBeLessThan(slice.length / 3);
  });

  it('compresses a slice that is half text, half random (the windows fall in both)', async () => {
    const slice = Buffer.concat([text(4 * MiB), randomBytes(4 * MiB)]);
    expect(await incompressible(slice)).toBe(false);
    expect(gunzipSync(await gzipSlice(slice)).equals(slice)).toBe(true);
  });

  it('compresses a small slice whatever it holds (sampling would cost more than it saves)', async () => {
    const slice = randomBytes(512 * 1024);
    expect(await incompressible(slice)).toBe(false);
    // (Level 6 writes random bytes in stored blocks too, after searching them for matches.)
    expect((await gzipSlice(slice)).equals(await gzip(slice))).toBe(true);
  });

  it('decides by the bytes alone: a slice gives the same member every time (a restart writes the same)', async () => {
    const slice = randomBytes(2 * MiB);
    expect((await gzipSlice(slice)).equals(await gzipSlice(Buffer.from(slice)))).toBe(true);
  });
});
