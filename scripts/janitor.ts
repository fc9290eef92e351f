/**
 * `npm run janitor`: one janitor run, now, against the local stack that `npm start` runs (read from
 * .local/stack.json), or against whatever the environment's configuration points at.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { localCredentials, projectRoot, type StackInfo } from './local-stack.ts';

const stackFile = join(projectRoot, '.local', 'stack.json');
if (!process.env.FILES_BUCKET) {
  if (!existsSync(stackFile)) {
    console.error(
      'error: no local stack: run `npm start` first (or set FILES_BUCKET, JOBS_TABLE, … for another stage)',
    );
    process.exit(2);
  }
  const stack = JSON.parse(readFileSync(stackFile, 'utf8')) as StackInfo;
  Object.assign(process.env, {
    ...localCredentials,
    AWS_REGION: stack.region,
    STAGE: stack.stage,
    FILES_BUCKET: stack.bucket,
    JOBS_TABLE: stack.tables.jobs,
    USERS_TABLE: stack.tables.users,
    AWS_ENDPOINT_URL_S3: stack.s3Endpoint,
    AWS_ENDPOINT_URL_DYNAMODB: stack.dynamodbEndpoint,
    ...(stack.lambdaEndpoint ? { AWS_ENDPOINT_URL_LAMBDA: stack.lambdaEndpoint } : {}),
    EXPORT_WORKER_FUNCTION: `file-jobs-${stack.stage}-exportWorker`,
  });
}
// Imported after the environment is set: the configuration is read on first use.
const { runJanitor } = await import('../lib/janitor/janitor.ts');
const report = await runJanitor();
console.log(JSON.stringify(report, null, 2));
