import { paginateQuery } from '@aws-sdk/lib-dynamodb';
import { documentClient } from '../../lib/aws/clients.ts';
import { config } from '../../lib/config.ts';

/**
 * Every item of a user's partition of the jobs table, by kind: jobs, active slots, the upload counter
 * (RUNNING#upload: running jobs and their declared bytes), creation counts. Read consistently.
 */
export async function userPartition(username: string) {
  const items: Record<string, unknown>[] = [];
  for await (const page of paginateQuery(
    { client: documentClient() },
    {
      TableName: config().jobsTable,
      KeyConditionExpression: 'pk = :pk',
      ExpressionAttributeValues: { ':pk': `USER#${username}` },
      ConsistentRead: true,
    },
  )) {
    items.push(...(page.Items ?? []));
  }
  const of = (prefix: string) => items.filter((item) => String(item.sk).startsWith(prefix));
  const counter = of('RUNNING#upload')[0];
  return {
    jobs: of('JOB#').length,
    slots: of('ACTIVE#').length,
    uploads: { running: Number(counter?.running ?? 0), bytes: Number(counter?.bytes ?? 0) },
    created: of('CREATED#').reduce((sum, item) => sum + Number(item.created), 0),
  };
}
