import { endSignIn } from '../lib/auth/issued-tokens.ts';
import { httpRoute } from '../lib/http/route.ts';

/** POST /auth/signout -> 204: the caller's sign-in is ended; its tokens, renewed ones too, are refused. */
export const handler = httpRoute({}, async ({ caller }) => {
  await endSignIn(caller);
  return { status: 204, headers: { 'cache-control': 'no-store' } };
});
