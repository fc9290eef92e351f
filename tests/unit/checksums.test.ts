import { createHash, randomBytes } from 'node:crypto';
import {
  CHECKSUM_ALGORITHMS,
  checksumHasher,
  checksumOf,
  combineCrc,
  FullObjectCrc,
  isChecksumValue,
} from '../../common/checksums.ts';

const toBig = (value: string) => BigInt(`0x${Buffer.from(value, 'base64').toString('hex')}`);

describe('checksums', () => {
  test('known answers: the standard check value of "123456789" for each CRC, and SHA-256', async () => {
    const check = Buffer.from('123456789');
    // CRC-32/ISO-HDLC cbf43926, CRC-32/ISCSI e3069283, CRC-64/NVME ae8b14860a799888 (the CRC catalogue).
    expect(Buffer.from(await checksumOf('CRC32', check), 'base64').toString('hex')).toBe('cbf43926');
    expect(Buffer.from(await checksumOf('CRC32C', check), 'base64').toString('hex')).toBe('e3069283');
    expect(Buffer.from(await checksumOf('CRC64NVME', check), 'base64').toString('hex')).toBe(
      'ae8b14860a799888',
    );
    expect(await checksumOf('SHA256', check)).toBe(createHash('sha256').update(check).digest('base64'));
  });

  test('a hasher fed in pieces gives the checksum of the whole', async () => {
    const bytes = randomBytes(100_003);
    for (const algorithm of CHECKSUM_ALGORITHMS) {
      const hasher = checksumHasher(algorithm);
      for (let at = 0; at < bytes.length; at += 7919) hasher.update(bytes.subarray(at, at + 7919));
      expect(await hasher.digest()).toBe(await checksumOf(algorithm, bytes));
    }
  });

  test.each(['CRC32', 'CRC32C', 'CRC64NVME'] as const)(
    '%s of parts combine into the CRC of the whole file, for any cut',
    async (algorithm) => {
      const bytes = randomBytes(70_001);
      for (const cuts of [[0], [0, 1], [0, 5, 6, 69_999], [0, 12_345, 40_000], [0, 70_000]]) {
        const whole = new FullObjectCrc(algorithm);
        const bounds = [...cuts, bytes.length];
        for (let i = 0; i < cuts.length; i++) {
          const part = bytes.subarray(bounds[i], bounds[i + 1]);
          whole.append(await checksumOf(algorithm, part), part.length);
        }
        expect(whole.digest()).toBe(await checksumOf(algorithm, bytes));
        expect(whole.length).toBe(bytes.length);
      }
      // Appending an empty part changes nothing.
      const a = await checksumOf(algorithm, bytes);
      expect(combineCrc(algorithm, toBig(a), toBig(await checksumOf(algorithm, Buffer.alloc(0))), 0)).toBe(
        toBig(a),
      );
    },
  );

  test('checksum values are the exact base64 of the algorithm’s length, one spelling only', () => {
    expect(isChecksumValue('CRC32', 'y/Q5Jg==')).toBe(true);
    expect(isChecksumValue('CRC32', 'y/Q5Jg')).toBe(false);
    expect(isChecksumValue('CRC32', 'y/Q5Jh==')).toBe(false); // non-zero padding bits
    expect(isChecksumValue('CRC32', 'rosUhgp5mIg=')).toBe(false); // 8 bytes
    expect(isChecksumValue('CRC64NVME', 'rosUhgp5mIg=')).toBe(true);
    expect(isChecksumValue('SHA256', createHash('sha256').digest('base64'))).toBe(true);
    expect(isChecksumValue('SHA256', 'y/Q5Jg==')).toBe(false);
    expect(isChecksumValue('CRC32', 'y/Q5\nJg==')).toBe(false);
  });
});
