import { HttpError, tooManyRequests } from '../http/errors.ts';
import { signinThrottle, userStore } from './index.ts';
import { firstToken, type IssuedToken } from './issued-tokens.ts';
import { DUMMY_HASH, verifyPassword } from './passwords.ts';

export type { IssuedToken } from './issued-tokens.ts';

const badCredentials = () => new HttpError(401, 'InvalidCredentials', 'the username or password is wrong');
const throttled = (seconds: number) => tooManyRequests('too many failed sign-ins; try again later', seconds);

/**
 * Checks a username and password and issues a token. The attempt is counted against the username and
 * the source IP before the password is checked (see throttle.ts), so the limit holds however many
 * guesses arrive at once. An unknown user costs one scrypt run against a dummy hash, like a wrong
 * password, and gets the same answer. `verify` is there for tests that count the scrypt runs.
 */
export async function signIn(
  username: string,
  password: string,
  sourceIp: string,
  verify: typeof verifyPassword = verifyPassword,
): Promise<IssuedToken> {
  const throttle = signinThrottle();
  const reservation = await throttle.reserve(username, sourceIp);
  if (!reservation.granted) throw throttled(reservation.retryAfterSeconds);

  const user = await userStore().get(username);
  const passwordMatches = await verify(password, user?.passwordHash ?? DUMMY_HASH);
  if (!user || !passwordMatches) {
    const lock = await throttle.failed(reservation.attempt);
    if (lock > 0) throw throttled(lock);
    throw badCredentials();
  }

  await throttle.succeeded(reservation.attempt);
  return firstToken(user.username, user.tokenVersion);
}
