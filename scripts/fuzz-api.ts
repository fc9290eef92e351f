/**
 * CI's API fuzzing: starts the local stack as the tests do (emulators and serverless-offline on
 * free ports; TEST_EMULATOR=localstack for LocalStack), signs the demo user in, and runs schemathesis
 * against the stack's own /openapi.json with that token. Bounded: a fixed seed, a fixed number of
 * examples per operation, and a hard time limit after which the fuzzer is killed and the step fails.
 * Settings (checks, phases, seed, examples) are in .ci/schemathesis.toml.
 *
 *   node scripts/fuzz-api.ts                      # needs .venv-ci (bash .ci/run creates it)
 *   FUZZ_TIME_LIMIT=300 node scripts/fuzz-api.ts  # seconds; default 600
 *
 * Passes when schemathesis finds no failure: no 5xx, every status, content type, header and body as
 * the document says.
 */
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DEMO_USER, projectRoot, startLocalStack } from './local-stack.ts';

const schemathesis = join(projectRoot, '.venv-ci', 'bin', 'schemathesis');
const configFile = join(projectRoot, '.ci', 'schemathesis.toml');
const timeLimitSeconds = Number(process.env.FUZZ_TIME_LIMIT ?? 600);

/**
 * The token comes first, from one good sign-in: the fuzzer's own sign-in attempts fail by design,
 * and failures count toward the per-IP throttle, after which even good credentials get 429.
 */
async function signIn(apiUrl: string): Promise<string> {
  const response = await fetch(`${apiUrl}/auth/signin`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(DEMO_USER),
  });
  if (response.status !== 200)
    throw new Error(`demo sign-in failed: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { token: string }).token;
}

/**
 * Schemathesis closes with pytest's banner ("==== 1 warning in 26.34s ===="), which CI reads as a
 * pytest run that executed no test; the banners are printed as plain headings instead, so the suite's
 * own closing line is the one that counts.
 */
function unbanner(line: string): string {
  const banner = /^=+ (.*?) =+$/.exec(line);
  return banner ? `-- ${banner[1]} --` : line;
}

function runSchemathesis(apiUrl: string, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      schemathesis,
      [
        '--config-file',
        configFile,
        'run',
        `${apiUrl}/openapi.json`,
        '--url',
        apiUrl,
        '--header',
        `Authorization: Bearer ${token}`,
      ],
      // The token stays out of the output: schemathesis sanitizes Authorization in its reports.
      { stdio: ['inherit', 'pipe', 'inherit'], env: { ...process.env, NO_COLOR: '1' } },
    );
    createInterface({ input: child.stdout! }).on('line', (line) => console.log(unbanner(line)));
    const timer = setTimeout(() => {
      console.error(`\nfuzz: schemathesis ran past the time limit of ${timeLimitSeconds} s: killing it`);
      child.kill('SIGKILL');
    }, timeLimitSeconds * 1000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? (signal ? 124 : 1));
    });
  });
}

async function main() {
  if (!existsSync(schemathesis)) {
    console.error(`fuzz: ${schemathesis} not found: create .venv-ci (pip install -r .ci/requirements.txt)`);
    return 1;
  }
  const started = Date.now();
  const keysFile = join(tmpdir(), `file-jobs-fuzz-keys-${process.pid}.json`);
  const stack = await startLocalStack({ stage: 'test', withApi: true, keysFile });
  try {
    const apiUrl = stack.info.apiUrl!;
    console.log(
      `fuzz: stack up in ${((Date.now() - started) / 1000).toFixed(1)} s at ${apiUrl} (S3: ${stack.info.emulator.s3}, DynamoDB: ${stack.info.emulator.dynamodb})`,
    );
    const token = await signIn(apiUrl);
    const fuzzStarted = Date.now();
    const code = await runSchemathesis(apiUrl, token);
    console.log(`fuzz: schemathesis took ${((Date.now() - fuzzStarted) / 1000).toFixed(1)} s, exit ${code}`);
    return code;
  } finally {
    await stack.stop();
    rmSync(keysFile, { force: true });
  }
}

process.exitCode = await main();
