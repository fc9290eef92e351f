import { publicRoute } from '../lib/http/public-route.ts';
import { clearedSessionCookies, sessionToken } from '../lib/session/cookies.ts';

/**
 * DELETE /auth/session -> 204, both session cookies cleared. No token is needed (an expired session
 * can still sign out), but a request that carries the session cookie must pass its CSRF checks, so no
 * other page can sign a user out. The token itself stays valid until it expires (JWT_TTL_SECONDS):
 * only the cookie goes; `npm run user -- revoke` ends every session of a user.
 */
export const handler = publicRoute({}, async ({ event }) => {
  sessionToken(event.headers, { method: 'DELETE', cookies: event.cookies });
  return { status: 204, headers: { 'cache-control': 'no-store' }, cookies: clearedSessionCookies() };
});
