import { createHash } from 'node:crypto';
import { api, expectError } from '../support/http.ts';
import { testStack } from '../support/stack-env.ts';
import { createTestUser, testUserStore } from '../support/users.ts';

/**
 * The web console's session over HTTP (lib/session/cookies.ts): the cookies POST /auth/session sets,
 * the CSRF rules on methods that change something, revocation, sign-out, and GET / itself.
 * serverless-offline sets IS_OFFLINE, so the cookies are the local ones: not Secure, no __Host- prefix.
 */

interface Session {
  username: string;
  cookie: string;
  csrf: string;
  setCookies: string[];
}

async function startSession(username: string, password: string): Promise<Session> {
  const response = await fetch(`${testStack().apiUrl}/auth/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  expect(response.status).toBe(200);
  const setCookies = response.headers.getSetCookie();
  const value = (name: string) => {
    const line = setCookies.find((candidate) => candidate.startsWith(`${name}=`)) ?? '';
    return line.split(';')[0]!.slice(name.length + 1);
  };
  return {
    username,
    cookie: `fj_session=${value('fj_session')}; fj_csrf=${value('fj_csrf')}`,
    csrf: value('fj_csrf'),
    setCookies,
  };
}

/**
 * A Set-Cookie line's attributes, sorted (serverless-offline writes them in its own order and adds
 * Expires beside Max-Age; API Gateway passes the function's line as it is).
 */
const attributesOf = (line: string) =>
  line
    .split(';')
    .slice(1)
    .map((part) => part.trim())
    .filter((part) => !part.startsWith('Expires='))
    .sort();

const withCookie = (session: Session, headers: Record<string, string> = {}) => ({
  cookie: session.cookie,
  ...headers,
});

describe('POST /auth/session', () => {
  it('sets an HttpOnly SameSite=Strict session cookie and a readable CSRF cookie; the token stays out of the body', async () => {
    const user = await createTestUser('session');
    const response = await api('/auth/session', {
      method: 'POST',
      body: { username: user.username, password: user.password },
    });
    expect(response.status).toBe(200);
    expect(response.body).toEqual({
      username: user.username,
      expiresIn: 3600,
      sessionExpiresAt: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T/),
    });
    expect(response.headers.get('cache-control')).toBe('no-store');
    const [session, csrf] = response.headers.getSetCookie();
    expect(attributesOf(session!)).toEqual(['HttpOnly', 'Max-Age=3600', 'Path=/', 'SameSite=Strict']);
    expect(attributesOf(csrf!)).toEqual(['Max-Age=3600', 'Path=/', 'SameSite=Strict']);
    expect(session).toMatch(/^fj_session=[\w-]+\.[\w-]+\.[\w-]+;/);
    expect(csrf).toMatch(/^fj_csrf=[\w-]{43};/);
    // The CSRF token is derived from the session token's sign-in id, so a planted pair cannot be made up.
    const token = session!.split(';')[0]!.slice('fj_session='.length);
    const { sid } = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
    const expected = createHash('sha256').update(`file-jobs csrf v2\0${sid}`).digest('base64url');
    expect(csrf!.split(';')[0]).toBe(`fj_csrf=${expected}`);
  });

  it('answers a wrong password like POST /auth/signin, and sets no cookie', async () => {
    const user = await createTestUser('session');
    const response = await api('/auth/session', {
      method: 'POST',
      body: { username: user.username, password: 'wrong' },
    });
    expect(expectError(response, 401, 'InvalidCredentials').message).toBe(
      'the username or password is wrong',
    );
    expect(response.headers.getSetCookie()).toEqual([]);
  });

  it('refuses a sign-in sent from a page of another origin', async () => {
    const user = await createTestUser('session');
    const response = await api('/auth/session', {
      method: 'POST',
      headers: { origin: 'https://evil.example' },
      body: { username: user.username, password: user.password },
    });
    expectError(response, 403, 'CsrfCheckFailed');
    expect(response.headers.getSetCookie()).toEqual([]);
  });

  it("leaves the seed's POST /auth/signin as it was: the token in the body, no cookie", async () => {
    const user = await createTestUser('session');
    const response = await api('/auth/signin', {
      method: 'POST',
      body: { username: user.username, password: user.password },
    });
    expect(response.body).toEqual({
      token: expect.any(String),
      tokenType: 'Bearer',
      expiresIn: 3600,
      sessionExpiresAt: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T/),
    });
    expect(response.headers.getSetCookie()).toEqual([]);
  });
});

describe('the session cookie on the routes', () => {
  it('signs in GET routes; a method that changes something needs X-CSRF-Token matching the session', async () => {
    const user = await createTestUser('session');
    const session = await startSession(user.username, user.password);
    expect((await api('/auth/session', { headers: withCookie(session) })).body).toEqual({
      username: user.username,
      expiresIn: expect.any(Number),
      sessionExpiresAt: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T/),
    });
    expect((await api('/files', { headers: withCookie(session) })).body).toEqual({ files: [] });

    const kill = (headers: Record<string, string>) =>
      api('/upload/kill', { method: 'DELETE', headers: withCookie(session, headers) });
    expect(expectError(await kill({}), 403, 'CsrfCheckFailed').message).toMatch(/X-CSRF-Token/);
    expect(
      expectError(await kill({ 'x-csrf-token': 'x'.repeat(43) }), 403, 'CsrfCheckFailed').message,
    ).toMatch(/does not match/);
    const other = await startSession(user.username, user.password);
    expectError(await kill({ 'x-csrf-token': other.csrf }), 403, 'CsrfCheckFailed');
    expectError(
      await kill({ 'x-csrf-token': session.csrf, origin: 'https://evil.example' }),
      403,
      'CsrfCheckFailed',
    );
    // Past the checks: the route's own answer (nothing to kill).
    expectError(await kill({ 'x-csrf-token': session.csrf }), 404, 'NoUploadFound');
    const sameOrigin = { 'x-csrf-token': session.csrf, origin: testStack().apiUrl };
    expectError(await kill(sameOrigin), 404, 'NoUploadFound');
  });

  it('uses a token header first: no CSRF token needed, whatever cookie comes along', async () => {
    const user = await createTestUser('session');
    const token = await user.token();
    const response = await api('/upload/kill', {
      method: 'DELETE',
      token,
      headers: { cookie: 'fj_session=garbage; fj_csrf=x' },
    });
    expectError(response, 404, 'NoUploadFound');
  });

  it('without a session or token: 401, as before', async () => {
    expectError(await api('/auth/session'), 401, 'Unauthorized');
    expectError(await api('/files', { headers: { cookie: 'fj_session=not-a-jwt' } }), 401, 'Unauthorized');
  });

  it('is refused once the user revokes their tokens (token versions hold for cookies too)', async () => {
    const user = await createTestUser('session');
    const session = await startSession(user.username, user.password);
    expect((await api('/files', { headers: withCookie(session) })).status).toBe(200);
    await testUserStore().revokeTokens(user.username);
    // The test stack keeps a user's token version at most AUTH_USER_CACHE_SECONDS=2.
    const until = Date.now() + 10_000;
    let status = 200;
    while (status === 200 && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      status = (await api('/files', { headers: withCookie(session) })).status;
    }
    expect(expectError(await api('/files', { headers: withCookie(session) }), 401).message).toMatch(
      /revoked/,
    );
  });
});

describe('POST /auth/session/renew', () => {
  it("puts the same sign-in's next token in the cookies, with its CSRF token; needs the CSRF token itself", async () => {
    const user = await createTestUser('session');
    const session = await startSession(user.username, user.password);
    const renew = (headers: Record<string, string>) =>
      fetch(`${testStack().apiUrl}/auth/session/renew`, {
        method: 'POST',
        headers: withCookie(session, headers),
      });
    expect((await renew({})).status).toBe(403);

    const response = await renew({ 'x-csrf-token': session.csrf });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { username: string; expiresIn: number; sessionExpiresAt: string };
    const signedIn = (await api('/auth/session', { headers: withCookie(session) })).body;
    expect(body).toEqual({
      username: user.username,
      expiresIn: 3600,
      sessionExpiresAt: signedIn.sessionExpiresAt,
    });
    const [cookie, csrf] = response.headers.getSetCookie();
    expect(attributesOf(cookie!)).toEqual(['HttpOnly', 'Max-Age=3600', 'Path=/', 'SameSite=Strict']);
    const token = cookie!.split(';')[0]!.slice('fj_session='.length);
    expect(`fj_session=${token}`).not.toBe(session.cookie.split(';')[0]);
    // The same sign-in, so the same CSRF token: a request the page built before the renewal landed
    // passes with the renewed cookie.
    expect(csrf!.split(';')[0]).toBe(`fj_csrf=${session.csrf}`);
    const renewed: Session = { ...session, cookie: `${cookie!.split(';')[0]}; ${csrf!.split(';')[0]}` };
    const kill = (s: Session, csrfToken: string) =>
      api('/upload/kill', { method: 'DELETE', headers: withCookie(s, { 'x-csrf-token': csrfToken }) });
    expectError(await kill(renewed, session.csrf), 404, 'NoUploadFound');
    const other = await startSession(user.username, user.password);
    expectError(await kill(renewed, other.csrf), 403, 'CsrfCheckFailed');
  });
});

describe('DELETE /auth/session', () => {
  it('clears both cookies, with the CSRF token; without it, 403 and nothing cleared', async () => {
    const user = await createTestUser('session');
    const session = await startSession(user.username, user.password);
    const refused = await api('/auth/session', { method: 'DELETE', headers: withCookie(session) });
    expectError(refused, 403, 'CsrfCheckFailed');
    expect(refused.headers.getSetCookie()).toEqual([]);

    const response = await api('/auth/session', {
      method: 'DELETE',
      headers: withCookie(session, { 'x-csrf-token': session.csrf }),
    });
    expect(response.status).toBe(204);
    const [cleared, clearedCsrf] = response.headers.getSetCookie();
    expect(cleared).toMatch(/^fj_session=;/);
    expect(attributesOf(cleared!)).toEqual(['HttpOnly', 'Max-Age=0', 'Path=/', 'SameSite=Strict']);
    expect(clearedCsrf).toMatch(/^fj_csrf=;/);
    expect(attributesOf(clearedCsrf!)).toEqual(['Max-Age=0', 'Path=/', 'SameSite=Strict']);
  });

  it('signs out without a session too (an expired one, another tab)', async () => {
    expect((await api('/auth/session', { method: 'DELETE' })).status).toBe(204);
    const garbage = { cookie: 'fj_session=not-a-jwt; fj_csrf=x', 'x-csrf-token': 'x' };
    expectError(await api('/auth/session', { method: 'DELETE', headers: garbage }), 403, 'CsrfCheckFailed');
    const stale = 'fj_session=not.a.jwt';
    const csrf = createHash('sha256').update('file-jobs csrf v1\0not.a.jwt').digest('base64url');
    const cleared = await api('/auth/session', {
      method: 'DELETE',
      headers: { cookie: `${stale}; fj_csrf=${csrf}`, 'x-csrf-token': csrf },
    });
    expect(cleared.status).toBe(204);
  });

  it("ends the cookie's sign-in: its token is refused from then on, the user's other sign-ins go on", async () => {
    const user = await createTestUser('session');
    const session = await startSession(user.username, user.password);
    const token = session.cookie.split(';')[0]!.slice('fj_session='.length);
    const other = await user.token();
    const signedOut = await api('/auth/session', {
      method: 'DELETE',
      headers: withCookie(session, { 'x-csrf-token': session.csrf }),
    });
    expect(signedOut.status).toBe(204);
    // Within AUTH_USER_CACHE_SECONDS (2 on the test stack) every container refuses it.
    const until = Date.now() + 10_000;
    let answer = await api('/files', { token });
    while (answer.status === 200 && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      answer = await api('/files', { token });
    }
    expect(expectError(answer, 401).message).toMatch(/signed out/);
    expect(expectError(await api('/auth/renew', { method: 'POST', token }), 401).message).toMatch(
      /signed out/,
    );
    expect((await api('/files', { token: other })).status).toBe(200);
  });
});

describe('GET /', () => {
  it('serves the console: one HTML page, gzipped when asked, its inline script allowed by hash only', async () => {
    const response = await fetch(`${testStack().apiUrl}/`, { headers: { 'accept-encoding': 'identity' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const html = await response.text();
    expect(html).toMatch(/^<!doctype html>/);
    const script = /<script>([\s\S]*)<\/script>/.exec(html)![1]!;
    const hash = createHash('sha256').update(script).digest('base64');
    const csp = response.headers.get('content-security-policy')!;
    expect(csp).toContain(`script-src 'sha256-${hash}' 'wasm-unsafe-eval';`);
    expect(csp).not.toMatch(/'unsafe-eval'|script-src[^;]*'unsafe-inline'/);
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain(`connect-src 'self' ${new URL(testStack().s3Endpoint).origin}`);
    // Nothing secret: no key material, no password, no token.
    expect(html).not.toMatch(/PRIVATE KEY|"d":"|avijeet@123|eyJhbGci/);

    const zipped = await fetch(`${testStack().apiUrl}/`, { headers: { 'accept-encoding': 'gzip' } });
    expect(zipped.headers.get('content-encoding')).toBe('gzip');
    // fetch inflates it.
    expect(await zipped.text()).toBe(html);
  });
});
