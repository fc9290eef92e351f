import { signIn } from '../lib/auth/signin.ts';
import { httpRoute } from '../lib/http/route.ts';
import * as z from '../lib/schema.ts';

const credentials = z.object({
  username: z.string().check(z.minLength(1), z.maxLength(128)),
  password: z.string().check(z.minLength(1), z.maxLength(1024)),
});

/** POST /auth/signin {username, password} -> 200 {token, tokenType, expiresIn} */
export const handler = httpRoute({ auth: 'none', body: credentials }, async ({ body, sourceIp }) => ({
  status: 200,
  body: await signIn(body.username, body.password, sourceIp),
  headers: { 'cache-control': 'no-store' },
}));
