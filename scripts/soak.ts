/**
 * `npm run soak -- [options]`: many users uploading, killing, completing, exporting and cancelling
 * at once on a local stack, then one janitor run and invariants checked straight against S3 and
 * DynamoDB. Exits 1 on any violation (listed with job ids and what S3 holds), 2 on bad usage.
 *
 *   --seed <n>         PRNG seed (default: random, printed); the same seed repeats the same choices
 *   --users <n>        users (default 8), each with --lanes operations at once (default 2)
 *   --ops <n>          stop starting operations after this many (default 200)
 *   --duration <s>     or after this many seconds (default 120), whichever comes first
 *   --settle <s>       longest wait for unfinished jobs before and after the janitor (default 60)
 *   --stack-file <f>   use the running stack `npm start` describes (.local/stack.json) instead of
 *                      starting a fresh one; orphans are then only looked for under the soak's users
 *   --faults           the handlers reach S3 and DynamoDB (and clients the presigned URLs) through
 *                      TCP fault proxies, one of which breaks for a moment every few seconds
 *                      (refusing, swallowing or cutting connections): a fresh stack only
 *   --crashes          kill the API (serverless-offline and its export workers) every 20-40 s and
 *                      start it again, mid-request and mid-export: a fresh stack only
 *   --json             print the report as JSON
 *   --verbose          show the stack's output
 */
import { randomInt } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { auditSummary, checkAuditedCalls } from '../tests/support/iam-audit.ts';
import { MissingPrerequisiteError } from './emulators.ts';
import { type LocalStack, localCredentials, type StackInfo, startLocalStack } from './local-stack.ts';
import { formatReport, runSoak, type SoakTarget } from './soak/soak.ts';

function usage(message: string): never {
  console.error(`error: ${message}`);
  process.exit(2);
}

let values: Record<string, string | boolean | undefined>;
try {
  ({ values } = parseArgs({
    options: {
      seed: { type: 'string' },
      users: { type: 'string', default: '8' },
      lanes: { type: 'string', default: '2' },
      ops: { type: 'string', default: '200' },
      duration: { type: 'string', default: '120' },
      settle: { type: 'string', default: '60' },
      'stack-file': { type: 'string' },
      faults: { type: 'boolean', default: false },
      crashes: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      verbose: { type: 'boolean', default: false },
    },
  }));
} catch (error) {
  usage((error as Error).message);
}

const whole = (name: string, min: number, max: number) => {
  const value = Number(values[name]);
  if (!Number.isInteger(value) || value < min || value > max)
    usage(`--${name} must be a whole number from ${min} to ${max}`);
  return value;
};
const seed = values.seed === undefined ? randomInt(1, 2 ** 31) : whole('seed', 0, 2 ** 53);
const users = whole('users', 1, 200);
const lanes = whole('lanes', 1, 16);
const ops = whole('ops', 1, 1_000_000);
const duration = whole('duration', 1, 7 * 24 * 3600);
const settleSeconds = whole('settle', 1, 3600);
const log = (line: string) => {
  if (!values.json) console.error(`  ${line}`);
};

const FRESH_STACK_USER_CACHE_SECONDS = 10;

let stack: LocalStack | undefined;
let target: SoakTarget;
/** With a fresh stack: where its functions' AWS calls are recorded for the IAM check. */
let auditFile: string | undefined;
const stackFile = values['stack-file'] as string | undefined;
const faults = values.faults === true;
const crashes = values.crashes === true;
if (stackFile && (faults || crashes))
  usage('--faults and --crashes need a fresh stack: leave out --stack-file');
if (stackFile) {
  if (!existsSync(stackFile)) usage(`${stackFile} not found: run \`npm start\` first`);
  const info = JSON.parse(readFileSync(stackFile, 'utf8')) as StackInfo;
  if (!info.apiUrl) usage(`${stackFile} names no apiUrl`);
  target = { ...info, apiUrl: info.apiUrl };
  Object.assign(process.env, {
    ...localCredentials,
    AWS_REGION: info.region,
    STAGE: info.stage,
    FILES_BUCKET: info.bucket,
    JOBS_TABLE: info.tables.jobs,
    USERS_TABLE: info.tables.users,
    AWS_ENDPOINT_URL_S3: info.s3Endpoint,
    AWS_ENDPOINT_URL_DYNAMODB: info.dynamodbEndpoint,
    ...(info.lambdaEndpoint ? { AWS_ENDPOINT_URL_LAMBDA: info.lambdaEndpoint } : {}),
    EXPORT_WORKER_FUNCTION: `file-jobs-${info.stage}-exportWorker`,
  });
} else {
  log('starting a local stack (emulators and serverless-offline)…');
  auditFile = join(tmpdir(), `file-jobs-soak-aws-calls-${process.pid}.jsonl`);
  writeFileSync(auditFile, '');
  try {
    stack = await startLocalStack({
      stage: 'soak',
      withApi: true,
      keysFile: join(tmpdir(), `file-jobs-soak-keys-${process.pid}.json`),
      // Exports in 5 MiB steps, so a cancel can land between the steps of a small file.
      // With crashes, a dead worker's lease must run out before the janitor can restart its export.
      // Tokens of 90 s, so that every user's client renews its token while the soak runs (a third of
      // the life before it ends: 30 s, more than a crashed API's restart takes), and sign-outs that
      // reach every container within 10 s, so that a session op checks them in 15.
      env: {
        EXPORT_PART_SIZE_MIB: '5',
        JWT_TTL_SECONDS: '90',
        AUTH_USER_CACHE_SECONDS: String(FRESH_STACK_USER_CACHE_SECONDS),
        ...(crashes ? { EXPORT_LEASE_SECONDS: '20' } : {}),
        // Every AWS call of the functions, checked against their roles at the end (as `npm test` does).
        AWS_CALL_AUDIT_FILE: auditFile,
      },
      faultProxies: faults,
      log: (line) => {
        if (values.verbose) console.error(`  | ${line}`);
      },
    });
  } catch (error) {
    usage(error instanceof MissingPrerequisiteError ? error.message : String((error as Error).stack));
  }
  // The janitor and the checks run here, straight to the emulators (never through the proxies).
  Object.assign(process.env, stack.handlerEnv, {
    AWS_ENDPOINT_URL_S3: stack.info.s3Endpoint,
    AWS_ENDPOINT_URL_DYNAMODB: stack.info.dynamodbEndpoint,
  });
  target = { ...stack.info, apiUrl: stack.info.apiUrl! };
  log(`stack up: ${target.apiUrl}`);
}

// The janitor runs in this process; its INFO lines and metrics would drown the report.
Object.assign(process.env, { POWERTOOLS_LOG_LEVEL: 'WARN', POWERTOOLS_METRICS_DISABLED: 'true' });

const stop = async () => {
  await stack?.stop();
};
process.once('SIGINT', () => void stop().then(() => process.exit(130)));

let exitCode = 1;
try {
  log(`seed ${seed}; ${users} users x ${lanes} lanes; at most ${ops} operations or ${duration} s`);
  const report = await runSoak({
    target,
    seed,
    users,
    lanes,
    ops,
    durationMs: duration * 1000,
    settleMs: settleSeconds * 1000,
    janitor: true,
    janitorStaleSeconds: 0,
    // A running stack has the default token-state cache (AUTH_USER_CACHE_SECONDS, 30 s).
    signOutWindowMs: (stackFile ? 30 : FRESH_STACK_USER_CACHE_SECONDS) * 1000 + 5000,
    // A fresh stack is the soak's alone: every open multipart upload in it counts.
    wholeBucket: !stackFile,
    ...(stack?.proxies ? { faults: stack.proxies } : {}),
    ...(crashes && stack?.crashApi ? { crashApi: stack.crashApi } : {}),
    log,
  });
  console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
  exitCode = report.violations.length === 0 ? 0 : 1;
  if (auditFile && stack) {
    const result = checkAuditedCalls(auditFile, stack.service);
    const { refused } = result;
    console.error(auditSummary(result, { unseen: false }));
    if (refused.length > 0) console.error(`(calls kept in ${auditFile}):\n${refused.join('\n')}`);
    if (refused.length > 0) exitCode = 1;
    else rmSync(auditFile, { force: true });
  }
} catch (error) {
  const cause = (error as Error).cause;
  console.error(
    `soak failed: ${(error as Error).stack ?? error}${cause ? `\ncaused by: ${(cause as Error).stack ?? cause}` : ''}`,
  );
} finally {
  await stop();
}
process.exit(exitCode);
