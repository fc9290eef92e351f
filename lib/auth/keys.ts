import { readFile } from 'node:fs/promises';
import { createLocalJWKSet, type JWK, type JWTPayload, jwtVerify } from 'jose';

/**
 * Signing keys. A keyset holds the current key (with its private half) and any previous keys still
 * trusted for verification; all of them are published at /.well-known/jwks.json. Rotating is:
 * add a new key, make it current, and drop the old one once its last token has expired.
 *
 * Verification lives here, signing in token-signer.ts and key creation in key-generation.ts, so that
 * the many functions that only verify do not bundle the code that signs or generates.
 */

export const ALGORITHM = 'EdDSA';

export interface Keyset {
  current: string;
  keys: JWK[];
}

/** What verifying takes: the public keys alone (a JWKS), or a whole keyset. */
export interface VerificationKeys {
  current?: string;
  keys: JWK[];
}

export class KeysetError extends Error {
  override name = 'KeysetError';
}

const PRIVATE_FIELDS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'] as const;

export const publicPart = (jwk: JWK): JWK => {
  const copy: JWK = { ...jwk };
  for (const field of PRIVATE_FIELDS) delete copy[field];
  return { ...copy, alg: ALGORITHM, use: 'sig' };
};

export interface TokenSettings {
  issuer: string;
  audience: string;
  ttlSeconds: number;
}

export class KeyRing {
  readonly jwks: { keys: JWK[] };
  /** The current key, private half included: what token-signer.ts signs with (absent in a verify-only ring). */
  readonly signingJwk: (JWK & { kid: string }) | undefined;
  private readonly resolveKey: ReturnType<typeof createLocalJWKSet>;

  constructor(keyset: VerificationKeys) {
    if (keyset.keys.length === 0) throw new KeysetError('the keyset holds no key');
    if (keyset.keys.some((key) => !key.kid || key.kty !== 'OKP' || key.crv !== 'Ed25519')) {
      throw new KeysetError('every key needs a kid and must be an Ed25519 (OKP) JWK');
    }
    if (keyset.current !== undefined) {
      const current = keyset.keys.find((key) => key.kid === keyset.current);
      if (!current?.d) {
        throw new KeysetError(`the current key "${keyset.current}" is missing or has no private part`);
      }
      this.signingJwk = current as JWK & { kid: string };
    }
    this.jwks = { keys: keyset.keys.map(publicPart) };
    this.resolveKey = createLocalJWKSet(this.jwks);
  }

  has(kid: string | undefined): boolean {
    return kid !== undefined && this.jwks.keys.some((key) => key.kid === kid);
  }

  /** Verifies signature, algorithm, issuer, audience and lifetime; throws jose's errors otherwise. */
  async verify(token: string, settings: Omit<TokenSettings, 'ttlSeconds'>) {
    const { payload } = await jwtVerify(token, this.resolveKey, {
      algorithms: [ALGORITHM],
      issuer: settings.issuer,
      audience: settings.audience,
      requiredClaims: ['sub', 'iat', 'exp', 'jti'],
      clockTolerance: 5,
    });
    return payload as JWTPayload & { sub: string; jti: string; exp: number };
  }
}

/** Public keys for verifying: a JWKS `{"keys": [...]}` (what /.well-known/jwks.json serves) or a keyset. */
export function parseVerificationKeys(text: string, source: string): VerificationKeys {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new KeysetError(`${source} is not JSON`);
  }
  const keys = (value as VerificationKeys)?.keys;
  if (!Array.isArray(keys)) throw new KeysetError(`${source} must look like {"keys": [<JWK>, …]}`);
  return { keys: keys.map(publicPart) };
}

export function parseKeyset(text: string, source: string): Keyset {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new KeysetError(`${source} is not JSON`);
  }
  const keyset = value as Keyset;
  if (typeof keyset?.current !== 'string' || !Array.isArray(keyset.keys)) {
    throw new KeysetError(`${source} must look like {"current": "<kid>", "keys": [<JWK>, …]}`);
  }
  return keyset;
}

export interface KeySource {
  /** The keyset itself, as JSON (tests). */
  inline?: string | undefined;
  /** A file holding the keyset (local development: .local/jwt-keys.json). */
  file?: string | undefined;
  /** Reads an SSM SecureString by name (deployed stages). */
  parameter?: { name: string; read: (name: string) => Promise<string> } | undefined;
}

export async function loadKeyset(source: KeySource): Promise<Keyset> {
  if (source.inline) return parseKeyset(source.inline, 'JWT_KEYS');
  if (source.file) return parseKeyset(await readFile(source.file, 'utf8'), source.file);
  if (source.parameter)
    return parseKeyset(await source.parameter.read(source.parameter.name), source.parameter.name);
  throw new KeysetError('no signing keys configured: set JWT_KEYS_PARAMETER, JWT_KEYS_FILE or JWT_KEYS');
}
