import { formatReport, runSoak } from '../../scripts/soak/soak.ts';
import { testStack } from '../support/stack-env.ts';

/**
 * A short soak (scripts/soak/soak.ts, as `npm run soak` runs it) on the shared test stack: 8 users
 * uploading, killing, racing completions, exporting and cancelling at once, then the janitor and the
 * invariants read straight from S3 and DynamoDB. The seed is fixed so a failure repeats.
 */
describe('soak', () => {
  it('leaves no violation and answers no 5xx', async () => {
    const stack = testStack();
    const report = await runSoak({
      target: stack,
      seed: Number(process.env.SOAK_SEED ?? 20_260_101),
      users: 8,
      lanes: 2,
      ops: 32,
      // The op count bounds the run; the duration only guards against a stalled stack.
      durationMs: 120_000,
      settleMs: 10_000,
      exportWaitMs: 10_000,
      // A signed-out sign-in's tokens are refused everywhere within the stack's token-state cache.
      signOutWindowMs: (Number(process.env.AUTH_USER_CACHE_SECONDS ?? 30) + 3) * 1000,
      janitor: true,
      // Other test files share this stack: only jobs idle this long count as stale.
      janitorStaleSeconds: 3,
      userPrefix: 'soak',
    });
    const text = formatReport(report);
    if (report.violations.length > 0 || report.apiServerErrors > 0 || process.env.SOAK_REPORT) {
      process.stderr.write(`${text}\n`);
    }
    expect({ violations: report.violations, apiServerErrors: report.apiServerErrors }).toEqual({
      violations: [],
      apiServerErrors: 0,
    });
    expect(report.opsTotal).toBeGreaterThanOrEqual(16);
  }, 240_000);
});
