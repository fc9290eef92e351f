import { randomUUID } from 'node:crypto';
import { importJWK, type JWTPayload, SignJWT } from 'jose';
import { ALGORITHM, type KeyRing, type TokenSettings } from './keys.ts';

const importedKeys = new WeakMap<KeyRing, ReturnType<typeof importJWK>>();

/** An EdDSA JWT for `subject` from the ring's current key: kid, sub, iss, aud, iat, exp, jti. */
export async function signToken(
  ring: KeyRing,
  subject: string,
  settings: TokenSettings,
  extraClaims: JWTPayload = {},
): Promise<string> {
  const signing = ring.signingJwk;
  if (!signing) throw new Error('this key ring only verifies: it holds no private key');
  let key = importedKeys.get(ring);
  if (!key) {
    key = importJWK(signing, ALGORITHM);
    importedKeys.set(ring, key);
  }
  return new SignJWT(extraClaims)
    .setProtectedHeader({ alg: ALGORITHM, kid: signing.kid, typ: 'JWT' })
    .setSubject(subject)
    .setIssuer(settings.issuer)
    .setAudience(settings.audience)
    .setIssuedAt()
    .setExpirationTime(`${settings.ttlSeconds}s`)
    .setJti(randomUUID())
    .sign(await key);
}
