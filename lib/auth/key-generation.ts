import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { ALGORITHM, type Keyset } from './keys.ts';

/** A new Ed25519 signing key as a private JWK with a kid (date + random, so kids never collide). */
export async function generateSigningKey(
  kid = `key-${new Date().toISOString().slice(0, 10)}-${randomUUID().slice(0, 8)}`,
): Promise<JWK & { kid: string }> {
  const { privateKey } = await generateKeyPair(ALGORITHM, { crv: 'Ed25519', extractable: true });
  return { ...(await exportJWK(privateKey)), kid, alg: ALGORITHM };
}

export async function generateKeyset(): Promise<Keyset> {
  const key = await generateSigningKey();
  return { current: key.kid, keys: [key] };
}
