import { randomBytes } from 'node:crypto';
import { checksumOf, FullObjectCrc } from '../../common/checksums.ts';
import { MiB } from '../../common/part-plan.ts';
import { crc32Base64 } from '../../web/part-checksums.ts';

/**
 * The console's part checksums (web/part-checksums.ts: hash-wasm's CRC32, in base64) against the
 * service's own (zlib's CRC32, common/checksums.ts): S3 refuses a part whose header differs from its
 * bytes, so they must agree to the bit, and combine into the file's CRC as the client library's do.
 */
describe('the console’s part checksums', () => {
  it.each([
    ['no bytes', 0],
    ['one byte', 1],
    ['5 MiB and 3 bytes (read in several slices)', 5 * MiB + 3],
  ])('a blob of %s has the CRC32 zlib gives, in base64', async (_, size) => {
    const bytes = randomBytes(size);
    expect(await crc32Base64(new Blob([bytes]))).toBe(await checksumOf('CRC32', bytes));
  });

  it('combine, part by part, into the whole file’s CRC32 (what the completion sends)', async () => {
    const bytes = randomBytes(12 * MiB + 77);
    const whole = new FullObjectCrc('CRC32');
    for (let start = 0; start < bytes.length; start += 5 * MiB) {
      const part = bytes.subarray(start, Math.min(start + 5 * MiB, bytes.length));
      whole.append(await crc32Base64(new Blob([part])), part.length);
    }
    expect(whole.digest()).toBe(await checksumOf('CRC32', bytes));
  });
});
