import { decodeJwt } from 'jose';
import { credentialsBody } from '../lib/auth/schemas.ts';
import { signIn } from '../lib/auth/signin.ts';
import { httpRoute } from '../lib/http/route.ts';
import { consoleSession } from '../lib/session/console-session.ts';
import { assertSameOrigin } from '../lib/session/cookies.ts';

/**
 * POST /auth/session {username, password} -> 200 {username, expiresIn, sessionExpiresAt} and the
 * console's session cookies (lib/session/cookies.ts): the same check and throttle as POST /auth/signin,
 * whose answer (the token in the body, for other clients) stays as it is. The token never reaches
 * page scripts.
 */
export const handler = httpRoute(
  { auth: 'none', body: credentialsBody },
  async ({ body, sourceIp, event }) => {
    assertSameOrigin(event.headers);
    const issued = await signIn(body.username, body.password, sourceIp);
    return consoleSession(String(decodeJwt(issued.token).sub), issued);
  },
);
