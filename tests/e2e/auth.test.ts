import { createPublicKey, randomUUID } from 'node:crypto';
import { base64url, createRemoteJWKSet, importJWK, jwtVerify, SignJWT } from 'jose';
import { generateSigningKey } from '../../lib/auth/key-generation.ts';
import { openApiDocument } from '../../lib/openapi/document.ts';
import { DEMO_USER, resolveService } from '../../scripts/local-stack.ts';
import { api, expectError, signIn } from '../support/http.ts';
import { testStack } from '../support/stack-env.ts';
import { serviceKeyset, signWithServiceKey } from '../support/tokens.ts';
import { createTestUser, testUserStore } from '../support/users.ts';

/** The operations the OpenAPI document declares public (`security: []`); every other one needs a token. */
const PUBLIC_ROUTES = new Set(
  Object.entries(openApiDocument().paths as Record<string, Record<string, { security?: unknown[] }>>).flatMap(
    ([path, methods]) =>
      Object.entries(methods).flatMap(([method, operation]) =>
        operation.security?.length === 0 ? [`${method.toUpperCase()} ${path}`] : [],
      ),
  ),
);

/** Every route serverless.yml declares that is not public, with path parameters filled in. */
async function protectedRoutes(): Promise<{ method: string; path: string }[]> {
  const service = (await resolveService('test')) as unknown as {
    functions: Record<string, { events?: { httpApi?: { method: string; path: string } | string }[] }>;
  };
  // `httpApi: "*"` is the catch-all for unmatched routes, not a route of its own.
  return Object.values(service.functions)
    .flatMap((fn) => fn.events ?? [])
    .flatMap((event) => (typeof event.httpApi === 'object' ? [event.httpApi] : []))
    .filter((route) => !PUBLIC_ROUTES.has(`${route.method} ${route.path}`))
    .map((route) => ({ method: route.method, path: route.path.replace(/\{[^}]+\}/g, 'some-id') }));
}

const keyset = serviceKeyset;

const stack = () => testStack();
const issuer = () => `file-jobs/${stack().stage}`;

describe('POST /auth/signin', () => {
  it('issues a bearer token for the demo user', async () => {
    const response = await api('/auth/signin', { method: 'POST', body: DEMO_USER });
    expect(response.status).toBe(200);
    expect(response.body).toEqual({
      token: expect.any(String),
      tokenType: 'Bearer',
      expiresIn: 3600,
      sessionExpiresAt: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T/),
    });
    expect(response.headers.get('cache-control')).toBe('no-store');
  });

  it('answers a wrong password and an unknown user with the same 401', async () => {
    const wrong = await api('/auth/signin', {
      method: 'POST',
      body: { username: DEMO_USER.username, password: 'nope' },
    });
    const unknown = await api('/auth/signin', {
      method: 'POST',
      body: { username: 'nobody-here', password: 'nope' },
    });
    const a = expectError(wrong, 401, 'InvalidCredentials');
    const b = expectError(unknown, 401, 'InvalidCredentials');
    expect({ ...a, requestId: '' }).toEqual({ ...b, requestId: '' });
  });

  it('answers malformed requests with 400', async () => {
    expectError(
      await api('/auth/signin', {
        method: 'POST',
        body: '{"username":',
        headers: { 'content-type': 'application/json' },
      }),
      400,
      'MalformedJson',
    );
    expectError(
      await api('/auth/signin', { method: 'POST', body: { username: 'avijeet' } }),
      400,
      'ValidationError',
    );
    expectError(
      await api('/auth/signin', { method: 'POST', body: { username: 1, password: [] } }),
      400,
      'ValidationError',
    );
    expectError(
      await api('/auth/signin', { method: 'POST', body: { username: 'x'.repeat(500), password: 'p' } }),
      400,
      'ValidationError',
    );
  });

  it('throttles repeated failures with 429 and Retry-After, even for the right password', async () => {
    const user = await createTestUser('throttled');
    const attempt = (password: string) =>
      api('/auth/signin', { method: 'POST', body: { username: user.username, password } });
    for (let i = 0; i < 4; i++) expectError(await attempt('wrong'), 401, 'InvalidCredentials');
    const locked = await attempt('wrong');
    expectError(locked, 429, 'TooManyRequests');
    expect(Number(locked.headers.get('retry-after'))).toBeGreaterThanOrEqual(29);
    const stillLocked = await attempt(user.password);
    expectError(stillLocked, 429, 'TooManyRequests');
    expect(Number(stillLocked.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  // Each guess takes its place in the count before its password is checked, so guesses sent at once
  // cannot all slip past the limit: 5 per user (SIGNIN_MAX_FAILURES_PER_USER), the 5th locks.
  it('checks at most the limit of 12 guesses sent at once, then refuses the right password', async () => {
    const user = await createTestUser('burst');
    const attempt = (password: string) =>
      api('/auth/signin', { method: 'POST', body: { username: user.username, password } });
    const guesses = await Promise.all(Array.from({ length: 12 }, () => attempt('wrong')));
    const right = await attempt(user.password);

    const statuses = guesses.map((guess) => guess.status).sort();
    // Four wrong answers, then the fifth wrong guess locks; the other seven never reach scrypt.
    expect(statuses).toEqual([...Array(4).fill(401), ...Array(8).fill(429)]);
    for (const guess of guesses.filter((guess) => guess.status === 429)) {
      expectError(guess, 429, 'TooManyRequests');
      expect(Number(guess.headers.get('retry-after'))).toBeGreaterThan(0);
    }
    expectError(right, 429, 'TooManyRequests');
    expect(Number(right.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('clears the failure count of a username on success', async () => {
    const user = await createTestUser('reset');
    const attempt = (password: string) =>
      api('/auth/signin', { method: 'POST', body: { username: user.username, password } });
    for (let i = 0; i < 4; i++) expectError(await attempt('wrong'), 401);
    expect((await attempt(user.password)).status).toBe(200);
    for (let i = 0; i < 4; i++) expectError(await attempt('wrong'), 401);
  });
});

/** A token's claims, read without checking it (the service has checked it). */
const claimsOf = (token: string) =>
  JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;

const HOUR = 3600;
/** The test stack's SESSION_MAX_HOURS: the default, 168. */
const SESSION_MAX_SECONDS = 168 * HOUR;

/** A token of `username` signed with the service's key and the user's current token version, plus `claims`. */
async function userToken(
  username: string,
  claims: Record<string, unknown> = {},
  options: Parameters<typeof signWithServiceKey>[1] = {},
) {
  const { tokenVersion } = (await testUserStore().get(username))!;
  return signWithServiceKey(
    { sub: username, iss: issuer(), aud: 'file-jobs', ver: tokenVersion, ...claims },
    options,
  );
}

describe('POST /auth/renew', () => {
  it('gives a valid token a new one of the same sign-in: same auth_time and version, a new jti, a full life', async () => {
    const user = await createTestUser('renew');
    const signedIn = await api('/auth/signin', {
      method: 'POST',
      body: { username: user.username, password: user.password },
    });
    const first = signedIn.body.token as string;
    const renewed = await api('/auth/renew', { method: 'POST', token: first });
    expect(renewed.status).toBe(200);
    expect(renewed.headers.get('cache-control')).toBe('no-store');
    expect(renewed.body).toEqual({
      token: expect.any(String),
      tokenType: 'Bearer',
      expiresIn: 3600,
      sessionExpiresAt: signedIn.body.sessionExpiresAt,
    });
    const [before, after] = [claimsOf(first), claimsOf(renewed.body.token)];
    expect(after).toMatchObject({ sub: user.username, auth_time: before.auth_time, ver: before.ver });
    expect(after.jti).not.toBe(before.jti);
    expect(Date.parse(signedIn.body.sessionExpiresAt) / 1000).toBe(
      (before.auth_time as number) + SESSION_MAX_SECONDS,
    );
    // The new token works, and so does renewing it again.
    expect((await api('/files', { token: renewed.body.token })).status).toBe(200);
    expect((await api('/auth/renew', { method: 'POST', token: renewed.body.token })).status).toBe(200);
  });

  it("never goes past the sign-in's end: a token near it gets the time left, one past it 401", async () => {
    const user = await createTestUser('renew');
    const now = Math.floor(Date.now() / 1000);
    const token = (signedInAt: number) => userToken(user.username, { auth_time: signedInAt });

    const nearEnd = now - SESSION_MAX_SECONDS + 120;
    const last = await api('/auth/renew', { method: 'POST', token: await token(nearEnd) });
    expect(last.status).toBe(200);
    expect(last.body.expiresIn).toBeGreaterThan(60);
    expect(last.body.expiresIn).toBeLessThanOrEqual(120);
    expect(Date.parse(last.body.sessionExpiresAt) / 1000).toBe(nearEnd + SESSION_MAX_SECONDS);
    expect(claimsOf(last.body.token).exp).toBe(nearEnd + SESSION_MAX_SECONDS);

    // Still a valid token (it expires in 10 minutes), but its sign-in has ended.
    const ended = await api('/auth/renew', {
      method: 'POST',
      token: await token(now - SESSION_MAX_SECONDS - 1),
    });
    expect(expectError(ended, 401, 'Unauthorized').message).toMatch(/SESSION_MAX_HOURS/);
  });

  it('a token without auth_time (issued before renewals) counts its sign-in from its iat', async () => {
    const user = await createTestUser('renew');
    const old = await userToken(user.username);
    const renewed = await api('/auth/renew', { method: 'POST', token: old });
    expect(renewed.status).toBe(200);
    expect(claimsOf(renewed.body.token).auth_time).toBe(claimsOf(old).iat);
  });

  it('refuses what any route refuses: no token, an expired one, a revoked one', async () => {
    expectError(await api('/auth/renew', { method: 'POST' }), 401, 'Unauthorized');
    const user = await createTestUser('renew');
    const expired = await userToken(user.username, {}, { exp: Math.floor(Date.now() / 1000) - 60 });
    expect(expectError(await api('/auth/renew', { method: 'POST', token: expired }), 401).message).toMatch(
      /expired/,
    );

    const token = await user.token();
    await testUserStore().revokeTokens(user.username);
    // The test stack keeps a user's token version at most AUTH_USER_CACHE_SECONDS=2.
    const until = Date.now() + 10_000;
    let answer = await api('/auth/renew', { method: 'POST', token });
    while (answer.status === 200 && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      answer = await api('/auth/renew', { method: 'POST', token });
    }
    expect(expectError(answer, 401).message).toMatch(/revoked/);
  });
});

describe('POST /auth/signout', () => {
  /** Asks until the answer is not 200: other containers learn of a sign-out within AUTH_USER_CACHE_SECONDS (2 here). */
  async function refusedSoon(ask: () => ReturnType<typeof api>) {
    const until = Date.now() + 10_000;
    let answer = await ask();
    while (answer.status === 200 && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      answer = await ask();
    }
    return answer;
  }

  it("ends that sign-in, renewed tokens too; the same user's other sign-ins go on", async () => {
    const user = await createTestUser('signout');
    const first = await user.token();
    const renewed = (await api('/auth/renew', { method: 'POST', token: first })).body.token as string;
    const elsewhere = await user.token();
    const signedOut = await api('/auth/signout', { method: 'POST', token: renewed });
    expect(signedOut.status).toBe(204);
    expect(signedOut.headers.get('cache-control')).toBe('no-store');
    // A renewal reads the user's record itself: refused at once, in every container.
    for (const token of [first, renewed]) {
      expect(expectError(await api('/auth/renew', { method: 'POST', token }), 401).message).toBe(
        'this sign-in has ended (signed out); sign in again',
      );
    }

    for (const token of [first, renewed]) {
      const answer = await refusedSoon(() => api('/files', { token }));
      expect(expectError(answer, 401).message).toBe('this sign-in has ended (signed out); sign in again');
    }
    expect((await api('/files', { token: elsewhere })).status).toBe(200);
    // Signing out again with a refused token: 401, nothing more to end.
    expectError(await api('/auth/signout', { method: 'POST', token: first }), 401);
  });

  it('a token from before sign-ins had ids: 204, and it ends at its own expiry', async () => {
    const user = await createTestUser('signout');
    const old = await userToken(user.username);
    expect((await api('/auth/signout', { method: 'POST', token: old })).status).toBe(204);
    expect((await api('/files', { token: old })).status).toBe(200);
  });
});

describe('tokens on protected routes', () => {
  let routes: { method: string; path: string }[];
  let token: string;

  beforeAll(async () => {
    [routes, token] = await Promise.all([protectedRoutes(), signIn()]);
    expect(routes.length).toBeGreaterThan(10);
    expect([...PUBLIC_ROUTES].sort()).toEqual([
      'DELETE /auth/session',
      'GET /',
      'GET /.well-known/jwks.json',
      'GET /health',
      'GET /openapi.json',
      'POST /auth/session',
      'POST /auth/signin',
    ]);
  });

  it('accepts both Authorization: Bearer and the seed auth_token header', async () => {
    expect((await api('/files', { token })).status).toBe(200);
    expect((await api('/files', { headers: { auth_token: token } })).status).toBe(200);
  });

  const badTokens: [string, () => Promise<Record<string, string>>][] = [
    ['no token', async () => ({})],
    ['a malformed token', async () => ({ authorization: 'Bearer not-a-jwt' })],
    [
      'a non-Bearer scheme',
      async () => ({ authorization: `Basic ${Buffer.from('avijeet:avijeet@123').toString('base64')}` }),
    ],
    [
      'alg: none',
      async () => {
        const header = base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }));
        const now = Math.floor(Date.now() / 1000);
        const payload = base64url.encode(
          JSON.stringify({
            sub: 'avijeet',
            iss: issuer(),
            aud: 'file-jobs',
            iat: now,
            exp: now + 600,
            jti: randomUUID(),
          }),
        );
        return { authorization: `Bearer ${header}.${payload}.` };
      },
    ],
    [
      'a tampered payload',
      async () => {
        const [header, , signature] = (await signIn()).split('.');
        const now = Math.floor(Date.now() / 1000);
        const payload = base64url.encode(
          JSON.stringify({
            sub: 'someone-else',
            iss: issuer(),
            aud: 'file-jobs',
            iat: now,
            exp: now + 600,
            jti: randomUUID(),
          }),
        );
        return { authorization: `Bearer ${header}.${payload}.${signature}` };
      },
    ],
    [
      'a tampered signature',
      async () => {
        const [header, payload, signature] = (await signIn()).split('.');
        const flipped = `${signature!.slice(0, 10)}${signature![10] === 'A' ? 'B' : 'A'}${signature!.slice(11)}`;
        return { authorization: `Bearer ${header}.${payload}.${flipped}` };
      },
    ],
    [
      'an expired token',
      async () => ({
        authorization: `Bearer ${await signWithServiceKey(
          { sub: 'avijeet', iss: issuer(), aud: 'file-jobs' },
          { exp: Math.floor(Date.now() / 1000) - 60 },
        )}`,
      }),
    ],
    [
      'a wrong issuer',
      async () => ({
        authorization: `Bearer ${await signWithServiceKey({ sub: 'avijeet', iss: 'someone-else', aud: 'file-jobs' })}`,
      }),
    ],
    [
      'a wrong audience',
      async () => ({
        authorization: `Bearer ${await signWithServiceKey({ sub: 'avijeet', iss: issuer(), aud: 'another-api' })}`,
      }),
    ],
    [
      'an unknown kid',
      async () => {
        const stranger = await generateSigningKey('unknown-kid');
        const forged = await new SignJWT({
          sub: 'avijeet',
          iss: issuer(),
          aud: 'file-jobs',
          jti: randomUUID(),
        })
          .setProtectedHeader({ alg: 'EdDSA', kid: 'unknown-kid' })
          .setIssuedAt()
          .setExpirationTime('10m')
          .sign(await importJWK(stranger, 'EdDSA'));
        return { authorization: `Bearer ${forged}` };
      },
    ],
    [
      "a known kid signed by someone else's key",
      async () => {
        const stranger = await generateSigningKey();
        const forged = await new SignJWT({
          sub: 'avijeet',
          iss: issuer(),
          aud: 'file-jobs',
          jti: randomUUID(),
        })
          .setProtectedHeader({ alg: 'EdDSA', kid: keyset().current })
          .setIssuedAt()
          .setExpirationTime('10m')
          .sign(await importJWK(stranger, 'EdDSA'));
        return { authorization: `Bearer ${forged}` };
      },
    ],
    [
      'HS256 keyed with the public key (algorithm confusion)',
      async () => {
        const jwks = (await api('/.well-known/jwks.json')).body;
        const jwk = jwks.keys[0];
        const pem = createPublicKey({ key: jwk, format: 'jwk' }).export({
          type: 'spki',
          format: 'pem',
        }) as string;
        const forged = await new SignJWT({
          sub: 'avijeet',
          iss: issuer(),
          aud: 'file-jobs',
          jti: randomUUID(),
        })
          .setProtectedHeader({ alg: 'HS256', kid: jwk.kid })
          .setIssuedAt()
          .setExpirationTime('10m')
          .sign(new TextEncoder().encode(pem));
        return { authorization: `Bearer ${forged}` };
      },
    ],
  ];

  it.each(badTokens)('rejects %s with 401 on every protected route', async (_name, headersFor) => {
    const headers = await headersFor();
    for (const route of routes) {
      const response = await api(route.path, { method: route.method, headers });
      expect({ route, status: response.status }).toEqual({ route, status: 401 });
      expectError(response, 401, 'Unauthorized');
      // The seed header carries the same token to the same check.
      if (headers.authorization?.startsWith('Bearer ')) {
        const seed = await api(route.path, {
          method: route.method,
          headers: { auth_token: headers.authorization.slice(7) },
        });
        expectError(seed, 401, 'Unauthorized');
      }
    }
  });
});

describe('GET /.well-known/jwks.json', () => {
  it('lets any standard JWT library verify a token from the JWKS URL alone', async () => {
    const token = await signIn();
    const jwks = createRemoteJWKSet(new URL(`${stack().apiUrl}/.well-known/jwks.json`));
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      issuer: issuer(),
      audience: 'file-jobs',
    });
    expect(payload.sub).toBe(DEMO_USER.username);
    expect(protectedHeader.alg).toBe('EdDSA');
  });

  it('publishes no private key material', async () => {
    const response = await api('/.well-known/jwks.json');
    expect(response.status).toBe(200);
    for (const key of response.body.keys) expect(key).not.toHaveProperty('d');
  });
});
