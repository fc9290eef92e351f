import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { decodeProtectedHeader, importJWK, SignJWT } from 'jose';
import type { Keyset } from '../../lib/auth/keys.ts';
import { hashPassword } from '../../lib/auth/passwords.ts';
import { projectRoot } from '../../scripts/local-stack.ts';
import { changePassword, removeUser } from '../../scripts/user.ts';
import { api, expectError, signIn } from '../support/http.ts';
import { testStack } from '../support/stack-env.ts';
import { createTestUser, testUserStore } from '../support/users.ts';

/**
 * What an operator changes reaches warm containers within the documented bounds, with no restart:
 * a removed user, a changed password and `npm run user -- revoke` end the tokens already issued; a
 * key rotation makes sign-in sign with the new key and the verifiers accept it.
 *
 * The test stack runs with JWT_KEYS_MAX_AGE_SECONDS=2 and AUTH_USER_CACHE_SECONDS=2
 * (tests/support/global-setup.ts).
 */

const BOUND_SECONDS = 2;
/** The bound, plus time for a request on a loaded machine. */
const DEADLINE_MS = (BOUND_SECONDS + 4) * 1000;

/** Calls `probe` until it returns true or the deadline passes; resolves to the milliseconds it took. */
async function within(deadlineMs: number, probe: () => Promise<boolean>): Promise<number> {
  const started = Date.now();
  while (!(await probe())) {
    if (Date.now() - started > deadlineMs) throw new Error(`not within ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return Date.now() - started;
}

const filesStatus = async (token: string) => (await api('/files', { token })).status;

describe('revoking tokens', () => {
  it('removing a user refuses their token within the bound', async () => {
    const user = await createTestUser('gone');
    const token = await user.token();
    expect(await filesStatus(token)).toBe(200);

    await removeUser(testUserStore(), user.username);
    const ms = await within(DEADLINE_MS, async () => (await filesStatus(token)) === 401);
    expect(ms).toBeLessThan(DEADLINE_MS);
    const refused = expectError(await api('/files', { token }), 401, 'Unauthorized');
    expect(refused.message).toMatch(/no longer exists/);
    // Every protected route, not just one: the check is in the one place tokens are checked.
    expectError(await api('/jobs', { token }), 401, 'Unauthorized');
    expectError(await api('/upload', { method: 'POST', token, body: {} }), 401, 'Unauthorized');
  });

  it('changing the password refuses the old tokens within the bound; a new sign-in works at once', async () => {
    const user = await createTestUser('repass');
    const old = await user.token();
    expect(await filesStatus(old)).toBe(200);

    // The script's own code path; cheap scrypt parameters keep the test fast (the hash carries them).
    await changePassword(
      testUserStore(),
      user.username,
      async () => 'a-new-password-1',
      (password) => hashPassword(password, { logN: 10, r: 8, p: 1 }),
    );
    const fresh = await signIn(user.username, 'a-new-password-1');
    // The container may still hold the old version: a newer token must not wait for it.
    expect(await filesStatus(fresh)).toBe(200);
    await within(DEADLINE_MS, async () => (await filesStatus(old)) === 401);
    expect(expectError(await api('/files', { token: old }), 401).message).toMatch(/revoked/);
    expect(await filesStatus(fresh)).toBe(200);
  });
});

const keysFile = () => process.env.JWT_KEYS_FILE!;
const readKeyset = (): Keyset => JSON.parse(readFileSync(keysFile(), 'utf8'));

/**
 * The README's local rotation, as an operator types it: `npm run -s keys -- rotate <file> > new`,
 * then the new file replaces the old one (a rename, so no reader ever sees half a file).
 */
async function rotateKeysFile() {
  const { stdout } = await promisify(execFile)(process.execPath, ['scripts/keys.ts', 'rotate', keysFile()], {
    cwd: projectRoot,
  });
  const next = `${keysFile()}.${randomUUID()}.tmp`;
  writeFileSync(next, stdout);
  renameSync(next, keysFile());
  return JSON.parse(stdout) as Keyset;
}

/**
 * Only adds a key to the shared stack's keyset: every token other test files hold stays valid, and
 * the rotated keyset is left in place (restoring it would drop a key that tokens issued meanwhile
 * carry). Retiring a key, which does refuse tokens, is tested in-process with a keyset of its own
 * (tests/integration/key-rotation.test.ts).
 */
describe('rotating the signing keys on a running stack', () => {
  it('verifies the new key at once, signs with it within the bound, and keeps the old tokens valid', async () => {
    const user = await createTestUser('rotate');
    const before = readKeyset();
    const oldToken = await user.token();
    expect(decodeProtectedHeader(oldToken).kid).toBe(before.current);
    expect(await filesStatus(oldToken)).toBe(200);

    const rotated = await rotateKeysFile();
    expect(rotated.current).not.toBe(before.current);
    expect(rotated.keys.map((key) => key.kid)).toContain(before.current);

    // A token from the new key: a warm verifier reads the keys again at once when it sees an unknown
    // kid, unless it did so for another unknown kid in the last few seconds (auth.test.ts sends
    // some): then its bound. The immediate path is pinned in tests/integration/key-rotation.test.ts.
    const record = await testUserStore().get(user.username);
    const newKey = rotated.keys.find((key) => key.kid === rotated.current)!;
    const now = Math.floor(Date.now() / 1000);
    const signedWithNewKey = await new SignJWT({ jti: randomUUID(), ver: record!.tokenVersion })
      .setProtectedHeader({ alg: 'EdDSA', kid: rotated.current, typ: 'JWT' })
      .setSubject(user.username)
      .setIssuer(`file-jobs/${testStack().stage}`)
      .setAudience('file-jobs')
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(await importJWK(newKey, 'EdDSA'));
    await within(DEADLINE_MS, async () => (await filesStatus(signedWithNewKey)) === 200);

    // The warm sign-in container takes the new current key within the bound.
    let latest = '';
    await within(DEADLINE_MS, async () => {
      latest = await user.token();
      return decodeProtectedHeader(latest).kid === rotated.current;
    });
    expect(await filesStatus(latest)).toBe(200);
    expect(await filesStatus(oldToken)).toBe(200);
    await within(DEADLINE_MS, async () => {
      const kids = (await api('/.well-known/jwks.json')).body.keys.map((key: { kid: string }) => key.kid);
      return kids.includes(rotated.current) && kids.includes(before.current);
    });
  });
});
