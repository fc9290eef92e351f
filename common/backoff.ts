/**
 * Exponential backoff with full jitter (AWS's recommendation): before retry n (0-based) wait a random
 * time in [0, min(maxDelayMs, baseDelayMs * 2^n)), so that many callers retrying at once spread out.
 * The client's retries and the export worker's (lib/exports/persistently.ts) both wait this way.
 */
export interface Backoff {
  baseDelayMs: number;
  maxDelayMs: number;
  random: () => number;
}

/** The wait before retry `attempt` (0 for the first retry). */
export function backoffDelay(attempt: number, policy: Backoff): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt);
  return Math.floor(policy.random() * ceiling);
}
