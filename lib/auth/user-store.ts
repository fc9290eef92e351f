import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import {
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  paginateScan,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';

export interface User {
  username: string;
  passwordHash: string;
  /**
   * Goes into every token issued to the user (claim `ver`); a token whose version is not the current
   * one is refused. Raised by a password change and by `npm run user -- revoke`. It starts at the
   * creation time in milliseconds, so a user removed and added again under the same name never
   * matches a token of the one before. Absent on users stored before it existed: 0.
   */
  tokenVersion: number;
  createdAt: string;
  updatedAt: string;
}

export type UserSummary = Omit<User, 'passwordHash' | 'tokenVersion'>;

/** What every authenticated request checks of its user (README, "Rotation and revocation"). */
export interface TokenState {
  /** The user's token version: a token with another one is refused. */
  version: number;
  /** The sign-ins (claim `sid`) ended by a sign-out before their time: their tokens are refused. */
  endedSignIns: ReadonlySet<string>;
}

/**
 * How many ended sign-ins a user's item keeps at most (each about 50 bytes of the item's 400 KB):
 * past it, a sign-out ends every sign-in of the user at once (a raised token version) instead.
 */
export const MAX_ENDED_SIGN_INS = 1000;

/**
 * An ended sign-in as the user's `endedSignIns` string set holds it: `<sid> <end>`, the end (Unix
 * seconds) being when its last token would have expired anyway, after which it is dropped.
 */
const endedEntry = (signInId: string, endsAt: number) => `${signInId} ${endsAt}`;
const parseEnded = (entry: string) => {
  const [signInId = '', endsAt = '0'] = entry.split(' ');
  return { signInId, endsAt: Number(endsAt) };
};

const userKey = (username: string) => ({ pk: `USER#${username}` });

export class UserExistsError extends Error {
  override name = 'UserExistsError';
}
export class UserNotFoundError extends Error {
  override name = 'UserNotFoundError';
}

/** Users in the users table, one item each under `USER#<username>`. */
export class UserStore {
  private readonly db: DynamoDBDocumentClient;
  private readonly table: string;

  constructor(db: DynamoDBDocumentClient, table: string) {
    this.db = db;
    this.table = table;
  }

  async get(username: string): Promise<User | undefined> {
    const { Item } = await this.db.send(
      new GetCommand({ TableName: this.table, Key: userKey(username), ConsistentRead: true }),
    );
    return Item ? toUser(Item) : undefined;
  }

  /**
   * The user's token state, or undefined when there is no such user: what every authenticated
   * request checks. Reads those attributes only (the verifying functions may not read a hash).
   */
  async tokenState(username: string): Promise<TokenState | undefined> {
    const { Item } = await this.db.send(
      new GetCommand({
        TableName: this.table,
        Key: userKey(username),
        ConsistentRead: true,
        ProjectionExpression: 'pk, tokenVersion, endedSignIns',
      }),
    );
    if (!Item) return undefined;
    const ended = (Item.endedSignIns as Set<string> | undefined) ?? new Set<string>();
    return {
      version: Number(Item.tokenVersion ?? 0),
      endedSignIns: new Set([...ended].map((entry) => parseEnded(entry).signInId)),
    };
  }

  /**
   * Ends one sign-in before its time (a sign-out): its tokens, renewed ones included, are refused
   * from now on. `endsAt` (Unix seconds) is when it would have ended anyway; entries past theirs are
   * dropped here, and a user with more than MAX_ENDED_SIGN_INS left has all sign-ins ended at once.
   */
  async endSignIn(username: string, signInId: string, endsAt: number): Promise<void> {
    const { Attributes } = await this.update(
      username,
      'ADD endedSignIns :entry SET updatedAt = :now',
      { ':entry': new Set([endedEntry(signInId, endsAt)]) },
      'UPDATED_NEW',
    );
    const entries = [...((Attributes?.endedSignIns as Set<string> | undefined) ?? [])];
    const now = Math.floor(Date.now() / 1000);
    const over = entries.filter((entry) => parseEnded(entry).endsAt < now);
    if (entries.length - over.length > MAX_ENDED_SIGN_INS) {
      await this.update(username, 'SET updatedAt = :now ADD tokenVersion :one REMOVE endedSignIns', {
        ':one': 1,
      });
    } else if (over.length > 0) {
      await this.update(username, 'SET updatedAt = :now DELETE endedSignIns :over', {
        ':over': new Set(over),
      });
    }
  }

  /** Creates a user; fails with UserExistsError rather than overwrite one. */
  async create(username: string, passwordHash: string): Promise<User> {
    const now = new Date().toISOString();
    const user: User = { username, passwordHash, tokenVersion: Date.now(), createdAt: now, updatedAt: now };
    try {
      await this.db.send(
        new PutCommand({
          TableName: this.table,
          Item: { ...userKey(username), type: 'user', ...user },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException)
        throw new UserExistsError(`user ${username} exists`);
      throw error;
    }
    return user;
  }

  /** Sets a new password and ends every session: the tokens issued so far stop being accepted. */
  async setPassword(username: string, passwordHash: string): Promise<void> {
    await this.update(username, 'SET passwordHash = :hash, updatedAt = :now ADD tokenVersion :one', {
      ':hash': passwordHash,
      ':one': 1,
    });
  }

  /** Ends every session of the user: the tokens issued so far stop being accepted. */
  async revokeTokens(username: string): Promise<void> {
    await this.update(username, 'SET updatedAt = :now ADD tokenVersion :one', { ':one': 1 });
  }

  /**
   * An update of an existing user (UserNotFoundError if there is none); `returnValues` UPDATED_NEW
   * answers the attributes it changed (the sign-out functions' IAM allows no more).
   */
  private async update(
    username: string,
    expression: string,
    values: Record<string, unknown>,
    returnValues: 'NONE' | 'UPDATED_NEW' = 'NONE',
  ) {
    try {
      return await this.db.send(
        new UpdateCommand({
          TableName: this.table,
          Key: userKey(username),
          UpdateExpression: expression,
          ConditionExpression: 'attribute_exists(pk)',
          ExpressionAttributeValues: { ...values, ':now': new Date().toISOString() },
          ReturnValues: returnValues,
        }),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException)
        throw new UserNotFoundError(`no user ${username}`);
      throw error;
    }
  }

  async remove(username: string): Promise<void> {
    try {
      await this.db.send(
        new DeleteCommand({
          TableName: this.table,
          Key: userKey(username),
          ConditionExpression: 'attribute_exists(pk)',
        }),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException)
        throw new UserNotFoundError(`no user ${username}`);
      throw error;
    }
  }

  /** For the admin script only: a scan, which is fine for a table of users and counters. */
  async list(): Promise<UserSummary[]> {
    const users: UserSummary[] = [];
    const pages = paginateScan(
      { client: this.db },
      {
        TableName: this.table,
        FilterExpression: '#type = :user',
        ExpressionAttributeNames: { '#type': 'type' },
        ExpressionAttributeValues: { ':user': 'user' },
      },
    );
    for await (const page of pages) {
      for (const item of page.Items ?? []) {
        const { passwordHash: _hash, tokenVersion: _version, ...user } = toUser(item);
        users.push(user);
      }
    }
    return users.sort((a, b) => a.username.localeCompare(b.username));
  }
}

const toUser = (item: Record<string, unknown>): User => ({
  username: item.username as string,
  passwordHash: item.passwordHash as string,
  tokenVersion: Number(item.tokenVersion ?? 0),
  createdAt: item.createdAt as string,
  updatedAt: item.updatedAt as string,
});
