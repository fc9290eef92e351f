import { randomUUID } from 'node:crypto';
import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { SigninThrottle } from '../../lib/auth/throttle.ts';
import { documentClient } from '../../lib/aws/clients.ts';
import { config } from '../../lib/config.ts';

const policy = {
  maxFailuresPerUser: 3,
  maxFailuresPerIp: 5,
  windowSeconds: 900,
  baseLockSeconds: 10,
  maxLockSeconds: 60,
};
const fresh = () => randomUUID().slice(0, 8);

describe('sign-in throttling in DynamoDB', () => {
  const throttle = new SigninThrottle(documentClient(), config().usersTable, policy);

  it('locks a username past its threshold, doubling the lock up to the cap', async () => {
    const user = `u-${fresh()}`;
    const ip = `10.0.0.${fresh()}`;
    expect(await throttle.recordFailure(user, ip)).toBe(0);
    expect(await throttle.recordFailure(user, ip)).toBe(0);
    expect(await throttle.lockedFor(user, ip)).toBe(0);
    expect(await throttle.recordFailure(user, ip)).toBe(10);
    expect(await throttle.lockedFor(user, ip)).toBeGreaterThanOrEqual(9);
    expect(await throttle.recordFailure(user, ip)).toBe(20);
    expect(await throttle.recordFailure(user, ip)).toBe(40);
    expect(await throttle.recordFailure(user, ip)).toBe(60);
    expect(await throttle.recordFailure(user, ip)).toBe(60);
  });

  it('locks a source IP that sprays many usernames, and a success does not unlock it', async () => {
    const ip = `10.1.0.${fresh()}`;
    for (let i = 0; i < 4; i++) expect(await throttle.recordFailure(`spray-${fresh()}`, ip)).toBe(0);
    expect(await throttle.recordFailure(`spray-${fresh()}`, ip)).toBe(10);
    const innocent = `u-${fresh()}`;
    expect(await throttle.lockedFor(innocent, ip)).toBeGreaterThan(0);
    await throttle.reset(innocent);
    expect(await throttle.lockedFor(innocent, ip)).toBeGreaterThan(0);
    expect(await throttle.lockedFor(innocent, `10.2.0.${fresh()}`)).toBe(0);
  });

  it('counts concurrent failures exactly (atomic counter)', async () => {
    const user = `u-${fresh()}`;
    const locks = await Promise.all(
      Array.from({ length: 6 }, () => throttle.recordFailure(user, `10.3.0.${fresh()}`)),
    );
    // Failures 3..6 each lock; the longest (failure 6: 10 * 2^3 = 80, capped to 60) stands.
    expect(locks.filter((lock) => lock > 0)).toHaveLength(4);
    expect(await throttle.lockedFor(user, '10.9.9.9')).toBeGreaterThanOrEqual(59);
  });

  it('a success clears the username counter', async () => {
    const user = `u-${fresh()}`;
    await throttle.recordFailure(user, '10.4.0.1');
    await throttle.recordFailure(user, '10.4.0.1');
    await throttle.reset(user);
    expect(await throttle.recordFailure(user, '10.4.0.2')).toBe(0);
    expect(await throttle.recordFailure(user, '10.4.0.3')).toBe(0);
  });

  // DynamoDB's TTL deletes lazily (up to days on AWS, never on DynamoDB Local): a counter past its
  // expiresAt must count as gone even while the item is still there.
  it('ignores a counter whose window has passed but that TTL has not deleted yet', async () => {
    const user = `u-${fresh()}`;
    const past = Math.floor(Date.now() / 1000) - 60;
    await documentClient().send(
      new PutCommand({
        TableName: config().usersTable,
        Item: { pk: `SIGNIN_FAILURES#user#${user}`, failures: 7, lockedUntil: past - 10, expiresAt: past },
      }),
    );
    expect(await throttle.lockedFor(user, '10.5.0.1')).toBe(0);
    expect(await throttle.recordFailure(user, '10.5.0.1')).toBe(0);
    expect(await throttle.recordFailure(user, '10.5.0.2')).toBe(0);
    expect(await throttle.recordFailure(user, '10.5.0.3')).toBe(10);
  });
});
