import { errors as joseErrors } from 'jose';
import { config } from '../config.ts';
import { unauthorized } from '../http/errors.ts';
import type { Caller, HttpEvent } from '../http/types.ts';
import { type SessionRequest, sessionToken } from '../session/cookies.ts';
import { currentTokenState, verifyToken } from './index.ts';
import type { TokenState } from './user-store.ts';

export type { Caller } from '../http/types.ts';

/** `Authorization: Bearer <token>`, or the seed's `auth_token: <token>` header. Headers are lower-cased. */
export function tokenFromHeaders(headers: HttpEvent['headers']): string | undefined {
  const authorization = headers?.authorization?.trim();
  if (authorization) {
    const match = /^Bearer\s+(\S+)$/i.exec(authorization);
    return match?.[1] ?? '';
  }
  const seedHeader = headers?.auth_token?.trim();
  if (seedHeader) return seedHeader.replace(/^Bearer\s+/i, '');
  return undefined;
}

/**
 * The one place a token is checked: signature with a published key, algorithm EdDSA only, issuer,
 * audience, lifetime; then that its user still exists and has not had their tokens revoked since it
 * was issued (as read at most AUTH_USER_CACHE_SECONDS ago). Every failure is a 401 in the JSON error
 * shape; a DynamoDB error reading the user escapes as it is, to be answered 503. A session cookie's
 * token is checked the same way, revocation included.
 */
export async function authenticate(headers: HttpEvent['headers'], session?: SessionRequest): Promise<Caller> {
  // Without a token header, the console's session cookie (with its CSRF checks: lib/session/cookies.ts).
  const token = tokenFromHeaders(headers) ?? (session ? sessionToken(headers, session) : undefined);
  if (token === undefined) throw unauthorized('sign in first: send Authorization: Bearer <token>');
  if (!token) throw unauthorized('the Authorization header must be "Bearer <token>"');
  const { tokens } = config();
  let claims: Awaited<ReturnType<typeof verifyToken>>;
  try {
    claims = await verifyToken(token, tokens);
  } catch (error) {
    if (error instanceof joseErrors.JWTExpired) throw unauthorized('the token has expired; sign in again');
    if (error instanceof joseErrors.JOSEError) throw unauthorized('the token is not valid');
    throw error;
  }
  // Tokens from before versions existed carry none: they match users who have never been revoked.
  const version = typeof claims.ver === 'number' ? claims.ver : 0;
  const signInId = typeof claims.sid === 'string' ? claims.sid : undefined;
  checkTokenState(await currentTokenState(claims.sub, version), version, signInId);
  const signedInAt = typeof claims.auth_time === 'number' ? claims.auth_time : (claims.iat as number);
  return {
    username: claims.sub,
    tokenId: claims.jti,
    session: { signedInAt, tokenVersion: version, expiresAt: claims.exp, signInId },
  };
}

/**
 * A token's standing with its user, as `state` says (UserStore.tokenState): 401 when the user is
 * gone, their tokens were revoked since it was issued, or its sign-in was ended by a sign-out.
 */
export function checkTokenState(
  state: TokenState | undefined,
  version: number,
  signInId: string | undefined,
) {
  if (state === undefined) throw unauthorized('the user of this token no longer exists');
  if (state.version !== version) throw unauthorized('the token has been revoked; sign in again');
  if (signInId !== undefined && state.endedSignIns.has(signInId))
    throw unauthorized('this sign-in has ended (signed out); sign in again');
}
