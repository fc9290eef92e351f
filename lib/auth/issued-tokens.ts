import { randomUUID } from 'node:crypto';
import { config } from '../config.ts';
import { unauthorized } from '../http/errors.ts';
import type { Caller } from '../http/types.ts';
import { checkTokenState } from './authenticate.ts';
import { rereadTokenState, signingKeyRing, userStore } from './index.ts';
import { signToken } from './token-signer.ts';

/**
 * Tokens, from a sign-in and from renewing one. A token lives JWT_TTL_SECONDS (an hour by default),
 * but an upload or export may run for days: a client renews its token while it is still valid
 * (POST /auth/renew; the console's cookie with POST /auth/session/renew) and gets a new one of the
 * same sign-in. Each carries `auth_time`, when the password was checked, and no renewal goes past
 * SESSION_MAX_HOURS after it, so a sign-in ends however often it is renewed. A renewal needs a token
 * that passes every check, revocation included (authenticate.ts): revoking a user's tokens ends
 * their renewals too. The new token carries the same token version, and a new `jti`.
 *
 * Each sign-in has an id (claim `sid`) its renewed tokens keep. A sign-out ends that sign-in alone
 * (UserStore.endSignIn): every token of it, the renewed ones included, is refused from then on,
 * while the user's other sign-ins (another device, the CLI beside the console) go on.
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

/** A token for `username` of the sign-in `signInId` made at `signedInAt` (Unix seconds), with `tokenVersion`. */
export async function issueToken(
  username: string,
  tokenVersion: number,
  signedInAt: number,
  signInId: string,
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
    { ver: tokenVersion, auth_time: signedInAt, sid: signInId },
  );
  return {
    token,
    tokenType: 'Bearer',
    expiresIn,
    sessionExpiresAt: new Date(sessionEnds * 1000).toISOString(),
  };
}

/** A sign-in that has just checked a password: its first token. */
export const firstToken = (username: string, tokenVersion: number) =>
  issueToken(username, tokenVersion, nowSeconds(), randomUUID());

/**
 * POST /auth/renew: a new token of the caller's sign-in (the caller passed authenticate()). A token
 * from before sign-ins had ids starts one here.
 */
export async function renewToken(caller: Caller): Promise<IssuedToken> {
  if (!caller.session) throw unauthorized();
  const { tokenVersion, signedInAt, signInId } = caller.session;
  // Read now, not as this container last read it: a sign-out or revocation anywhere stops renewals
  // at once (one GetItem per renewal, an hour apart), where other routes may lag by AUTH_USER_CACHE_SECONDS.
  checkTokenState(await rereadTokenState(caller.username), tokenVersion, signInId);
  return issueToken(caller.username, tokenVersion, signedInAt, signInId ?? randomUUID());
}

/**
 * POST /auth/signout, and DELETE /auth/session with a live session: ends the caller's sign-in, so
 * that none of its tokens, renewed or not, is accepted again (by this container at once, by the
 * others within AUTH_USER_CACHE_SECONDS, as a revocation). A token from before sign-ins had ids
 * cannot be told apart from the user's others: it ends at its own expiry.
 */
export async function endSignIn(caller: Caller): Promise<void> {
  const signInId = caller.session?.signInId;
  if (!caller.session || !signInId) return;
  await userStore().endSignIn(caller.username, signInId, sessionEndsAt(caller.session.signedInAt));
  await rereadTokenState(caller.username);
}
