import {
  clearedSessionCookies,
  csrfTokenFor,
  readCookie,
  sessionCookies,
  sessionToken,
} from '../../lib/session/cookies.ts';

/**
 * The console's cookies in both places they are made: in AWS (Secure, `__Host-` names) and in
 * serverless-offline (IS_OFFLINE=true: plain http, so neither). The end-to-end test sees only the
 * second; this one pins the first, and the CSRF rules without a stack.
 */

const token = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl';
const saved = process.env.IS_OFFLINE;
afterEach(() => {
  if (saved === undefined) delete process.env.IS_OFFLINE;
  else process.env.IS_OFFLINE = saved;
});

describe('in AWS', () => {
  beforeEach(() => {
    delete process.env.IS_OFFLINE;
  });

  it('sets __Host- cookies, Secure, HttpOnly for the token only', () => {
    expect(sessionCookies(token, 3600)).toEqual([
      `__Host-fj_session=${token}; Path=/; Max-Age=3600; SameSite=Strict; Secure; HttpOnly`,
      `__Host-fj_csrf=${csrfTokenFor(token)}; Path=/; Max-Age=3600; SameSite=Strict; Secure`,
    ]);
    expect(clearedSessionCookies()).toEqual([
      '__Host-fj_session=; Path=/; Max-Age=0; SameSite=Strict; Secure; HttpOnly',
      '__Host-fj_csrf=; Path=/; Max-Age=0; SameSite=Strict; Secure',
    ]);
  });

  it('reads only the __Host- cookie: one without the prefix may have been set by another origin', () => {
    const get = { method: 'GET', cookies: [`fj_session=${token}`] };
    expect(sessionToken({}, get)).toBeUndefined();
    expect(sessionToken({}, { method: 'GET', cookies: [`__Host-fj_session=${token}`] })).toBe(token);
  });
});

describe('in serverless-offline', () => {
  beforeEach(() => {
    process.env.IS_OFFLINE = 'true';
  });

  it('sets plain cookies without Secure (local http)', () => {
    expect(sessionCookies(token, 60)[0]).toBe(
      `fj_session=${token}; Path=/; Max-Age=60; SameSite=Strict; HttpOnly`,
    );
  });

  it('reads the cookie from API Gateway’s cookies array or a Cookie header', () => {
    expect(readCookie(['a=1', `fj_session=${token}`], undefined, 'fj_session')).toBe(token);
    expect(readCookie(undefined, `a=1; fj_session=${token}; b=2`, 'fj_session')).toBe(token);
    expect(readCookie(undefined, 'fj_session=', 'fj_session')).toBeUndefined();
    expect(readCookie(undefined, 'xfj_session=1', 'fj_session')).toBeUndefined();
    // serverless-offline with cookie parsing off: an empty array, the cookies in the header.
    expect(readCookie([], `a="b; fj_session=${token}`, 'fj_session')).toBe(token);
  });

  it('derives the CSRF token from the sign-in id, so a renewed token keeps it; without one, from the token', () => {
    const jwt = (claims: Record<string, unknown>) =>
      `eyJhbGciOiJFZERTQSJ9.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.c2ln`;
    const first = jwt({ sub: 'a', sid: 'sign-in-1', jti: 'one' });
    const renewed = jwt({ sub: 'a', sid: 'sign-in-1', jti: 'two' });
    const other = jwt({ sub: 'a', sid: 'sign-in-2', jti: 'one' });
    expect(csrfTokenFor(renewed)).toBe(csrfTokenFor(first));
    expect(csrfTokenFor(other)).not.toBe(csrfTokenFor(first));
    expect(csrfTokenFor(first)).toMatch(/^[\w-]{43}$/);
    // No sid (a token from before sign-ins had ids, or not a JWT): the whole token counts.
    expect(csrfTokenFor(token)).not.toBe(csrfTokenFor(`${token}x`));
    expect(csrfTokenFor('not a jwt')).toMatch(/^[\w-]{43}$/);
  });

  it('lets safe methods through; the others need the matching X-CSRF-Token and no foreign Origin', () => {
    const cookies = [`fj_session=${token}`];
    const host = { host: 'api.example.com' };
    for (const method of ['GET', 'HEAD', 'OPTIONS'])
      expect(sessionToken(host, { method, cookies })).toBe(token);
    const post = { method: 'POST', cookies };
    const refused = { status: 403, code: 'CsrfCheckFailed' };
    expect(() => sessionToken(host, post)).toThrow(expect.objectContaining(refused));
    expect(() => sessionToken({ ...host, 'x-csrf-token': csrfTokenFor(`${token}x`) }, post)).toThrow(
      expect.objectContaining(refused),
    );
    const good = { ...host, 'x-csrf-token': csrfTokenFor(token) };
    expect(sessionToken(good, post)).toBe(token);
    expect(sessionToken({ ...good, origin: 'https://api.example.com' }, post)).toBe(token);
    for (const origin of ['https://evil.example', 'null', 'https://api.example.com.evil.example'])
      expect(() => sessionToken({ ...good, origin }, post)).toThrow(expect.objectContaining(refused));
    // No cookie: nothing to check (the route answers 401 if it needs a caller).
    expect(sessionToken(host, { method: 'POST', cookies: undefined })).toBeUndefined();
  });
});
