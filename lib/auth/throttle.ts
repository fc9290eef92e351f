import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  DeleteCommand,
  type DynamoDBDocumentClient,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';

/**
 * Failed sign-ins counted in DynamoDB, so the limit holds across every Lambda instance. One counter
 * per username and one per source IP; each expires (TTL) after a quiet window. Past its threshold a
 * counter locks for `baseLockSeconds`, doubling with every further failure up to `maxLockSeconds`.
 */

export interface ThrottlePolicy {
  maxFailuresPerUser: number;
  maxFailuresPerIp: number;
  windowSeconds: number;
  baseLockSeconds: number;
  maxLockSeconds: number;
}

export const DEFAULT_THROTTLE: ThrottlePolicy = {
  maxFailuresPerUser: 5,
  maxFailuresPerIp: 50,
  windowSeconds: 15 * 60,
  baseLockSeconds: 30,
  maxLockSeconds: 15 * 60,
};

const counterKey = (kind: 'user' | 'ip', id: string) => ({ pk: `SIGNIN_FAILURES#${kind}#${id}` });
const nowSeconds = () => Math.floor(Date.now() / 1000);

export class SigninThrottle {
  private readonly db: DynamoDBDocumentClient;
  private readonly table: string;
  private readonly policy: ThrottlePolicy;

  constructor(db: DynamoDBDocumentClient, table: string, policy: ThrottlePolicy = DEFAULT_THROTTLE) {
    this.db = db;
    this.table = table;
    this.policy = policy;
  }

  /** Seconds until the caller may try again, or 0 when neither the username nor the IP is locked. */
  async lockedFor(username: string, ip: string): Promise<number> {
    const keys = [counterKey('user', username), counterKey('ip', ip)];
    const result = await this.db.send(
      new BatchGetCommand({ RequestItems: { [this.table]: { Keys: keys, ConsistentRead: true } } }),
    );
    const now = nowSeconds();
    const lockedUntil = Math.max(
      0,
      ...(result.Responses?.[this.table] ?? []).map((item) => Number(item.lockedUntil ?? 0)),
    );
    return Math.max(0, lockedUntil - now);
  }

  /** Counts one failure against the username and the IP; returns the resulting lock, in seconds. */
  async recordFailure(username: string, ip: string): Promise<number> {
    const [userLock, ipLock] = await Promise.all([
      this.count('user', username, this.policy.maxFailuresPerUser),
      this.count('ip', ip, this.policy.maxFailuresPerIp),
    ]);
    return Math.max(userLock, ipLock);
  }

  /** A successful sign-in clears the username's counter (not the IP's: one good account must not unlock a spray). */
  async reset(username: string): Promise<void> {
    await this.db.send(new DeleteCommand({ TableName: this.table, Key: counterKey('user', username) }));
  }

  private async count(kind: 'user' | 'ip', id: string, threshold: number): Promise<number> {
    const now = nowSeconds();
    const Attributes = await this.increment(kind, id, now);
    const failures = Number(Attributes?.failures ?? 1);
    if (failures < threshold) return 0;
    const lockSeconds = Math.min(
      this.policy.maxLockSeconds,
      this.policy.baseLockSeconds * 2 ** Math.min(20, failures - threshold),
    );
    // Only ever extends a lock: of two racing failures, the longer lock stands.
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.table,
          Key: counterKey(kind, id),
          UpdateExpression: 'SET lockedUntil = :until, expiresAt = :expires',
          ConditionExpression: 'attribute_not_exists(lockedUntil) OR lockedUntil < :until',
          ExpressionAttributeValues: {
            ':until': now + lockSeconds,
            ':expires': now + lockSeconds + this.policy.windowSeconds,
          },
        }),
      );
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
    }
    return lockSeconds;
  }

  /**
   * Adds one failure to a live counter, or starts a new one over a counter whose window has passed:
   * TTL deletion is lazy (and never happens on DynamoDB Local), so an expired item may still be here
   * and must count as gone. Each branch is conditional on what it assumes; of two racing failures
   * over an expired counter one restarts it and the other adds to the restarted one.
   */
  private async increment(kind: 'user' | 'ip', id: string, now: number) {
    const expires = now + this.policy.windowSeconds;
    for (let attempt = 0; ; attempt++) {
      try {
        const { Attributes } = await this.db.send(
          new UpdateCommand({
            TableName: this.table,
            Key: counterKey(kind, id),
            UpdateExpression: 'ADD failures :one SET expiresAt = :expires',
            ConditionExpression: 'expiresAt >= :now',
            ExpressionAttributeValues: { ':one': 1, ':expires': expires, ':now': now },
            ReturnValues: 'ALL_NEW',
          }),
        );
        return Attributes;
      } catch (error) {
        if (!(error instanceof ConditionalCheckFailedException) || attempt >= 2) throw error;
      }
      try {
        const { Attributes } = await this.db.send(
          new UpdateCommand({
            TableName: this.table,
            Key: counterKey(kind, id),
            UpdateExpression: 'SET failures = :one, expiresAt = :expires REMOVE lockedUntil',
            ConditionExpression: 'attribute_not_exists(expiresAt) OR expiresAt < :now',
            ExpressionAttributeValues: { ':one': 1, ':expires': expires, ':now': now },
            ReturnValues: 'ALL_NEW',
          }),
        );
        return Attributes;
      } catch (error) {
        if (!(error instanceof ConditionalCheckFailedException)) throw error;
      }
    }
  }
}
