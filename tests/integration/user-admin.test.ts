import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { projectRoot } from '../../scripts/local-stack.ts';
import {
  NO_LOCAL_STACK,
  type PasswordInput,
  readPassword,
  resolveTarget,
  stripOneNewline,
  UsageError,
} from '../../scripts/user.ts';
import { api, expectError, signIn } from '../support/http.ts';
import { testStack } from '../support/stack-env.ts';
import { testUserStore } from '../support/users.ts';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * `node scripts/user.ts <args>` against the test stack's users table, as an operator would run it.
 * The environment is minimal on purpose: the table and endpoint come from the flags, not from the
 * AWS_ENDPOINT_URL_* variables the test workers inherit.
 */
function user(args: string[], stdin = ''): Promise<Run> {
  const stack = testStack();
  const child = spawn(
    process.execPath,
    [
      'scripts/user.ts',
      ...args,
      '--endpoint',
      stack.dynamodbEndpoint,
      '--table',
      stack.tables.users,
      '--region',
      stack.region,
    ],
    {
      cwd: projectRoot,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        AWS_ACCESS_KEY_ID: 'local',
        AWS_SECRET_ACCESS_KEY: 'local',
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    stdout += text;
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  // The script may exit before reading stdin (a bad username); that is not the test's failure.
  child.stdin.on('error', () => {});
  child.stdin.end(stdin);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A failed run: the exit code and exactly one line on stderr, with no stack trace. */
function expectFailure(run: Run, code: number, message: RegExp) {
  expect({ code: run.code, stdout: run.stdout }).toEqual({ code, stdout: '' });
  const lines = run.stderr.split('\n').filter(Boolean);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(message);
  expect(run.stderr).not.toMatch(/^\s+at /m);
  expect(run.stderr).not.toMatch(/node:internal|\.ts:\d+/);
}

const signInStatus = async (username: string, password: string) =>
  (await api('/auth/signin', { method: 'POST', body: { username, password } })).status;

const freshName = () => `cli-${randomUUID().slice(0, 8)}`;

describe('npm run user (scripts/user.ts) against the local stack', () => {
  it('adds a user who can then sign in through the API, and lists it without a hash', async () => {
    const name = freshName();
    // A trailing newline, as `echo` adds, is not part of the password.
    const added = await user(['add', name], 'first-password-1\n');
    expect(added).toMatchObject({ code: 0, stderr: '' });
    expect(added.stdout).toMatch(new RegExp(`^added user ${name}\\b`));

    await expect(signIn(name, 'first-password-1')).resolves.toEqual(expect.any(String));

    const listed = await user(['list']);
    expect(listed.code).toBe(0);
    const row = listed.stdout.split('\n').find((line) => line.startsWith(`${name}\t`));
    expect(row).toMatch(new RegExp(`^${name}\\t\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z$`));
    expect(listed.stdout).not.toMatch(/scrypt|passwordHash/);

    const json = await user(['list', '--json']);
    expect(json.code).toBe(0);
    const users = JSON.parse(json.stdout) as Record<string, string>[];
    expect(users).toContainEqual({
      username: name,
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
    });
    expect(json.stdout).not.toMatch(/scrypt|passwordHash/);
  });

  it('refuses to add a user twice: exit 1 and one line', async () => {
    const name = freshName();
    expect((await user(['add', name], 'some-password-1')).code).toBe(0);
    expectFailure(await user(['add', name], 'other-password-2'), 1, /exists/);
    // The first password still stands.
    await expect(signIn(name, 'some-password-1')).resolves.toEqual(expect.any(String));
  });

  it('passwd replaces the password: the old one gets 401, the new one signs in', async () => {
    const name = freshName();
    expect((await user(['add', name], 'old-password-1')).code).toBe(0);
    const changed = await user(['passwd', name], 'new-password-2');
    expect(changed).toMatchObject({ code: 0, stderr: '' });

    expectError(
      await api('/auth/signin', { method: 'POST', body: { username: name, password: 'old-password-1' } }),
      401,
      'InvalidCredentials',
    );
    await expect(signIn(name, 'new-password-2')).resolves.toEqual(expect.any(String));

    expectFailure(await user(['passwd', freshName()], 'whatever-password'), 1, /no user/);
  });

  it('remove deletes the user: sign-in then gets 401, and a second remove fails with exit 1', async () => {
    const name = freshName();
    expect((await user(['add', name], 'remove-me-please')).code).toBe(0);
    const removed = await user(['remove', name]);
    expect(removed).toMatchObject({ code: 0, stderr: '' });
    expect(removed.stdout).toMatch(new RegExp(`^removed user ${name}\\b`));

    expect(await signInStatus(name, 'remove-me-please')).toBe(401);
    expect(await testUserStore().get(name)).toBeUndefined();
    expectFailure(await user(['remove', name]), 1, /no user/);
  });

  // The test stack keeps a user's record at most AUTH_USER_CACHE_SECONDS=2 (global-setup.ts).
  it('revoke ends every session: the token is refused within the bound, a new sign-in works', async () => {
    const name = freshName();
    expect((await user(['add', name], 'revoke-me-please')).code).toBe(0);
    const token = await signIn(name, 'revoke-me-please');
    expect((await api('/files', { token })).status).toBe(200);

    const revoked = await user(['revoke', name]);
    expect(revoked).toMatchObject({ code: 0, stderr: '' });
    expect(revoked.stdout).toMatch(new RegExp(`^revoked the tokens of ${name}\\b`));
    const fresh = await signIn(name, 'revoke-me-please');
    expect((await api('/files', { token: fresh })).status).toBe(200);

    const started = Date.now();
    while ((await api('/files', { token })).status !== 401) {
      expect(Date.now() - started).toBeLessThan(6000);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const refused = expectError(await api('/files', { token }), 401, 'Unauthorized');
    expect(refused.message).toBe('the token has been revoked; sign in again');
    expect((await api('/files', { token: fresh })).status).toBe(200);

    expectFailure(await user(['revoke', freshName()]), 1, /no user/);
  });

  it.each([
    ['add', '../evil'],
    ['add', 'UPPER'],
    ['add', 'a'],
    ['passwd', '../evil'],
    ['remove', 'a/b'],
    ['revoke', 'A B'],
  ])('%s %j: exit 2, one line, nothing written', async (command, name) => {
    expectFailure(await user([command, name], 'a-valid-password'), 2, /^error: invalid username .*a-z 0-9/);
  });

  it('refuses empty and short passwords from stdin and creates no one', async () => {
    const name = freshName();
    expectFailure(await user(['add', name], ''), 2, /password is empty/);
    expectFailure(await user(['add', name], '\n'), 2, /password is empty/);
    expectFailure(await user(['add', name], 'short\n'), 2, /too short/);
    expect(await testUserStore().get(name)).toBeUndefined();
  });

  it('answers usage errors with exit 2', async () => {
    expect((await user(['frobnicate'])).code).toBe(2);
    expect((await user(['add'])).code).toBe(2);
  });
});

describe('scripts/user.ts in-process', () => {
  it('without a stack file or --stage, says to run npm start', async () => {
    const missing = `/nonexistent/${randomUUID()}/stack.json`;
    const attempt = resolveTarget({}, { stackFile: missing });
    await expect(attempt).rejects.toThrow(UsageError);
    await expect(attempt).rejects.toThrow(NO_LOCAL_STACK);
  });

  it('a deployed stage uses the resolved table and region, default credentials and no endpoint', async () => {
    const resolve = async () =>
      ({
        provider: { region: 'eu-central-1', environment: { USERS_TABLE: 'file-jobs-prod-users' } },
        resources: { Resources: {} },
      }) as any;
    await expect(resolveTarget({ stage: 'prod' }, { resolve })).resolves.toEqual({
      stage: 'prod',
      table: 'file-jobs-prod-users',
      region: 'eu-central-1',
      endpoint: undefined,
    });
    await expect(resolveTarget({ stage: 'prod', region: 'us-west-2' }, { resolve })).resolves.toMatchObject({
      region: 'us-west-2',
      table: 'file-jobs-prod-users',
    });
  });

  it('strips exactly one trailing newline', () => {
    expect(stripOneNewline('pw\n')).toBe('pw');
    expect(stripOneNewline('pw\r\n')).toBe('pw');
    expect(stripOneNewline('pw\n\n')).toBe('pw\n');
    expect(stripOneNewline(' pw ')).toBe(' pw ');
  });

  /** A fake terminal: typed text goes in, everything the script shows is collected. */
  function terminal() {
    const input = Object.assign(new PassThrough(), {
      isTTY: true,
      setRawMode: () => input,
    }) as unknown as PasswordInput & PassThrough;
    const output = new PassThrough();
    let shown = '';
    output.setEncoding('utf8').on('data', (text: string) => {
      shown += text;
    });
    const typeAfter = async (prompt: string, text: string) => {
      while (!shown.includes(prompt)) await new Promise((resolve) => setTimeout(resolve, 5));
      input.write(text);
    };
    return { input, output, shown: () => shown, typeAfter };
  }

  it('on a terminal, asks twice without echoing', async () => {
    const tty = terminal();
    const password = readPassword(tty.input, tty.output, 'alice');
    await tty.typeAfter('new password for alice: ', 'correct horse\r');
    await tty.typeAfter('again: ', 'correct horse\r');
    await expect(password).resolves.toBe('correct horse');
    expect(tty.shown()).not.toContain('correct');
  });

  it('on a terminal, refuses two different answers', async () => {
    const tty = terminal();
    const password = readPassword(tty.input, tty.output, 'alice');
    await tty.typeAfter('new password for alice: ', 'correct horse\r');
    await tty.typeAfter('again: ', 'battery staple\r');
    await expect(password).rejects.toThrow('the passwords do not match');
  });
});
