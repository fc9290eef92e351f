import { errors } from 'jose';
import { generateSigningKey } from '../../lib/auth/key-generation.ts';
import { KeyRing } from '../../lib/auth/keys.ts';
import { signToken } from '../../lib/auth/token-signer.ts';
import { VerifiedTokens } from '../../lib/auth/verified-tokens.ts';

/**
 * The cache in front of the signature check (lib/auth/verified-tokens.ts), with real keys and real
 * jose verification: every answer it gives must be the one verifying in full would give.
 */

const settings = { issuer: 'file-jobs/test', audience: 'file-jobs', ttlSeconds: 600 };

async function setup() {
  const old = await generateSigningKey('old-key');
  const next = await generateSigningKey('new-key');
  const ring = new KeyRing({ current: 'old-key', keys: [old] });
  const rotated = new KeyRing({ current: 'new-key', keys: [next, old] });
  const retired = new KeyRing({ current: 'new-key', keys: [next] });
  let clock = Date.now();
  const cache = new VerifiedTokens<Awaited<ReturnType<KeyRing['verify']>>>({
    maxEntries: 3,
    now: () => clock,
  });
  let verifications = 0;
  const verify = (token: string, keys: KeyRing, withSettings: object = settings) =>
    cache.verify(token, keys, withSettings, () => {
      verifications++;
      return keys.verify(token, settings);
    });
  return {
    ring,
    rotated,
    retired,
    cache,
    verify,
    verifications: () => verifications,
    advance: (ms: number) => {
      clock += ms;
    },
  };
}

describe('tokens already verified', () => {
  it('are answered from memory with the same claims, without a second signature check', async () => {
    const { ring, verify, verifications } = await setup();
    const token = await signToken(ring, 'alice', settings);
    const first = await verify(token, ring);
    expect(first).toMatchObject({ sub: 'alice', iss: settings.issuer });
    await expect(verify(token, ring)).resolves.toBe(first);
    expect(verifications()).toBe(1);
    expect(Object.isFrozen(first)).toBe(true);
  });

  it('never answer for a token that differs in any character: it is verified in full, and a forgery fails', async () => {
    const { ring, verify, verifications } = await setup();
    const token = await signToken(ring, 'alice', settings);
    await verify(token, ring);
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const flipped = `${signature.slice(0, -2)}${signature.at(-2) === 'A' ? 'B' : 'A'}${signature.at(-1)}`;
    await expect(verify(`${header}.${payload}.${flipped}`, ring)).rejects.toBeInstanceOf(
      errors.JWSSignatureVerificationFailed,
    );
    const bob = Buffer.from(
      JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), sub: 'bob' }),
    ).toString('base64url');
    await expect(verify(`${header}.${bob}.${signature}`, ring)).rejects.toBeInstanceOf(
      errors.JWSSignatureVerificationFailed,
    );
    expect(verifications()).toBe(3);
  });

  it('keep no failure: a refused token is checked again, and refused again', async () => {
    const { ring, retired, cache, verify, verifications } = await setup();
    const token = await signToken(ring, 'alice', settings);
    await expect(verify(token, retired)).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
    await expect(verify(token, retired)).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
    expect(verifications()).toBe(2);
    expect(cache.size).toBe(0);
  });

  it('count only for the keys that verified them: a retired key refuses its token at once, and the old entries go', async () => {
    const { ring, rotated, retired, cache, verify, verifications } = await setup();
    const oldToken = await signToken(ring, 'alice', settings);
    await verify(oldToken, ring);
    await verify(oldToken, rotated); // the old key still in the new ring: verified again, still good
    expect(verifications()).toBe(2);
    expect(cache.size).toBe(1);
    await expect(verify(oldToken, retired)).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
    const newToken = await signToken(retired, 'alice', settings);
    await verify(newToken, retired);
    expect(cache.size).toBe(1);
    // A caller still holding the keys from before the rotation gets what they would answer.
    await expect(verify(oldToken, ring)).resolves.toMatchObject({ sub: 'alice' });
  });

  it('count only for the settings that verified them', async () => {
    const { ring, verify, verifications } = await setup();
    const token = await signToken(ring, 'alice', settings);
    await verify(token, ring, settings);
    await verify(token, ring, { ...settings });
    expect(verifications()).toBe(2);
  });

  it("end at the token's exp: from then on it is verified in full, so it gets jose's own answer", async () => {
    const { ring, verify, verifications, advance } = await setup();
    const token = await signToken(ring, 'alice', { ...settings, ttlSeconds: 60 });
    await verify(token, ring);
    advance(58_000);
    await verify(token, ring);
    expect(verifications()).toBe(1);
    advance(3_000);
    // The cache's clock is past exp; jose reads the real clock, which is not, so it still accepts.
    await expect(verify(token, ring)).resolves.toMatchObject({ sub: 'alice' });
    expect(verifications()).toBe(2);
  });

  it('are at most maxEntries, the oldest let go first', async () => {
    const { ring, cache, verify, verifications } = await setup();
    const tokens = await Promise.all(['a', 'b', 'c', 'd'].map((name) => signToken(ring, name, settings)));
    for (const token of tokens) await verify(token, ring);
    expect(cache.size).toBe(3);
    await verify(tokens[3]!, ring);
    await verify(tokens[1]!, ring);
    expect(verifications()).toBe(4);
    await verify(tokens[0]!, ring);
    expect(verifications()).toBe(5);
    expect(cache.size).toBe(3);
  });
});
