import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { importJWK, SignJWT } from 'jose';
import type { Keyset } from '../../lib/auth/keys.ts';
import { testStack } from './stack-env.ts';

/** The test stack's signing keys (generated for the run: JWT_KEYS_FILE). */
export const serviceKeyset = (): Keyset => JSON.parse(readFileSync(process.env.JWT_KEYS_FILE!, 'utf8'));

/** The issuer the test stack's tokens carry. */
export const stackIssuer = () => `file-jobs/${testStack().stage}`;

/**
 * A token signed with the test stack's current key, as the service would sign one, with whatever
 * claims and lifetime a test needs (issued a minute ago, valid ten minutes, unless told otherwise).
 */
export async function signWithServiceKey(
  claims: Record<string, unknown>,
  options: { kid?: string; iat?: number; exp?: number } = {},
) {
  const set = serviceKeyset();
  const key = set.keys.find((candidate) => candidate.kid === set.current)!;
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ jti: randomUUID(), ...claims })
    .setProtectedHeader({ alg: 'EdDSA', kid: options.kid ?? key.kid!, typ: 'JWT' })
    .setIssuedAt(options.iat ?? now - 60)
    .setExpirationTime(options.exp ?? now + 600)
    .sign(await importJWK(key, 'EdDSA'));
}
