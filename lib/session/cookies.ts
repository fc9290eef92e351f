import { createHash, timingSafeEqual } from 'node:crypto';
import { decodeJwt } from 'jose';
import { HttpError } from '../http/errors.ts';

/**
 * The web console's session (README, "Console sessions"): the token POST /auth/session issues lives
 * in an HttpOnly cookie, which page scripts cannot read, beside a readable CSRF cookie.
 *
 * CSRF protection, for the methods that change something (anything but GET, HEAD and OPTIONS) when the
 * token came from the cookie: the request must carry `X-CSRF-Token` equal to a value derived from
 * that very token (SHA-256 of its sign-in id, which renewals keep; base64url): a signed double-submit
 * that needs no server state.
 * - A page of another site never gets the cookie sent (SameSite=Strict), and could not read the CSRF
 *   cookie to copy it into the header.
 * - A page of another origin of the same site (another port, a sibling subdomain) does get
 *   SameSite=Strict cookies sent, but a custom header makes its request need a CORS preflight, and the
 *   API's CORS neither lists `X-CSRF-Token` nor allows credentials: the browser sends nothing.
 * - Planting cookies from a sibling subdomain does not help either: in AWS the cookies are named
 *   `__Host-…` (Secure, Path=/, no Domain: only the API's own origin can set them), and a planted CSRF
 *   cookie would have to match a planted session token, which only a sign-in issues.
 * - A request with an `Origin` other than the API's own is refused too, whatever it carries.
 * Requests that send `Authorization` or `auth_token` never read the cookie and need no CSRF token: no
 * other site can make a browser send those headers.
 *
 * Secure is set unless the function runs in serverless-offline (IS_OFFLINE, local http): browsers drop
 * Secure cookies set over http, and on localhost there is no TLS to speak of.
 */

const secure = () => process.env.IS_OFFLINE !== 'true';

/** Cookie names: `__Host-` ones (Secure, Path=/, no Domain, so no other origin may set them) in AWS. */
export const sessionCookieName = () => (secure() ? '__Host-fj_session' : 'fj_session');
export const csrfCookieName = () => (secure() ? '__Host-fj_csrf' : 'fj_csrf');
export const CSRF_HEADER = 'x-csrf-token';

/**
 * The CSRF token that goes with a session token: derived, so that no state needs to be kept. From the
 * token's sign-in id (claim `sid`, random, known only to whoever holds the token) when it has one, so
 * that it stays the same across renewals: a request the page built just before a renewal landed still
 * passes with the renewed cookie. Tokens without one: from the whole token, as before.
 */
export function csrfTokenFor(token: string): string {
  const signInId = signInIdOf(token);
  const source = signInId === undefined ? `file-jobs csrf v1\0${token}` : `file-jobs csrf v2\0${signInId}`;
  return createHash('sha256').update(source).digest('base64url');
}

/** The `sid` claim of a JWT, read without checking it (the caller's authentication does that), if any. */
function signInIdOf(token: string): string | undefined {
  try {
    const { sid } = decodeJwt(token);
    return typeof sid === 'string' && sid.length > 0 ? sid : undefined;
  } catch {
    return undefined;
  }
}

const attributes = (maxAgeSeconds: number) =>
  `Path=/; Max-Age=${maxAgeSeconds}; SameSite=Strict${secure() ? '; Secure' : ''}`;

/** Set-Cookie values that start a session: the token (HttpOnly) and its CSRF token (readable). */
export function sessionCookies(token: string, maxAgeSeconds: number): string[] {
  return [
    `${sessionCookieName()}=${token}; ${attributes(maxAgeSeconds)}; HttpOnly`,
    `${csrfCookieName()}=${csrfTokenFor(token)}; ${attributes(maxAgeSeconds)}`,
  ];
}

/** Set-Cookie values that end a session: both cookies, expired. */
export function clearedSessionCookies(): string[] {
  return [`${sessionCookieName()}=; ${attributes(0)}; HttpOnly`, `${csrfCookieName()}=; ${attributes(0)}`];
}

/** One cookie's value from API Gateway's `cookies` array (payload 2.0) or a `Cookie` header. */
export function readCookie(cookies: string[] | undefined, header: string | undefined, name: string) {
  // API Gateway moves the Cookie header into `cookies`; serverless-offline, which does not parse
  // cookies here (a malformed one would be its own non-JSON 400), leaves it in the header.
  const pairs = cookies?.length ? cookies : (header?.split(';') ?? []);
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at > 0 && pair.slice(0, at).trim() === name) return pair.slice(at + 1).trim() || undefined;
  }
  return undefined;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

const csrfFailed = (message: string) => new HttpError(403, 'CsrfCheckFailed', message);

const sameText = (a: string, b: string) => {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
};

export interface SessionRequest {
  method: string;
  cookies: string[] | undefined;
}

/**
 * The session token of a request that sent no token header, or undefined when it has no session
 * cookie. Throws 403 `CsrfCheckFailed` when a request that changes something fails the CSRF checks.
 */
export function sessionToken(
  headers: Record<string, string | undefined> | undefined,
  request: SessionRequest,
): string | undefined {
  const token = readCookie(request.cookies, headers?.cookie, sessionCookieName());
  if (!token || SAFE_METHODS.has(request.method.toUpperCase())) return token;
  assertSameOrigin(headers);
  const sent = headers?.[CSRF_HEADER];
  if (!sent) throw csrfFailed('send the X-CSRF-Token header (the fj_csrf cookie) with the session cookie');
  if (!sameText(sent, csrfTokenFor(token)))
    throw csrfFailed('the X-CSRF-Token header does not match the session');
  return token;
}

/** A request a browser sent from a page of another origin (its `Origin` header says so): 403. */
export function assertSameOrigin(headers: Record<string, string | undefined> | undefined): void {
  const origin = headers?.origin;
  if (origin && hostOf(origin) !== headers?.host) {
    throw csrfFailed(`sessions are only for pages of this service, not for ${origin}`);
  }
}

function hostOf(origin: string): string | undefined {
  try {
    return new URL(origin).host;
  } catch {
    return undefined;
  }
}
