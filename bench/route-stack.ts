/**
 * `node bench/route-stack.ts`: what the route stack costs a request in-process, with no emulator and
 * no serverless-offline: each handler invoked directly with a fake API Gateway event, back to back,
 * best of --rounds. Rows build the stack up piece by piece (middy alone, each middleware alone, the
 * whole public stack, the stack with a stubbed token check, with logs off), so a cost can be put on
 * each. Log lines are formatted and serialised as in Lambda, then dropped instead of written: the
 * write itself (a pipe from serverless-offline's worker thread) is what bench/routes.ts measures.
 *
 * Options: --seconds <per row per round> (default 1), --rounds (3).
 */
import { Console } from 'node:console';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import httpHeaderNormalizer from '@middy/http-header-normalizer';
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';

const { values: flags } = parseArgs({
  options: { seconds: { type: 'string', default: '1' }, rounds: { type: 'string', default: '3' } },
});
const LOOP_MS = Number(flags.seconds) * 1000;
const ROUNDS = Number(flags.rounds);

// What the service reads from its environment, so config() answers as on a stack.
Object.assign(process.env, {
  STAGE: process.env.STAGE ?? 'bench',
  FILES_BUCKET: process.env.FILES_BUCKET ?? 'bench-files',
  JOBS_TABLE: process.env.JOBS_TABLE ?? 'bench-jobs',
  USERS_TABLE: process.env.USERS_TABLE ?? 'bench-users',
  POWERTOOLS_SERVICE_NAME: 'file-jobs',
});
const { logger } = await import('../lib/log.ts');
const { flushMetrics } = await import('../lib/metrics.ts');
const { routeStack } = await import('../lib/http/route-stack.ts');
const { requestLog } = await import('../lib/http/middleware/request-log.ts');
const { concretePaths } = await import('../lib/http/middleware/concrete-paths.ts');
const { config } = await import('../lib/config.ts');

let linesWritten = 0;
const discard = new Writable({
  write(_chunk, _encoding, done) {
    linesWritten++;
    done();
  },
});
// Powertools keeps its own Console; give it one that drops the line after formatting it.
(logger as unknown as { console: Console }).console = new Console({ stdout: discard, stderr: discard });

const event = (): APIGatewayProxyEventV2 =>
  ({
    version: '2.0',
    routeKey: 'GET /health',
    rawPath: '/health',
    rawQueryString: '',
    headers: {
      accept: '*/*',
      'accept-encoding': 'gzip, deflate',
      'accept-language': '*',
      connection: 'keep-alive',
      host: '127.0.0.1:3000',
      'sec-fetch-mode': 'cors',
      'user-agent': 'node',
    },
    isBase64Encoded: false,
    requestContext: {
      accountId: 'offlineContext_accountId',
      apiId: 'offlineContext_apiId',
      domainName: 'offlineContext_domainName',
      domainPrefix: 'offlineContext_domainPrefix',
      http: {
        method: 'GET',
        path: '/health',
        protocol: 'HTTP/1.1',
        sourceIp: '127.0.0.1',
        userAgent: 'node',
      },
      requestId: `req-${Math.random()}`,
      routeKey: 'GET /health',
      stage: '$default',
      time: '01/Jan/2026:00:00:00 +0000',
      timeEpoch: 0,
    },
  }) as APIGatewayProxyEventV2;

const context = {
  callbackWaitsForEmptyEventLoop: true,
  functionName: 'file-jobs-bench-health',
  functionVersion: '$LATEST',
  invokedFunctionArn: 'offline_invokedFunctionArn_for_file-jobs-bench-health',
  memoryLimitInMB: '512',
  awsRequestId: 'bench-request',
  logGroupName: 'offline_logGroupName_for_file-jobs-bench-health',
  logStreamName: 'offline_logStreamName_for_file-jobs-bench-health',
  getRemainingTimeInMillis: () => 29_000,
  done: () => {},
  fail: () => {},
  succeed: () => {},
} as Context;

const answer = () => ({
  statusCode: 200,
  headers: { 'content-type': 'application/json', 'x-request-id': 'bench' },
  body: JSON.stringify({ status: 'ok', stage: config().stage }),
});
const health = async () => ({ status: 200, body: { status: 'ok', stage: config().stage } });
type Invoke = (event: APIGatewayProxyEventV2, context: Context) => Promise<unknown>;
const bare = () => middy<APIGatewayProxyEventV2>().handler(async () => answer()) as unknown as Invoke;

/** middy with one middleware around the bare answer. */
const alone = (middleware: middy.MiddlewareObj<APIGatewayProxyEventV2>) =>
  middy<APIGatewayProxyEventV2>()
    .use(middleware)
    .handler(async () => answer()) as unknown as Invoke;

const rows: [string, Invoke][] = [
  ['bare async handler (no middy)', async () => answer()],
  ['middy, no middleware', bare()],
  ['middy + Powertools injectLambdaContext', alone(injectLambdaContext(logger, { resetKeys: true }))],
  [
    'middy + requestLog (keys + one log line)',
    alone(requestLog() as middy.MiddlewareObj<APIGatewayProxyEventV2>),
  ],
  ['middy + flushMetrics', alone(flushMetrics())],
  ['middy + http-header-normalizer', alone(httpHeaderNormalizer())],
  ['middy + concretePaths', alone(concretePaths() as middy.MiddlewareObj<APIGatewayProxyEventV2>)],
  [
    'route stack, auth none (GET /health)',
    routeStack({ auth: 'none' }, health, undefined) as unknown as Invoke,
  ],
  [
    'route stack, stubbed token check',
    routeStack({}, health, async () => ({ username: 'bench', tokenId: 't' })) as unknown as Invoke,
  ],
];

const healthStack = rows.find(([name]) => name.startsWith('route stack, auth none'))![1];

async function perCall(invoke: Invoke) {
  const warmUntil = performance.now() + Math.min(200, LOOP_MS / 4);
  while (performance.now() < warmUntil) await invoke(event(), context);
  let calls = 0;
  const started = performance.now();
  const until = started + LOOP_MS;
  while (performance.now() < until) {
    for (let i = 0; i < 100; i++) await invoke(event(), context);
    calls += 100;
  }
  return ((performance.now() - started) / calls) * 1000;
}

const cpu = cpus()[0];
console.log(
  `machine  ${cpu?.model ?? 'unknown CPU'}, ${cpus().length} cores (available parallelism ${availableParallelism()}), node ${process.version}`,
);
console.log(
  `load     ${loadavg()
    .map((v) => v.toFixed(2))
    .join(' ')} at the start (shared machine)`,
);
const best = new Map<string, number>();
const measure = async (name: string, invoke: Invoke) => {
  const us = await perCall(invoke);
  best.set(name, Math.min(best.get(name) ?? Number.POSITIVE_INFINITY, us));
};
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, invoke] of rows) await measure(name, invoke);
  logger.setLogLevel('SILENT');
  await measure('route stack, auth none, logs off', healthStack);
  logger.setLogLevel('INFO');
}
console.log(`\nµs per invocation, best of ${ROUNDS} rounds of ${LOOP_MS / 1000} s each:`);
for (const [name, us] of best) console.log(`  ${name.padEnd(44)} ${us.toFixed(1).padStart(7)} µs`);
console.log(`  (${linesWritten.toLocaleString('en-US')} log lines formatted and dropped)`);
console.log(
  `load     ${loadavg()
    .map((v) => v.toFixed(2))
    .join(' ')} at the end`,
);
