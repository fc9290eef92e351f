import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  createLocalJWKSet,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JWK,
  type JWTPayload,
  jwtVerify,
  SignJWT,
} from 'jose';

/**
 * Signing keys. A keyset holds the current key (with its private half) and any previous keys still
 * trusted for verification; all of them are published at /.well-known/jwks.json. Rotating is:
 * add a new key, make it current, and drop the old one once its last token has expired.
 */

export const ALGORITHM = 'EdDSA';

export interface Keyset {
  current: string;
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

export async function generateSigningKey(
  kid = `key-${new Date().toISOString().slice(0, 10)}-${randomUUID().slice(0, 8)}`,
) {
  const { privateKey } = await generateKeyPair(ALGORITHM, { crv: 'Ed25519', extractable: true });
  return { ...(await exportJWK(privateKey)), kid, alg: ALGORITHM } satisfies JWK;
}

export async function generateKeyset(): Promise<Keyset> {
  const key = await generateSigningKey();
  return { current: key.kid, keys: [key] };
}

export interface TokenSettings {
  issuer: string;
  audience: string;
  ttlSeconds: number;
}

export class KeyRing {
  readonly jwks: { keys: JWK[] };
  private readonly currentKid: string;
  private readonly signingKey: ReturnType<typeof importJWK>;
  private readonly resolveKey: ReturnType<typeof createLocalJWKSet>;

  constructor(keyset: Keyset) {
    const current = keyset.keys.find((key) => key.kid === keyset.current);
    if (!current?.d)
      throw new KeysetError(`the current key "${keyset.current}" is missing or has no private part`);
    if (keyset.keys.some((key) => !key.kid || key.kty !== 'OKP' || key.crv !== 'Ed25519')) {
      throw new KeysetError('every key needs a kid and must be an Ed25519 (OKP) JWK');
    }
    this.currentKid = current.kid!;
    this.signingKey = importJWK(current, ALGORITHM);
    this.jwks = { keys: keyset.keys.map(publicPart) };
    this.resolveKey = createLocalJWKSet(this.jwks);
  }

  async sign(subject: string, settings: TokenSettings, extraClaims: JWTPayload = {}): Promise<string> {
    return new SignJWT(extraClaims)
      .setProtectedHeader({ alg: ALGORITHM, kid: this.currentKid, typ: 'JWT' })
      .setSubject(subject)
      .setIssuer(settings.issuer)
      .setAudience(settings.audience)
      .setIssuedAt()
      .setExpirationTime(`${settings.ttlSeconds}s`)
      .setJti(randomUUID())
      .sign(await this.signingKey);
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
