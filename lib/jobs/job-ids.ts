import { randomBytes } from 'node:crypto';
import * as z from '../schema.ts';

/**
 * Job ids are ULIDs: 48 bits of milliseconds then 80 random bits, in Crockford base32. They sort by
 * creation time, so a user's jobs read newest first straight from the table's sort key.
 */
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

export function newJobId(now = Date.now()): string {
  let time = '';
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const random = randomBytes(16);
  let tail = '';
  for (let i = 0; i < 16; i++) tail += ALPHABET[random[i]! % 32];
  return time + tail;
}

export const JOB_ID_PATTERN = /^[0-9A-HJKMNP-TV-Z]{26}$/;

export const jobIdSchema = z.string().check(z.regex(JOB_ID_PATTERN, 'a job id is a 26-character ULID'));
