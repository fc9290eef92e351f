import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, type DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';

/**
 * Failed sign-ins counted in DynamoDB, so the limit holds across every Lambda instance. One counter
 * per username and one per source IP; each expires (TTL) after a quiet window.
 *
 * An attempt is counted *before* its password is checked: `reserve` takes one of the tries a counter
 * has left with a conditional update, and refuses once none is left or a lock is on. So guesses sent
 * at once cannot all slip past the limit (checking first and counting after the scrypt run let N
 * concurrent guesses through). The try that used the last one, if its password was wrong, locks the
 * counter for `baseLockSeconds`, doubling with every further failure up to `maxLockSeconds`, and
 * grants one more try after the lock. A success deletes the username's counter and hands the IP's
 * try back (an IP full of honest users must not lock).
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

type Kind = 'user' | 'ip';

/** A try taken on one counter: its number in the count, and how many the counter allowed then. */
interface Slot {
  kind: Kind;
  id: string;
  number: number;
  allowed: number;
}

export interface Attempt {
  user: Slot;
  ip: Slot;
}

export type Reservation = { granted: true; attempt: Attempt } | { granted: false; retryAfterSeconds: number };

const counterKey = (kind: Kind, id: string) => ({ pk: `SIGNIN_FAILURES#${kind}#${id}` });

export class SigninThrottle {
  private readonly db: DynamoDBDocumentClient;
  private readonly table: string;
  private readonly policy: ThrottlePolicy;
  private readonly nowSeconds: () => number;

  constructor(
    db: DynamoDBDocumentClient,
    table: string,
    policy: ThrottlePolicy = DEFAULT_THROTTLE,
    clock: () => number = Date.now,
  ) {
    this.db = db;
    this.table = table;
    this.policy = policy;
    this.nowSeconds = () => Math.floor(clock() / 1000);
  }

  /** Takes a try on the username's and the IP's counters, or says how long to wait. */
  async reserve(username: string, ip: string): Promise<Reservation> {
    const [user, byIp] = await Promise.all([
      this.take('user', username, this.policy.maxFailuresPerUser),
      this.take('ip', ip, this.policy.maxFailuresPerIp),
    ]);
    if ('number' in user && 'number' in byIp) return { granted: true, attempt: { user, ip: byIp } };
    // One counter refused: the try taken on the other is handed back, it was never made.
    await Promise.all([user, byIp].map((slot) => ('number' in slot ? this.giveBack(slot) : undefined)));
    const waits = [user, byIp].map((slot) => ('wait' in slot ? slot.wait : 0));
    return { granted: false, retryAfterSeconds: Math.max(1, ...waits) };
  }

  /** The password was wrong: locks the counters whose last try this was; returns the lock in seconds. */
  async failed(attempt: Attempt): Promise<number> {
    const [userLock, ipLock] = await Promise.all([
      this.lockIfLast(attempt.user, this.policy.maxFailuresPerUser),
      this.lockIfLast(attempt.ip, this.policy.maxFailuresPerIp),
    ]);
    return Math.max(userLock, ipLock);
  }

  /** Clears the username's counter and hands the IP's try back (one good account must not unlock a spray). */
  async succeeded(attempt: Attempt): Promise<void> {
    await Promise.all([
      this.db.send(new DeleteCommand({ TableName: this.table, Key: counterKey('user', attempt.user.id) })),
      this.giveBack(attempt.ip),
    ]);
  }

  private lockSeconds(failures: number, threshold: number) {
    return Math.min(
      this.policy.maxLockSeconds,
      this.policy.baseLockSeconds * 2 ** Math.min(20, Math.max(0, failures - threshold)),
    );
  }

  /**
   * One try off a live counter, or a new counter over one whose window has passed: TTL deletion is
   * lazy (and never happens on DynamoDB Local), so an expired item may still be here and must count
   * as gone. Each branch is conditional on what it assumes; of two racing tries over an expired
   * counter one restarts it and the other takes from the restarted one.
   */
  private async take(kind: Kind, id: string, threshold: number): Promise<Slot | { wait: number }> {
    for (let round = 0; ; round++) {
      const now = this.nowSeconds();
      const expires = now + this.policy.windowSeconds;
      try {
        const { Attributes } = await this.db.send(
          new UpdateCommand({
            TableName: this.table,
            Key: counterKey(kind, id),
            UpdateExpression: 'ADD failures :one SET expiresAt = :expires',
            // Counters written before `allowed` existed allow the threshold.
            ConditionExpression:
              'expiresAt >= :now AND (attribute_not_exists(lockedUntil) OR lockedUntil <= :now) AND ' +
              '(failures < allowed OR (attribute_not_exists(allowed) AND failures < :threshold))',
            ExpressionAttributeValues: {
              ':one': 1,
              ':expires': expires,
              ':now': now,
              ':threshold': threshold,
            },
            ReturnValues: 'ALL_NEW',
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        );
        return {
          kind,
          id,
          number: Number(Attributes?.failures),
          allowed: Number(Attributes?.allowed ?? threshold),
        };
      } catch (error) {
        if (!(error instanceof ConditionalCheckFailedException)) throw error;
        const old = error.Item ? unmarshall(error.Item) : undefined;
        if (old && Number(old.expiresAt) >= now) {
          // Locked, or its last try is still being checked: the lock that may follow is the wait.
          const lockedUntil = Number(old.lockedUntil ?? 0);
          const failures = Number(old.failures ?? 0);
          return { wait: lockedUntil > now ? lockedUntil - now : this.lockSeconds(failures, threshold) };
        }
      }
      const restarted = await this.updateIf(
        kind,
        id,
        'SET failures = :one, allowed = :threshold, expiresAt = :expires REMOVE lockedUntil',
        'attribute_not_exists(expiresAt) OR expiresAt < :now',
        { ':one': 1, ':threshold': threshold, ':expires': expires, ':now': now },
      );
      if (restarted) return { kind, id, number: 1, allowed: threshold };
      if (round >= 2) throw new Error(`the sign-in counter ${kind}#${id} keeps changing under this request`);
    }
  }

  private async lockIfLast(slot: Slot, threshold: number): Promise<number> {
    if (slot.number < slot.allowed) return 0;
    const now = this.nowSeconds();
    const lock = this.lockSeconds(slot.number, threshold);
    const locked = await this.updateIf(
      slot.kind,
      slot.id,
      'SET lockedUntil = :until, allowed = :next, expiresAt = :expires',
      // Not when a success cleared the counter meanwhile (or its window passed and it restarted).
      'expiresAt >= :now AND failures >= :number',
      {
        ':until': now + lock,
        ':next': slot.number + 1,
        ':expires': now + lock + this.policy.windowSeconds,
        ':now': now,
        ':number': slot.number,
      },
    );
    return locked ? lock : 0;
  }

  private async giveBack(slot: Slot): Promise<void> {
    await this.updateIf(
      slot.kind,
      slot.id,
      'ADD failures :minusOne',
      'expiresAt >= :now AND failures >= :one',
      {
        ':minusOne': -1,
        ':one': 1,
        ':now': this.nowSeconds(),
      },
    );
  }

  /** A conditional update of a counter: false when its condition did not hold. */
  private async updateIf(
    kind: Kind,
    id: string,
    UpdateExpression: string,
    ConditionExpression: string,
    ExpressionAttributeValues: Record<string, unknown>,
  ): Promise<boolean> {
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.table,
          Key: counterKey(kind, id),
          UpdateExpression,
          ConditionExpression,
          ExpressionAttributeValues,
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }
}
