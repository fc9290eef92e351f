import { randomUUID } from 'node:crypto';
import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { verifyPassword } from '../../lib/auth/passwords.ts';
import { signIn } from '../../lib/auth/signin.ts';
import { type Attempt, type Reservation, SigninThrottle } from '../../lib/auth/throttle.ts';
import { documentClient } from '../../lib/aws/clients.ts';
import { config } from '../../lib/config.ts';
import { HttpError } from '../../lib/http/errors.ts';
import { createTestUser } from '../support/users.ts';

const policy = {
  maxFailuresPerUser: 3,
  maxFailuresPerIp: 5,
  windowSeconds: 900,
  baseLockSeconds: 10,
  maxLockSeconds: 60,
};
const fresh = () => randomUUID().slice(0, 8);

/** A throttle on the test stack's table with a clock the test moves. */
function throttleAt(start = Date.now()) {
  let now = start;
  const throttle = new SigninThrottle(documentClient(), config().usersTable, policy, () => now);
  return { throttle, advance: (seconds: number) => (now += seconds * 1000) };
}

const attemptOf = (reservation: Reservation): Attempt => {
  if (!reservation.granted) throw new Error(`refused for ${reservation.retryAfterSeconds} s`);
  return reservation.attempt;
};

/** One wrong password, start to end: the lock it caused, or 'refused' when it was never checked. */
async function wrongGuess(throttle: SigninThrottle, user: string, ip: string): Promise<number | 'refused'> {
  const reservation = await throttle.reserve(user, ip);
  if (!reservation.granted) return 'refused';
  return throttle.failed(reservation.attempt);
}

describe('sign-in throttling in DynamoDB', () => {
  it('locks a username on its last try, then allows one try per lock, doubling it up to the cap', async () => {
    const { throttle, advance } = throttleAt();
    const user = `u-${fresh()}`;
    const ip = () => `10.0.0.${fresh()}`;
    expect(await wrongGuess(throttle, user, ip())).toBe(0);
    expect(await wrongGuess(throttle, user, ip())).toBe(0);
    expect(await wrongGuess(throttle, user, ip())).toBe(10);
    const locked = await throttle.reserve(user, ip());
    expect(locked).toEqual({ granted: false, retryAfterSeconds: 10 });
    advance(10);
    expect(await wrongGuess(throttle, user, ip())).toBe(20);
    expect(await wrongGuess(throttle, user, ip())).toBe('refused');
    advance(20);
    expect(await wrongGuess(throttle, user, ip())).toBe(40);
    advance(40);
    expect(await wrongGuess(throttle, user, ip())).toBe(60);
    advance(60);
    expect(await wrongGuess(throttle, user, ip())).toBe(60);
  });

  it('locks a source IP that sprays many usernames, and a success does not unlock it', async () => {
    const { throttle } = throttleAt();
    const ip = `10.1.0.${fresh()}`;
    for (let i = 0; i < 4; i++) expect(await wrongGuess(throttle, `spray-${fresh()}`, ip)).toBe(0);
    expect(await wrongGuess(throttle, `spray-${fresh()}`, ip)).toBe(10);
    const innocent = `u-${fresh()}`;
    expect((await throttle.reserve(innocent, ip)).granted).toBe(false);
    expect((await throttle.reserve(innocent, `10.2.0.${fresh()}`)).granted).toBe(true);
  });

  it('hands the IP its try back on a success, so honest sign-ins from one address never lock it', async () => {
    const { throttle } = throttleAt();
    const ip = `10.6.0.${fresh()}`;
    for (let i = 0; i < 20; i++)
      await throttle.succeeded(attemptOf(await throttle.reserve(`ok-${fresh()}`, ip)));
    expect(await wrongGuess(throttle, `u-${fresh()}`, ip)).toBe(0);
  });

  it('grants at most the limit of tries taken at once, and refuses the rest before any check', async () => {
    const { throttle } = throttleAt();
    const user = `u-${fresh()}`;
    const reservations = await Promise.all(
      Array.from({ length: 8 }, () => throttle.reserve(user, `10.3.0.${fresh()}`)),
    );
    const granted = reservations.filter((reservation) => reservation.granted);
    expect(granted).toHaveLength(3);
    for (const refused of reservations.filter((reservation) => !reservation.granted))
      expect(refused).toEqual({ granted: false, retryAfterSeconds: 10 });
    const locks = await Promise.all(granted.map((reservation) => throttle.failed(attemptOf(reservation))));
    expect(locks.sort()).toEqual([0, 0, 10]);
  });

  it('a success clears the username counter', async () => {
    const { throttle } = throttleAt();
    const user = `u-${fresh()}`;
    await wrongGuess(throttle, user, '10.4.0.1');
    await wrongGuess(throttle, user, '10.4.0.1');
    await throttle.succeeded(attemptOf(await throttle.reserve(user, '10.4.0.1')));
    expect(await wrongGuess(throttle, user, '10.4.0.2')).toBe(0);
    expect(await wrongGuess(throttle, user, '10.4.0.3')).toBe(0);
  });

  // DynamoDB's TTL deletes lazily (up to days on AWS, never on DynamoDB Local): a counter past its
  // expiresAt must count as gone even while the item is still there.
  it('ignores a counter whose window has passed but that TTL has not deleted yet', async () => {
    const { throttle } = throttleAt();
    const user = `u-${fresh()}`;
    const past = Math.floor(Date.now() / 1000) - 60;
    await documentClient().send(
      new PutCommand({
        TableName: config().usersTable,
        Item: { pk: `SIGNIN_FAILURES#user#${user}`, failures: 7, lockedUntil: past - 10, expiresAt: past },
      }),
    );
    expect(await wrongGuess(throttle, user, '10.5.0.1')).toBe(0);
    expect(await wrongGuess(throttle, user, '10.5.0.2')).toBe(0);
    expect(await wrongGuess(throttle, user, '10.5.0.3')).toBe(10);
  });

  it('reads a live counter written before tries were reserved as allowing the threshold', async () => {
    const { throttle } = throttleAt();
    const user = `u-${fresh()}`;
    const now = Math.floor(Date.now() / 1000);
    await documentClient().send(
      new PutCommand({
        TableName: config().usersTable,
        Item: { pk: `SIGNIN_FAILURES#user#${user}`, failures: 2, expiresAt: now + 600 },
      }),
    );
    expect(await wrongGuess(throttle, user, '10.7.0.1')).toBe(10);
    expect(await wrongGuess(throttle, user, '10.7.0.2')).toBe('refused');
  });
});

describe('signIn under a burst of guesses', () => {
  it('runs scrypt at most SIGNIN_MAX_FAILURES_PER_USER times for 12 guesses at once, then refuses the right one', async () => {
    const user = await createTestUser('burst');
    let scryptRuns = 0;
    const counted: typeof verifyPassword = (password, hash) => {
      scryptRuns++;
      return verifyPassword(password, hash);
    };
    const ip = `10.8.0.${fresh()}`;
    const guesses = await Promise.allSettled(
      Array.from({ length: 12 }, () => signIn(user.username, 'wrong', ip, counted)),
    );
    const limit = config().signin.maxFailuresPerUser;
    expect(scryptRuns).toBe(limit);
    const statuses = guesses.map((guess) =>
      guess.status === 'rejected' ? (guess.reason as HttpError).status : 200,
    );
    expect(statuses.sort()).toEqual([...Array(limit - 1).fill(401), ...Array(12 - limit + 1).fill(429)]);

    const right = signIn(user.username, user.password, ip, counted);
    await expect(right).rejects.toBeInstanceOf(HttpError);
    const refusal = (await right.catch((error: HttpError) => error)) as HttpError;
    expect(refusal.status).toBe(429);
    expect(Number(refusal.headers['retry-after'])).toBeGreaterThan(0);
    expect(scryptRuns).toBe(limit);
  });
});
