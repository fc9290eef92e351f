import { randomBytes, type ScryptOptions, scrypt, timingSafeEqual } from 'node:crypto';

/**
 * scrypt password hashes in a PHC-style string that carries its own parameters:
 * `$scrypt$ln=17,r=8,p=1$<salt>$<hash>` (base64, no padding). OWASP's minimum for scrypt is
 * N=2^17, r=8, p=1; N*r*128 bytes = 128 MiB, above Node's default `maxmem` of 32 MiB.
 */

export interface ScryptParams {
  logN: number;
  r: number;
  p: number;
}

export const OWASP_SCRYPT: ScryptParams = { logN: 17, r: 8, p: 1 };
const KEY_LENGTH = 32;
const SALT_LENGTH = 16;

const derive = (password: string, salt: Buffer, params: ScryptParams, keyLength: number) =>
  new Promise<Buffer>((resolve, reject) => {
    const N = 2 ** params.logN;
    const options: ScryptOptions = { N, r: params.r, p: params.p, maxmem: 2 * 128 * N * params.r };
    scrypt(password.normalize('NFKC'), salt, keyLength, options, (error, key) =>
      error ? reject(error) : resolve(key),
    );
  });

const b64 = (bytes: Buffer) => bytes.toString('base64').replace(/=+$/, '');

export async function hashPassword(password: string, params: ScryptParams = OWASP_SCRYPT): Promise<string> {
  const salt = randomBytes(SALT_LENGTH);
  const key = await derive(password, salt, params, KEY_LENGTH);
  return `$scrypt$ln=${params.logN},r=${params.r},p=${params.p}$${b64(salt)}$${b64(key)}`;
}

const PHC = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

/** Parameters of a stored hash, or undefined when the string is not one of ours. */
export function parseHash(phc: string) {
  const match = PHC.exec(phc);
  if (!match) return undefined;
  const [, logN, r, p, salt, key] = match;
  const params = { logN: Number(logN), r: Number(r), p: Number(p) };
  if (params.logN < 10 || params.logN > 20 || params.r < 1 || params.p < 1) return undefined;
  return { params, salt: Buffer.from(salt!, 'base64'), key: Buffer.from(key!, 'base64') };
}

/** Constant-time comparison against a stored hash; a malformed hash never verifies. */
export async function verifyPassword(password: string, phc: string): Promise<boolean> {
  const parsed = parseHash(phc);
  if (!parsed) return false;
  const candidate = await derive(password, parsed.salt, parsed.params, parsed.key.length);
  return timingSafeEqual(candidate, parsed.key);
}

/**
 * A hash of no one's password, with the same parameters as real ones: an unknown username is
 * checked against it so that it costs the same time as a wrong password.
 */
export const DUMMY_HASH =
  '$scrypt$ln=17,r=8,p=1$2d8n1Jq4U0hO1kK8mQx0ZA$eC6bTq8e0+4m2bq9j0Fh0fX9Yq3vXb7h2yK8cM4dE1s';
