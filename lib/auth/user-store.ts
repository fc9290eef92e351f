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
  createdAt: string;
  updatedAt: string;
}

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

  /** Creates a user; fails with UserExistsError rather than overwrite one. */
  async create(username: string, passwordHash: string): Promise<User> {
    const now = new Date().toISOString();
    const user: User = { username, passwordHash, createdAt: now, updatedAt: now };
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

  async setPassword(username: string, passwordHash: string): Promise<void> {
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.table,
          Key: userKey(username),
          UpdateExpression: 'SET passwordHash = :hash, updatedAt = :now',
          ConditionExpression: 'attribute_exists(pk)',
          ExpressionAttributeValues: { ':hash': passwordHash, ':now': new Date().toISOString() },
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
  async list(): Promise<Omit<User, 'passwordHash'>[]> {
    const users: Omit<User, 'passwordHash'>[] = [];
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
        const { passwordHash: _omitted, ...user } = toUser(item);
        users.push(user);
      }
    }
    return users.sort((a, b) => a.username.localeCompare(b.username));
  }
}

const toUser = (item: Record<string, unknown>): User => ({
  username: item.username as string,
  passwordHash: item.passwordHash as string,
  createdAt: item.createdAt as string,
  updatedAt: item.updatedAt as string,
});
