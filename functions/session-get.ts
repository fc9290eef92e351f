import { httpRoute } from '../lib/http/route.ts';
import { sessionView } from '../lib/session/console-session.ts';

/**
 * GET /auth/session -> 200 {username, expiresIn, sessionExpiresAt}: who the session cookie (or token
 * header) signs in, and how long it lasts; else 401.
 */
export const handler = httpRoute({}, async ({ caller }) => ({
  status: 200,
  body: sessionView(caller),
  headers: { 'cache-control': 'no-store' },
}));
