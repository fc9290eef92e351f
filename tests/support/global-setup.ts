import { appendFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalStack } from '../../scripts/local-stack.ts';

/**
 * Starts the emulators and serverless-offline on free ports, once for the whole run, so tests also
 * run beside `npm start`. The stack's description travels to the test workers through the
 * environment (workers are forked after this returns).
 */
export default async function globalSetup() {
  const started = Date.now();
  const keysFile = join(tmpdir(), `file-jobs-test-keys-${process.pid}.json`);
  // Everything the handlers log (serverless-offline's output) goes to one file, checked for secrets.
  const logFile = join(tmpdir(), `file-jobs-test-${process.pid}.log`);
  writeFileSync(logFile, '');
  // Every AWS call the handlers make (lib/aws/call-audit.ts), checked against their roles at the end.
  const auditFile = join(tmpdir(), `file-jobs-test-aws-calls-${process.pid}.jsonl`);
  writeFileSync(auditFile, '');
  const stack = await startLocalStack({
    log: (line) => appendFileSync(logFile, `${line}\n`),
    stage: 'test',
    withApi: true,
    keysFile,
    // Small export parts, so that small test files still export in several parts.
    // Short freshness bounds, so that the rotation and revocation tests need not wait minutes.
    // A short pause before an interrupted export worker restarts itself.
    env: {
      EXPORT_PART_SIZE_MIB: '5',
      JWT_KEYS_MAX_AGE_SECONDS: '2',
      AUTH_USER_CACHE_SECONDS: '2',
      EXPORT_RESTART_DELAY_SECONDS: '1',
      AWS_CALL_AUDIT_FILE: auditFile,
    },
  });
  process.once('exit', () => rmSync(keysFile, { force: true }));
  (globalThis as { __LOCAL_STACK__?: typeof stack }).__LOCAL_STACK__ = stack;
  Object.assign(process.env, stack.handlerEnv, {
    TEST_STACK: JSON.stringify(stack.info),
    TEST_LOG_FILE: logFile,
    TEST_AWS_CALL_AUDIT_FILE: auditFile,
    // The in-process tests call the domain directly; their metrics would only be noise on the console.
    POWERTOOLS_METRICS_DISABLED: 'true',
  });
  process.stderr.write(
    `\nlocal stack up in ${((Date.now() - started) / 1000).toFixed(1)} s: ${stack.info.apiUrl}\n`,
  );
}
