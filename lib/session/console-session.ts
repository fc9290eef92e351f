import { authenticate } from '../auth/authenticate.ts';
import { endSignIn, type IssuedToken, sessionEndsAt } from '../auth/issued-tokens.ts';
import { HttpError, unauthorized } from '../http/errors.ts';
import type { RouteResult } from '../http/route-stack.ts';
import type { Caller, HttpEvent } from '../http/types.ts';
import { sessionCookies, sessionToken } from './cookies.ts';

/** What the console is told of its session: who, and how long its token and its sign-in last. */
export interface SessionView {
  username: string;
  /** Seconds until the token in the cookie expires: the console renews it before then. */
  expiresIn: number;
  /** When the sign-in ends (ISO 8601): no renewal goes past it. */
  sessionExpiresAt: string;
}

/** The answer that starts or renews a console session: its view, and the cookies holding the token. */
export function consoleSession(username: string, issued: IssuedToken): RouteResult {
  const body: SessionView = {
    username,
    expiresIn: issued.expiresIn,
    sessionExpiresAt: issued.sessionExpiresAt,
  };
  return {
    status: 200,
    body,
    headers: { 'cache-control': 'no-store' },
    cookies: sessionCookies(issued.token, issued.expiresIn),
  };
}

/** GET /auth/session: the caller's session as authenticate() found it. */
export function sessionView(caller: Caller): SessionView {
  if (!caller.session) throw unauthorized();
  const { expiresAt, signedInAt } = caller.session;
  return {
    username: caller.username,
    expiresIn: Math.max(0, expiresAt - Math.floor(Date.now() / 1000)),
    sessionExpiresAt: new Date(sessionEndsAt(signedInAt) * 1000).toISOString(),
  };
}

/**
 * DELETE /auth/session: ends the sign-in of the session cookie (after its CSRF checks), if its token
 * still passes every check; one that does not (expired, revoked, garbage) has nothing left to end.
 * A token header is not looked at: this signs the console out, not another client.
 */
export async function signOutSession(headers: HttpEvent['headers'], cookies: string[] | undefined) {
  const session = { method: 'DELETE', cookies };
  if (!sessionToken(headers, session)) return;
  const { authorization: _authorization, auth_token: _seedHeader, ...cookieOnly } = headers ?? {};
  let caller: Caller;
  try {
    caller = await authenticate(cookieOnly, session);
  } catch (error) {
    if (error instanceof HttpError && error.status === 401) return;
    throw error;
  }
  await endSignIn(caller);
}
