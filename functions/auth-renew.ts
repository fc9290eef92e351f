import { renewToken } from '../lib/auth/issued-tokens.ts';
import { httpRoute } from '../lib/http/route.ts';

/** POST /auth/renew (a valid token) -> 200 {token, tokenType, expiresIn, sessionExpiresAt}: the same sign-in's next token. */
export const handler = httpRoute({}, async ({ caller }) => ({
  status: 200,
  body: await renewToken(caller),
  headers: { 'cache-control': 'no-store' },
}));
