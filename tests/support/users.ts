import { randomUUID } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { hashPassword } from '../../lib/auth/passwords.ts';
import { UserStore } from '../../lib/auth/user-store.ts';
import { signIn } from './http.ts';
import { testStack } from './stack-env.ts';

let store: UserStore | undefined;

export function testUserStore(): UserStore {
  const stack = testStack();
  store ??= new UserStore(
    DynamoDBDocumentClient.from(
      new DynamoDBClient({ region: stack.region, endpoint: stack.dynamodbEndpoint }),
    ),
    stack.tables.users,
  );
  return store;
}

/**
 * A fresh user for one test. Its hash uses cheap scrypt parameters (the PHC string carries them) so
 * that tests stay fast; the sign-in tests that compare costs use the demo user.
 */
export async function createTestUser(prefix = 'user') {
  const username = `${prefix}-${randomUUID().slice(0, 8)}`;
  const password = `pw-${randomUUID()}`;
  await testUserStore().create(username, await hashPassword(password, { logN: 10, r: 8, p: 1 }));
  return { username, password, token: () => signIn(username, password) };
}
