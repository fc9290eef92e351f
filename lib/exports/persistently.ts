import { type Backoff, backoffDelay } from '../../common/backoff.ts';
import { TransitionRejected } from '../jobs/jobs-table.ts';
import { logger } from '../log.ts';

/**
 * The export worker's bookkeeping around a stop (claiming the job, recording a restart, starting the
 * next invocation, giving its lease up, finishing a cancel, recording a failure) has to land: if it
 * does not, the job keeps a lease nobody renews, and waits for it to run out (EXPORT_LEASE_SECONDS)
 * and then for the janitor's next run (every 15 minutes). The SDK's own retries give up after about
 * 6 s (three attempts; CLIENT_TIMEOUTS), and an outage of S3 or DynamoDB can outlast them. So these
 * steps are tried again with backoff until they land, are rejected (a TransitionRejected: the job is
 * no longer this worker's, and retrying cannot change that), or the next wait would pass `until`,
 * when the last error is thrown. Every step retried here is safe to repeat: conditional on the
 * worker's token, or idempotent.
 */
export const WORKER_BACKOFF: Backoff = { baseDelayMs: 500, maxDelayMs: 8000, random: Math.random };

export async function persistently<T>(
  what: string,
  attempt: () => Promise<T>,
  until: number,
  backoff: Backoff = WORKER_BACKOFF,
): Promise<T> {
  for (let retry = 0; ; retry++) {
    try {
      return await attempt();
    } catch (error) {
      if (error instanceof TransitionRejected) throw error;
      const delayMs = backoffDelay(retry, backoff);
      if (Date.now() + delayMs >= until) throw error;
      logger.warn(`${what} failed; trying again`, { error: error as Error, retry: retry + 1, delayMs });
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}
