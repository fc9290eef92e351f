import { publicRoute } from '../lib/http/public-route.ts';
import { signOutSession } from '../lib/session/console-session.ts';
import { clearedSessionCookies } from '../lib/session/cookies.ts';

/**
 * DELETE /auth/session -> 204, both session cookies cleared, and the cookie's sign-in ended while its
 * token is still valid (its tokens are refused from then on). No token is needed (an expired session
 * can still sign out), but a request that carries the session cookie must pass its CSRF checks, so no
 * other page can sign a user out.
 */
export const handler = publicRoute({}, async ({ event }) => {
  await signOutSession(event.headers, event.cookies);
  return { status: 204, headers: { 'cache-control': 'no-store' }, cookies: clearedSessionCookies() };
});
