import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { decodeProtectedHeader } from 'jose';
import type { Keyset } from '../../lib/auth/keys.ts';
import { localCredentials, projectRoot } from '../../scripts/local-stack.ts';
import { testStack } from '../support/stack-env.ts';
import { createTestUser } from '../support/users.ts';

/**
 * The keys of a deployed stage: from SSM Parameter Store, put there as README "Deploy" says (the
 * private keyset a SecureString, its public half a String), read by the service's own SSM client from
 * the emulator's SSM (moto_server and LocalStack serve it beside S3). The test stack signs with a key
 * file, so without this the path every deployed cold start takes would never run here.
 *
 * Each step runs as the function that takes it on AWS (tests/support/as-function.ts), so the run's IAM
 * check holds its SSM reads to that function's role: sign-in may read the private keyset, a route that
 * checks tokens and the JWKS route only the public one.
 *
 * The identity modules read their configuration on first use: imported after it is set.
 */

const privateName = process.env.JWT_KEYS_PARAMETER!;
const publicName = process.env.JWT_PUBLIC_KEYS_PARAMETER!;
const saved = { file: process.env.JWT_KEYS_FILE, ssm: process.env.AWS_ENDPOINT_URL_SSM };
delete process.env.JWT_KEYS_FILE;
process.env.AWS_ENDPOINT_URL_SSM = testStack().s3Endpoint;
const { handler: signInHandler } = await import('../../functions/auth-signin.ts');
const { handler: jobsListHandler } = await import('../../functions/jobs-list.ts');
const { handler: jwksHandler } = await import('../../functions/well-known-jwks.ts');
const { invoke } = await import('../support/events.ts');

afterAll(() => {
  process.env.JWT_KEYS_FILE = saved.file;
  if (saved.ssm === undefined) delete process.env.AWS_ENDPOINT_URL_SSM;
  else process.env.AWS_ENDPOINT_URL_SSM = saved.ssm;
});

/** `npm run -s keys -- <args>`: what an operator runs before the first deploy. */
async function keysCli(...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, ['scripts/keys.ts', ...args], {
    cwd: projectRoot,
  });
  return stdout;
}

/**
 * moto_server serves SSM beside S3. The LocalStack run starts S3 and DynamoDB only
 * (scripts/localstack.ts): with SSM too, its step took 85-100 s longer in two CI runs, cause not
 * found, and CI runs near its 25-minute aim. So the path runs on moto.
 */
const ssmServed = testStack().emulator?.s3 === 'moto';
const itWithSsm = ssmServed ? it : it.skip;

itWithSsm(
  'signs with the SecureString keyset, verifies and publishes with the public parameter only',
  async () => {
    expect(privateName).toMatch(/^\/file-jobs\/test\/jwt-keys$/);
    expect(publicName).toMatch(/^\/file-jobs\/test\/jwt-public-keys$/);
    const keysetText = await keysCli('generate');
    const keyset = JSON.parse(keysetText) as Keyset;
    const dir = mkdtempSync(join(tmpdir(), 'file-jobs-ssm-keys-'));
    let jwks: string;
    try {
      writeFileSync(join(dir, 'keys.json'), keysetText, { mode: 0o600 });
      jwks = await keysCli('public', join(dir, 'keys.json'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // README "Deploy", step 1: aws ssm put-parameter … --type SecureString / --type String.
    const ssm = new SSMClient({
      region: testStack().region,
      endpoint: testStack().s3Endpoint,
      credentials: {
        accessKeyId: localCredentials.AWS_ACCESS_KEY_ID,
        secretAccessKey: localCredentials.AWS_SECRET_ACCESS_KEY,
      },
    });
    try {
      await ssm.send(
        new PutParameterCommand({
          Name: privateName,
          Type: 'SecureString',
          Value: keysetText,
          Overwrite: true,
        }),
      );
      await ssm.send(
        new PutParameterCommand({ Name: publicName, Type: 'String', Value: jwks, Overwrite: true }),
      );
    } finally {
      ssm.destroy();
    }

    const user = await createTestUser('ssm');
    // invoke() runs each handler as its function, so the IAM check holds its reads to its role.
    const signedIn = await invoke(signInHandler, {
      method: 'POST',
      path: '/auth/signin',
      body: { username: user.username, password: user.password },
    });
    expect(signedIn.status).toBe(200);
    // Signed with the parameter's current key, not the test stack's key file.
    expect(decodeProtectedHeader(signedIn.body.token).kid).toBe(keyset.current);

    const published = await invoke(jwksHandler, { path: '/.well-known/jwks.json' });
    expect(published.status).toBe(200);
    expect(published.body.keys.map((key: { kid: string }) => key.kid)).toEqual(
      keyset.keys.map((key) => key.kid),
    );
    // The public half only: no private member of any key.
    for (const key of published.body.keys) expect(key).not.toHaveProperty('d');

    // Past the keys' cache bound (JWT_KEYS_MAX_AGE_SECONDS, 2 s on the test stack), so that the route
    // reads the public parameter itself, as a container of its own would.
    await new Promise((resolve) =>
      setTimeout(resolve, (Number(process.env.JWT_KEYS_MAX_AGE_SECONDS) + 0.5) * 1000),
    );
    const listed = await invoke(jobsListHandler, {
      path: '/jobs',
      headers: { authorization: `Bearer ${signedIn.body.token}` },
    });
    expect(listed.status).toBe(200);

    // Each read was made, and recorded for the IAM check as its function's.
    const reads = readFileSync(process.env.TEST_AWS_CALL_AUDIT_FILE!, 'utf8')
      .split('\n')
      .filter((line) => line.includes('"operation":"GetParameter"'))
      .map((line) => {
        const call = JSON.parse(line) as { function: string; input: { Name: string } };
        return `${call.function.split('-').at(-1)} ${call.input.Name}`;
      });
    expect(new Set(reads)).toEqual(
      new Set([`authSignin ${privateName}`, `wellKnownJwks ${publicName}`, `jobsList ${publicName}`]),
    );
  },
);
