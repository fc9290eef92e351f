import { config } from '../config.ts';
import { unauthorized } from '../http/errors.ts';
import type { Caller } from '../http/types.ts';
import { signingKeyRing } from './index.ts';
import { signToken } from './token-signer.ts';

/**
 * Tokens, from a sign-in and from renewing one. A token lives JWT_TTL_SECONDS (an hour by default),
 * but an upload or export may run for days: a client renews its token while it is still valid
 * (POST /auth/renew; the console's cookie with POST /auth/session/renew) and gets a new one of the
 * same sign-in. Each carries `auth_time`, when the password was checked, and no renewal goes past
 * SESSION_MAX_HOURS after it, so a sign-in ends however often it is renewed. A renewal needs a token
 * that passes every check, revocation included (authenticate.ts): revoking a user's tokens ends
 * their renewals too. The new token carries the same token version, and a new `jti`.
 */

export interface IssuedToken {
  token: string;
  tokenType: 'Bearer';
  /** Seconds the token lives: JWT_TTL_SECONDS, or less when its sign-in ends sooner. */
  expiresIn: number;
  /** When the sign-in ends (ISO 8601): the last moment any token of it, renewed or not, is valid. */
  sessionExpiresAt: string;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

/** When the sign-in made at `signedInAt` (Unix seconds) ends, as Unix seconds. */
export const sessionEndsAt = (signedInAt: number) => signedInAt + config().sessionMaxSeconds;

/** A token for `username` of the sign-in made at `signedInAt` (Unix seconds), with `tokenVersion`. */
export async function issueToken(
  username: string,
  tokenVersion: number,
  signedInAt: number,
): Promise<IssuedToken> {
  const { tokens } = config();
  const sessionEnds = sessionEndsAt(signedInAt);
  const expiresIn = Math.min(tokens.ttlSeconds, sessionEnds - nowSeconds());
  if (expiresIn < 1)
    throw unauthorized('this sign-in has reached its longest life (SESSION_MAX_HOURS); sign in again');
  const token = await signToken(
    await signingKeyRing(),
    username,
    { ...tokens, ttlSeconds: expiresIn },
    { ver: tokenVersion, auth_time: signedInAt },
  );
  return {
    token,
    tokenType: 'Bearer',
    expiresIn,
    sessionExpiresAt: new Date(sessionEnds * 1000).toISOString(),
  };
}

/** POST /auth/renew: a new token of the caller's sign-in (the caller passed authenticate()). */
export function renewToken(caller: Caller): Promise<IssuedToken> {
  if (!caller.session) throw unauthorized();
  return issueToken(caller.username, caller.session.tokenVersion, caller.session.signedInAt);
}
