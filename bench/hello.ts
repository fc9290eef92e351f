import { Logger } from '@aws-lambda-powertools/logger';

const answer = () => ({
  statusCode: 200,
  headers: { 'content-type': 'application/json' },
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
