import { credentialsBody } from '../lib/auth/schemas.ts';
import { signIn } from '../lib/auth/signin.ts';
import { httpRoute } from '../lib/http/route.ts';

/** POST /auth/signin {username, password} -> 200 {token, tokenType, expiresIn} */
export const handler = httpRoute({ auth: 'none', body: credentialsBody }, async ({ body, sourceIp }) => ({
  status: 200,
  body: await signIn(body.username, body.password, sourceIp),
  headers: { 'cache-control': 'no-store' },
}));
