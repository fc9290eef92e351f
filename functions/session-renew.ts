import { renewToken } from '../lib/auth/issued-tokens.ts';
import { httpRoute } from '../lib/http/route.ts';
import { consoleSession } from '../lib/session/console-session.ts';

/**
 * POST /auth/session/renew -> 200 {username, expiresIn, sessionExpiresAt} and the session cookies
 * holding the same sign-in's next token: the console renews while it is open, so an upload that
 * takes hours keeps its session. A cookie needs its CSRF token here, as on every POST.
 */
export const handler = httpRoute({}, async ({ caller }) =>
  consoleSession(caller.username, await renewToken(caller)),
);
