import { config } from '../config.ts';
import { HttpError, tooManyRequests } from '../http/errors.ts';
import { signingKeyRing, signinThrottle, userStore } from './index.ts';
import { DUMMY_HASH, verifyPassword } from './passwords.ts';
import { signToken } from './token-signer.ts';

export interface IssuedToken {
  token: string;
  tokenType: 'Bearer';
  expiresIn: number;
}

const badCredentials = () => new HttpError(401, 'InvalidCredentials', 'the username or password is wrong');

/**
 * Checks a username and password and issues a token. An unknown user costs one scrypt run against a
 * dummy hash, like a wrong password, and gets the same answer; failures are throttled per username
 * and per source IP.
 */
export async function signIn(username: string, password: string, sourceIp: string): Promise<IssuedToken> {
  const throttle = signinThrottle();
  const locked = await throttle.lockedFor(username, sourceIp);
  if (locked > 0) throw tooManyRequests('too many failed sign-ins; try again later', locked);

  const user = await userStore().get(username);
  const passwordMatches = await verifyPassword(password, user?.passwordHash ?? DUMMY_HASH);
  if (!user || !passwordMatches) {
    const lock = await throttle.recordFailure(username, sourceIp);
    if (lock > 0) throw tooManyRequests('too many failed sign-ins; try again later', lock);
    throw badCredentials();
  }

  await throttle.reset(username);
  const { tokens } = config();
  const token = await signToken(await signingKeyRing(), user.username, tokens);
  return { token, tokenType: 'Bearer', expiresIn: tokens.ttlSeconds };
}
