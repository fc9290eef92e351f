import { httpRoute } from '../lib/http/route.ts';

/** GET /auth/session -> 200 {username}: who the session cookie (or token header) signs in; else 401. */
export const handler = httpRoute({}, async ({ caller }) => ({
  status: 200,
  body: { username: caller.username },
  headers: { 'cache-control': 'no-store' },
}));
