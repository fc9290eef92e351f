import { createHash, randomBytes } from 'node:crypto';
import { MiB } from '../../common/part-plan.ts';
import { consoleChunkSize, type ListedPart, matchParts, md5Hex } from '../../web/part-match.ts';

/**
 * The console's check that the parts S3 holds of an upload are a local file's (web/part-match.ts),
 * against node:crypto's MD5 of the same ranges: S3's ETag of a part under SSE-S3.
 */

const md5 = (bytes: Uint8Array) => createHash('md5').update(bytes).digest('hex');

/** The parts S3 would list had these part numbers of `bytes` been uploaded in the console's chunks. */
function listed(bytes: Buffer, numbers: number[], quote = true): ListedPart[] {
  const chunk = consoleChunkSize(bytes.length);
  return numbers.map((n) => {
    const part = bytes.subarray((n - 1) * chunk, Math.min(n * chunk, bytes.length));
    return { PartNumber: n, Size: part.length, ETag: quote ? `"${md5(part)}"` : md5(part) };
  });
}

describe('the console’s part match', () => {
  const file = randomBytes(12 * MiB + 123);

  it('cuts a file in parts of about a sixteenth, from 5 MiB to 64 MiB, within 10,000 parts', () => {
    expect(consoleChunkSize(1)).toBe(5 * MiB);
    expect(consoleChunkSize(80 * MiB)).toBe(5 * MiB);
    expect(consoleChunkSize(80 * MiB + 1)).toBe(6 * MiB);
    expect(consoleChunkSize(256 * MiB)).toBe(16 * MiB);
    expect(consoleChunkSize(100 * 1024 * MiB)).toBe(64 * MiB);
    const fiveTiB = 5 * 1024 * 1024 * MiB;
    expect(consoleChunkSize(fiveTiB)).toBe(Math.ceil(fiveTiB / 10_000));
  });

  it('hashes a blob read in slices as one MD5', async () => {
    expect(await md5Hex(new Blob([file]))).toBe(md5(file));
    expect(await md5Hex(new Blob([]))).toBe(md5(Buffer.alloc(0)));
  });

  it('matches the parts S3 holds, in any order, quoted or not, and none at all', async () => {
    const blob = new Blob([file]);
    expect(await matchParts(blob, listed(file, [3, 1]))).toEqual({ same: true, parts: 2 });
    expect(await matchParts(blob, listed(file, [1, 2, 3], false))).toEqual({ same: true, parts: 3 });
    expect(await matchParts(blob, [])).toEqual({ same: true, parts: 0 });
  });

  it('names the first part that is not this file’s, and why', async () => {
    const other = Buffer.from(file);
    const flipped = 5 * MiB + 7; // one bit of part 2
    other[flipped] = other[flipped]! ^ 1;
    expect(await matchParts(new Blob([other]), listed(file, [1, 2, 3]))).toEqual({
      same: false,
      partNumber: 2,
      why: 'its bytes differ',
    });
    // Cut another way (a client with 8 MiB parts): the sizes differ before any hashing.
    const [first] = listed(file, [1]);
    expect(await matchParts(new Blob([file]), [{ ...first!, Size: 8 * MiB }])).toMatchObject({
      same: false,
      partNumber: 1,
      why: `S3 holds ${8 * MiB} bytes, not ${5 * MiB}`,
    });
    expect(await matchParts(new Blob([file]), [{ ...first!, PartNumber: 4 }])).toMatchObject({
      same: false,
      partNumber: 4,
      why: 'this file has 3 part(s)',
    });
    // SSE-KMS (or a store whose ETag is not an MD5) proves nothing.
    expect(await matchParts(new Blob([file]), [{ ...first!, ETag: '"abc-1"' }])).toMatchObject({
      same: false,
      why: 'its ETag is not an MD5',
    });
  });
});
