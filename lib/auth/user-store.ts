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
   * The user's token version, or undefined when there is no such user: what every authenticated
   * request checks. Reads those two attributes only (the verifying functions may not read a hash).
   */
  async tokenVersion(username: string): Promise<number | undefined> {
    const { Item } = await this.db.send(
      new GetCommand({
        TableName: this.table,
        Key: userKey(username),
        ConsistentRead: true,
        ProjectionExpression: 'pk, tokenVersion',
      }),
    );
    return Item ? Number(Item.tokenVersion ?? 0) : undefined;
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
    });
  }

  /** Ends every session of the user: the tokens issued so far stop being accepted. */
  async revokeTokens(username: string): Promise<void> {
    await this.update(username, 'SET updatedAt = :now ADD tokenVersion :one', {});
  }

  private async update(username: string, expression: string, values: Record<string, unknown>) {
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.table,
          Key: userKey(username),
          UpdateExpression: expression,
          ConditionExpression: 'attribute_exists(pk)',
          ExpressionAttributeValues: { ...values, ':now': new Date().toISOString(), ':one': 1 },
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
