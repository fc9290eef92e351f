/**
 * `npm start`: the whole service on this machine. Emulators (or the endpoints in AWS_ENDPOINT_URL*),
 * the bucket and tables, the demo user, and serverless-offline on PORT (3000 by default).
 * Writes what it started to .local/stack.json; Ctrl-C stops everything.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MissingPrerequisiteError } from './emulators.ts';
import { type LocalStack, projectRoot, startLocalStack } from './local-stack.ts';

const stackFile = join(projectRoot, '.local', 'stack.json');
const verbose = process.argv.includes('--verbose');

async function main() {
  let stack: LocalStack | undefined;
  let stopping = false;
  const shutdown = async (code: number) => {
    if (stopping) return;
    stopping = true;
    console.log('\nstopping the local stack…');
    await stack?.stop();
    rmSync(stackFile, { force: true });
    process.exit(code);
  };
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));

  console.log('starting the local stack…');
  try {
    stack = await startLocalStack({
      stage: 'local',
      withApi: true,
      watch: true,
      httpPort: Number(process.env.PORT ?? 3000),
      lambdaPort: Number(process.env.LAMBDA_PORT ?? 3002),
      log: (line) => {
        if (verbose || /error|warn|exception/i.test(line)) console.log(`  | ${line}`);
      },
    });
  } catch (error) {
    const message =
      error instanceof MissingPrerequisiteError ? error.message : String((error as Error).stack);
    console.error(`npm start failed: ${message}`);
    await shutdown(1);
    return;
  }
  if (stopping) return;
  const { info } = stack;
  mkdirSync(join(projectRoot, '.local'), { recursive: true });
  writeFileSync(stackFile, `${JSON.stringify(info, null, 2)}\n`);
  console.log(`
  API                ${info.apiUrl}
  Lambda invoke API  ${info.lambdaEndpoint}
  S3                 ${info.s3Endpoint}   bucket ${info.bucket}
  DynamoDB           ${info.dynamodbEndpoint}   tables ${info.tables.jobs}, ${info.tables.users}
  region             ${info.region}
  written to         ${stackFile}

  try:  curl ${info.apiUrl}/health
  Ctrl-C stops everything.
`);
}

await main();
