import { backoffDelay } from '../common/backoff.ts';
import { AbortedError } from './errors.ts';

export { backoffDelay };

/** The client's retries: exponential backoff with full jitter (common/backoff.ts). */
export interface RetryPolicy {
  /** Retries after the first attempt. */
  retries: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** A server's Retry-After is honoured up to this long; longer ones end the retries. */
  maxRetryAfterMs: number;
  /** Injectable for tests. */
  random: () => number;
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Told about each retry before its wait (logging, counting). */
  onRetry?: ((info: { attempt: number; delayMs: number; error: unknown }) => void) | undefined;
}

/** Waits `ms`, or rejects with an AbortedError as soon as `signal` fires. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortedBy(signal));
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortedBy(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The error to throw when `signal` aborted: its reason when that is already ours, else an AbortedError. */
export function abortedBy(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof AbortedError) return reason;
  return new AbortedError('the operation was aborted', { cause: reason });
}

/** Waits for `promise` (its outcome ignored) at most `ms`, leaving no timer behind. */
export async function settleWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    promise.catch(() => {}),
    new Promise((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortedBy(signal);
}

export const defaultRetryPolicy: RetryPolicy = {
  retries: 5,
  baseDelayMs: 200,
  maxDelayMs: 10_000,
  maxRetryAfterMs: 60_000,
  random: Math.random,
  sleep,
};

export function retryPolicy(overrides: Partial<RetryPolicy> = {}): RetryPolicy {
  const policy = { ...defaultRetryPolicy };
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) (policy as Record<string, unknown>)[key] = value;
  }
  return policy;
}

/**
 * What to do after a failure: `false` gives up (the error is thrown), `true` retries after the
 * backoff delay, a number retries after that many milliseconds (a Retry-After, or 0 for a retry that
 * needs no pause, such as one with a freshly signed URL).
 */
export type RetryDecision = boolean | number;

/**
 * Runs `attempt` until it succeeds, `decide` says stop, or the retries run out. Aborting `signal`
 * stops the waiting at once; the attempt itself should watch the same signal.
 */
export async function withRetries<T>(
  attempt: (attemptNumber: number) => Promise<T>,
  decide: (error: unknown, attemptNumber: number) => RetryDecision,
  policy: RetryPolicy,
  signal?: AbortSignal,
): Promise<T> {
  for (let n = 0; ; n++) {
    throwIfAborted(signal);
    try {
      return await attempt(n);
    } catch (error) {
      if (signal?.aborted) throw abortedBy(signal);
      if (n >= policy.retries) throw error;
      const decision = decide(error, n);
      if (decision === false) throw error;
      const delayMs = decision === true ? backoffDelay(n, policy) : decision;
      if (delayMs > policy.maxRetryAfterMs) throw error;
      policy.onRetry?.({ attempt: n + 1, delayMs, error });
      if (delayMs > 0) await policy.sleep(delayMs, signal);
    }
  }
}
