import { Logger } from '@aws-lambda-powertools/logger';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { documentClient } from '../lib/aws/clients.ts';
import { config } from '../lib/config.ts';
import { jobSk, userPk } from '../lib/jobs/jobs-table.ts';

const answer = () => ({
  statusCode: 200,
  headers: { 'content-type': 'application/json' } as Record<string, string>,
  body: JSON.stringify({ status: 'ok' }),
});

/** The floor: what serverless-offline costs a request with no middleware and no log line. */
export const hello = async () => answer();

const logger = new Logger({ serviceName: 'bench-hello' });

/** The floor plus one structured log line, as the route stack writes per request: the log path's cost. */
export const helloLog = async () => {
  logger.info('request handled', { status: 200 });
  return answer();
};

/**
 * The floor plus the one DynamoDB GetItem that GET /jobs/{id} makes, through the service's own
 * client (lib/aws/clients.ts) and key: what serverless-offline costs a handler that waits on I/O,
 * with no middleware, no token check and no view.
 */
export const helloGetItem = async (event: APIGatewayProxyEventV2) => {
  const { username = '', jobId = '' } = event.queryStringParameters ?? {};
  const started = performance.now();
  await documentClient().send(
    new GetCommand({ TableName: config().jobsTable, Key: { pk: userPk(username), sk: jobSk(jobId) } }),
  );
  // How long the GetItem took as the handler saw it, apart from the worker thread's hand-offs.
  const response = answer();
  response.headers['server-timing'] = `getitem;dur=${(performance.now() - started).toFixed(3)}`;
  return response;
};
