import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { decodeProtectedHeader, importJWK, SignJWT } from 'jose';
import type { Keyset } from '../../lib/auth/keys.ts';
import { projectRoot } from '../../scripts/local-stack.ts';
import { createTestUser, testUserStore } from '../support/users.ts';

/**
 * Key rotation in-process, on a keyset file of this test's own: retiring a key refuses its tokens,
 * which must not happen to the shared test stack's keys while other files use them. The identity
 * modules read their configuration on first use, so they are imported after it is set.
 */

const dir = mkdtempSync(join(tmpdir(), 'file-jobs-rotation-'));
const keysFile = join(dir, 'jwt-keys.json');
const MAX_AGE_SECONDS = 3;
const saved = { file: process.env.JWT_KEYS_FILE, maxAge: process.env.JWT_KEYS_MAX_AGE_SECONDS };
process.env.JWT_KEYS_FILE = keysFile;
process.env.JWT_KEYS_MAX_AGE_SECONDS = String(MAX_AGE_SECONDS);
const { authenticate } = await import('../../lib/auth/authenticate.ts');
const { signIn } = await import('../../lib/auth/signin.ts');
const { handler: jwksHandler } = await import('../../functions/well-known-jwks.ts');
const { invoke } = await import('../support/events.ts');

afterAll(() => {
  process.env.JWT_KEYS_FILE = saved.file;
  process.env.JWT_KEYS_MAX_AGE_SECONDS = saved.maxAge;
  rmSync(dir, { recursive: true, force: true });
});

/** `npm run -s keys -- <args> > new`, then the new file replaces the keyset (a rename: never half a file). */
async function keys(...args: string[]): Promise<Keyset> {
  const { stdout } = await promisify(execFile)(process.execPath, ['scripts/keys.ts', ...args], {
    cwd: projectRoot,
  });
  const next = `${keysFile}.${randomUUID()}.tmp`;
  writeFileSync(next, stdout);
  renameSync(next, keysFile);
  return JSON.parse(stdout) as Keyset;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function eventually(deadlineMs: number, probe: () => Promise<boolean>) {
  const started = Date.now();
  while (!(await probe())) {
    if (Date.now() - started > deadlineMs) throw new Error(`not within ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return Date.now() - started;
}

const accepted = (token: string) =>
  authenticate(bearer(token)).then(
    () => true,
    () => false,
  );

describe('key rotation reaches a warm container without a restart', () => {
  it('verifies a new kid at once, signs with the new key within the bound, and refuses a retired key within it', async () => {
    await keys('generate');
    const user = await createTestUser('rotation');
    const first = (await signIn(user.username, user.password, '10.9.0.1')).token;
    const firstKid = decodeProtectedHeader(first).kid;
    await expect(authenticate(bearer(first))).resolves.toMatchObject({ username: user.username });
    const warmedAt = Date.now();

    const rotated = await keys('rotate', keysFile);
    const key = rotated.keys.find((candidate) => candidate.kid === rotated.current)!;
    const now = Math.floor(Date.now() / 1000);
    const record = await testUserStore().get(user.username);
    const newKidToken = await new SignJWT({ jti: randomUUID(), ver: record!.tokenVersion })
      .setProtectedHeader({ alg: 'EdDSA', kid: rotated.current, typ: 'JWT' })
      .setSubject(user.username)
      .setIssuer(`file-jobs/${process.env.STAGE ?? 'test'}`)
      .setAudience('file-jobs')
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(await importJWK(key, 'EdDSA'));
    // Still inside the bound, so the cached keys are what this container has: the unknown kid alone
    // makes it read them again.
    await expect(authenticate(bearer(newKidToken))).resolves.toMatchObject({ username: user.username });
    expect(Date.now() - warmedAt).toBeLessThan(MAX_AGE_SECONDS * 1000);

    const bound = (MAX_AGE_SECONDS + 2) * 1000;
    await eventually(bound, async () => {
      const token = (await signIn(user.username, user.password, '10.9.0.1')).token;
      return decodeProtectedHeader(token).kid === rotated.current;
    });
    // The old key stays in the set, public half only: tokens already issued keep working.
    expect(rotated.keys.find((candidate) => candidate.kid === firstKid)).not.toHaveProperty('d');
    await expect(authenticate(bearer(first))).resolves.toMatchObject({ username: user.username });

    await keys('retire', keysFile, firstKid!);
    await eventually(bound, async () => !(await accepted(first)));
    await expect(authenticate(bearer(first))).rejects.toMatchObject({
      status: 401,
      message: 'the token is not valid',
    });
    await expect(authenticate(bearer(newKidToken))).resolves.toMatchObject({ username: user.username });
    const published = (await invoke(jwksHandler)).body.keys.map((jwk: { kid: string }) => jwk.kid);
    expect(published).toEqual([rotated.current]);
  });
});
