import { randomUUID } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { MAX_ENDED_SIGN_INS } from '../../lib/auth/user-store.ts';
import { testStack } from '../support/stack-env.ts';
import { createTestUser, testUserStore } from '../support/users.ts';

/**
 * A sign-out's record on the user's item (UserStore.endSignIn): the ended sign-ins every token check
 * reads. The item must stay small whatever a user does, so entries go once their sign-in would have
 * ended anyway, and past MAX_ENDED_SIGN_INS a sign-out ends every sign-in at once instead.
 * The routes that use it: tests/e2e/auth.test.ts ("POST /auth/signout"), tests/e2e/session.test.ts.
 */

const now = () => Math.floor(Date.now() / 1000);

/** Writes `entries` into the user's ended sign-ins directly, as many sign-outs would have. */
async function plant(username: string, entries: string[]) {
  const stack = testStack();
  const db = DynamoDBDocumentClient.from(
    new DynamoDBClient({ region: stack.region, endpoint: stack.dynamodbEndpoint }),
  );
  await db.send(
    new UpdateCommand({
      TableName: stack.tables.users,
      Key: { pk: `USER#${username}` },
      UpdateExpression: 'ADD endedSignIns :entries',
      ExpressionAttributeValues: { ':entries': new Set(entries) },
    }),
  );
}

describe('ended sign-ins on the user', () => {
  it('are read with the token version; one ends, the others stay', async () => {
    const { username } = await createTestUser('signouts');
    const before = (await testUserStore().tokenState(username))!;
    expect(before.endedSignIns.size).toBe(0);
    await testUserStore().endSignIn(username, 'sign-in-a', now() + 3600);
    await testUserStore().endSignIn(username, 'sign-in-b', now() + 3600);
    const after = (await testUserStore().tokenState(username))!;
    expect([...after.endedSignIns].sort()).toEqual(['sign-in-a', 'sign-in-b']);
    expect(after.version).toBe(before.version);
  });

  it('drop the entries of sign-ins past their end at the next sign-out', async () => {
    const { username } = await createTestUser('signouts');
    await plant(username, [`old-1 ${now() - 10}`, `old-2 ${now() - 3600}`, `live ${now() + 3600}`]);
    await testUserStore().endSignIn(username, 'new', now() + 3600);
    expect([...(await testUserStore().tokenState(username))!.endedSignIns].sort()).toEqual(['live', 'new']);
  });

  it(`past ${MAX_ENDED_SIGN_INS} live ones, a sign-out ends every sign-in at once (the token version) and empties the list`, async () => {
    const { username } = await createTestUser('signouts');
    const before = (await testUserStore().tokenState(username))!;
    await plant(
      username,
      Array.from({ length: MAX_ENDED_SIGN_INS }, () => `${randomUUID()} ${now() + 3600}`),
    );
    await testUserStore().endSignIn(username, 'one-more', now() + 3600);
    const after = (await testUserStore().tokenState(username))!;
    expect(after.version).toBe(before.version + 1);
    expect(after.endedSignIns.size).toBe(0);
  });

  it('of a user who does not exist: UserNotFoundError, nothing written', async () => {
    const username = `nobody-${randomUUID().slice(0, 8)}`;
    await expect(testUserStore().endSignIn(username, 'x', now() + 60)).rejects.toMatchObject({
      name: 'UserNotFoundError',
    });
    expect(await testUserStore().tokenState(username)).toBeUndefined();
  });
});
