import { readFileSync, rmSync } from 'node:fs';
import type { LocalStack } from '../../scripts/local-stack.ts';
import { secretsIn } from './logs.ts';

export default async function globalTeardown() {
  await (globalThis as { __LOCAL_STACK__?: LocalStack }).__LOCAL_STACK__?.stop();
  // The whole run's handler logs must hold no password and no token.
  const logFile = process.env.TEST_LOG_FILE;
  if (!logFile) return;
  const found = secretsIn(readFileSync(logFile, 'utf8'));
  if (found.length > 0)
    throw new Error(`secrets in the handlers' logs (kept in ${logFile}):\n${found.join('\n')}`);
  rmSync(logFile, { force: true });
}
