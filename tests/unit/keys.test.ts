import { decodeProtectedHeader, errors } from 'jose';
import { generateKeyset, generateSigningKey } from '../../lib/auth/key-generation.ts';
import { KeyRing, KeysetError, parseKeyset, parseVerificationKeys } from '../../lib/auth/keys.ts';
import { signToken } from '../../lib/auth/token-signer.ts';

const settings = { issuer: 'file-jobs/test', audience: 'file-jobs', ttlSeconds: 600 };

describe('the signing key ring', () => {
  it('signs EdDSA tokens with a kid and the standard claims', async () => {
    const ring = new KeyRing(await generateKeyset());
    const token = await signToken(ring, 'alice', settings);
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'EdDSA', kid: ring.jwks.keys[0]!.kid, typ: 'JWT' });
    const claims = await ring.verify(token, settings);
    expect(claims).toMatchObject({ sub: 'alice', iss: settings.issuer, aud: settings.audience });
    expect(claims.exp - claims.iat!).toBe(600);
    expect(claims.jti).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('publishes only public key material', async () => {
    const ring = new KeyRing(await generateKeyset());
    for (const key of ring.jwks.keys) {
      expect(key).not.toHaveProperty('d');
      expect(key).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' });
    }
  });

  it('keeps verifying tokens of a previous key until that key is removed', async () => {
    const old = await generateSigningKey('old-key');
    const next = await generateSigningKey('new-key');
    const before = new KeyRing({ current: 'old-key', keys: [old] });
    const oldToken = await signToken(before, 'alice', settings);

    const rotated = new KeyRing({ current: 'new-key', keys: [next, old] });
    expect(rotated.jwks.keys.map((key) => key.kid)).toEqual(['new-key', 'old-key']);
    await expect(rotated.verify(oldToken, settings)).resolves.toMatchObject({ sub: 'alice' });
    expect(decodeProtectedHeader(await signToken(rotated, 'alice', settings)).kid).toBe('new-key');

    const retired = new KeyRing({ current: 'new-key', keys: [next] });
    await expect(retired.verify(oldToken, settings)).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
  });

  it('accepts a previous key given by its public half only', async () => {
    const old = await generateSigningKey('old-key');
    const oldToken = await signToken(new KeyRing({ current: 'old-key', keys: [old] }), 'bob', settings);
    const { d: _private, ...oldPublic } = old;
    const ring = new KeyRing({ current: 'new-key', keys: [await generateSigningKey('new-key'), oldPublic] });
    await expect(ring.verify(oldToken, settings)).resolves.toMatchObject({ sub: 'bob' });
  });

  it('verifies with the public keys alone (a JWKS), and cannot sign with them', async () => {
    const full = new KeyRing(await generateKeyset());
    const token = await signToken(full, 'carol', settings);
    const publicOnly = new KeyRing(parseVerificationKeys(JSON.stringify(full.jwks), 'jwks'));
    expect(publicOnly.signingJwk).toBeUndefined();
    await expect(publicOnly.verify(token, settings)).resolves.toMatchObject({ sub: 'carol' });
    await expect(signToken(publicOnly, 'carol', settings)).rejects.toThrow(/only verifies/);
    // Private material handed in by mistake is dropped on the way in.
    const leaked = new KeyRing(parseVerificationKeys(JSON.stringify(await generateKeyset()), 'keyset'));
    expect(leaked.signingJwk).toBeUndefined();
    expect(() => parseVerificationKeys('{"nope": 1}', 'bad')).toThrow(KeysetError);
  });

  it('refuses a keyset whose current key cannot sign', async () => {
    const key = await generateSigningKey('k1');
    const { d: _private, ...publicOnly } = key;
    expect(() => new KeyRing({ current: 'k1', keys: [publicOnly] })).toThrow(KeysetError);
    expect(() => new KeyRing({ current: 'missing', keys: [key] })).toThrow(KeysetError);
    expect(() => parseKeyset('{"keys": []}', 'test')).toThrow(KeysetError);
    expect(() => parseKeyset('not json', 'test')).toThrow(KeysetError);
  });
});

describe('npm run keys', () => {
  const run = async (...args: string[]) => {
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const { stdout } = await promisify(execFile)(process.execPath, ['scripts/keys.ts', ...args]);
    return stdout;
  };

  it('generates, rotates (old key public only, still verifying) and retires keys', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'keys-'));
    const first = parseKeyset(await run('generate'), 'generate');
    writeFileSync(join(dir, 'first.json'), JSON.stringify(first));
    const token = await signToken(new KeyRing(first), 'alice', settings);

    const rotated = parseKeyset(await run('rotate', join(dir, 'first.json')), 'rotate');
    expect(rotated.current).not.toBe(first.current);
    expect(rotated.keys.find((key) => key.kid === first.current)).not.toHaveProperty('d');
    await expect(new KeyRing(rotated).verify(token, settings)).resolves.toMatchObject({ sub: 'alice' });

    writeFileSync(join(dir, 'rotated.json'), JSON.stringify(rotated));
    const retired = parseKeyset(await run('retire', join(dir, 'rotated.json'), first.current), 'retire');
    expect(retired.keys.map((key) => key.kid)).toEqual([rotated.current]);
    const jwks = JSON.parse(await run('public', join(dir, 'rotated.json')));
    expect(jwks.keys.map((key: { kid: string }) => key.kid)).toEqual(rotated.keys.map((key) => key.kid));
    expect(jwks.keys.some((key: object) => 'd' in key)).toBe(false);
    await expect(new KeyRing(retired).verify(token, settings)).rejects.toThrow();
  });
});
