import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { LocalStack } from '../../scripts/local-stack.ts';
import { auditSummary, checkAuditedCalls } from './iam-audit.ts';
import { secretsIn } from './logs.ts';

/** At most this many refusals are listed; the file keeps them all. */
const LISTED = 40;

export default async function globalTeardown() {
  const stack = (globalThis as { __LOCAL_STACK__?: LocalStack }).__LOCAL_STACK__;
  await stack?.stop();
  const problems: string[] = [];
  // The whole run's handler logs must hold no password and no token.
  const logFile = process.env.TEST_LOG_FILE;
  if (logFile) {
    const found = secretsIn(readFileSync(logFile, 'utf8'));
    if (found.length > 0)
      problems.push(`secrets in the handlers' logs (kept in ${logFile}):\n${found.join('\n')}`);
    else rmSync(logFile, { force: true });
  }
  // Every AWS call a function made must be allowed by the role serverless.yml gives it.
  const auditFile = process.env.TEST_AWS_CALL_AUDIT_FILE;
  if (auditFile && stack) {
    const result = checkAuditedCalls(auditFile, stack.service);
    const { unusedGrants, refused } = result;
    process.stderr.write(`${auditSummary(result)}\n`);
    // Not a failure: a grant a rare path needs may go unused in a run. Listed for review.
    if (process.env.IAM_CHECK_UNUSED_GRANTS)
      writeFileSync(process.env.IAM_CHECK_UNUSED_GRANTS, `${unusedGrants.join('\n')}\n`);
    if (refused.length > 0)
      problems.push(
        `AWS calls their functions' roles would refuse (calls kept in ${auditFile}):\n${refused.slice(0, LISTED).join('\n')}${refused.length > LISTED ? `\n… and ${refused.length - LISTED} more` : ''}`,
      );
    else rmSync(auditFile, { force: true });
  }
  if (problems.length > 0) throw new Error(problems.join('\n\n'));
}
