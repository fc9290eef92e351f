import { sleep as defaultSleep } from './retry.ts';

export interface ProgressBatcherOptions {
  /** Most items per request (the service takes up to 1,000 parts per progress report). */
  maxBatch?: number;
  /** An error after which reporting stops for good (the job is no longer active). */
  isFatal?: (error: unknown) => boolean;
  onFatal?: (error: unknown) => void;
  /** Told when a batch is given up after `maxFailures` tries in a row. */
  onDropped?: (items: number, error: unknown) => void;
  maxFailures?: number;
  retryDelayMs?: number;
  /**
   * Least time from the start of one report to the start of the next (ms); parts that finish in
   * between go in the next. Default 0 (the next report leaves as soon as the last one is answered).
   * `flush()` sends at once.
   */
  minIntervalMs?: number;
  now?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/**
 * Reports finished parts to the server beside the transfer, never in its way: `add` only queues;
 * at most one report is in flight, and the next one carries everything that finished meanwhile. On a
 * fast link that is a handful of requests for hundreds of parts, where one request per part costs
 * about 30% of the throughput. With `minIntervalMs` the reports are also spaced in time: where the
 * service shares the machine with S3 (an emulator), each report's work is taken from the transfer.
 *
 * Progress on the server is advisory (completion reads S3's own part list), so a report that keeps
 * failing is dropped rather than failing the upload; a fatal error (the job was killed) stops it.
 */
export class ProgressBatcher<T> {
  /** Reports sent successfully. */
  requests = 0;
  /** Items sent successfully. */
  sent = 0;
  private queue: T[] = [];
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly send: (items: T[]) => Promise<unknown>;
  private readonly options: Required<Omit<ProgressBatcherOptions, 'onFatal' | 'onDropped'>> &
    Pick<ProgressBatcherOptions, 'onFatal' | 'onDropped'>;
  private lastSentAt = Number.NEGATIVE_INFINITY;
  /** Ends the wait between two reports early (flush, stop). */
  private wake: AbortController | undefined;
  private hurry = false;

  constructor(send: (items: T[]) => Promise<unknown>, options: ProgressBatcherOptions = {}) {
    this.send = send;
    this.options = {
      maxBatch: 1000,
      isFatal: () => false,
      maxFailures: 3,
      retryDelayMs: 500,
      minIntervalMs: 0,
      now: () => performance.now(),
      sleep: (ms, signal) => defaultSleep(ms, signal),
      ...options,
    };
  }

  /** Queues an item; starts a report unless one is in flight. Never waits. */
  add(item: T): void {
    if (this.stopped) return;
    this.queue.push(item);
    this.running ??= this.drain();
  }

  get pending(): number {
    return this.queue.length;
  }

  get inFlight(): boolean {
    return this.running !== undefined;
  }

  private async drain(): Promise<void> {
    let failures = 0;
    try {
      while (this.queue.length > 0 && !this.stopped) {
        const wait = this.lastSentAt + this.options.minIntervalMs - this.options.now();
        // No await when there is nothing to wait for: the report leaves with what is queued now.
        if (wait > 0 && !this.hurry) {
          await this.spaceOut(wait);
          if (this.stopped) return;
        }
        const batch = this.queue.splice(0, this.options.maxBatch);
        this.lastSentAt = this.options.now();
        try {
          await this.send(batch);
          this.requests++;
          this.sent += batch.length;
          failures = 0;
        } catch (error) {
          if (this.options.isFatal(error)) {
            this.stop();
            this.options.onFatal?.(error);
            return;
          }
          failures++;
          if (failures >= this.options.maxFailures) {
            failures = 0;
            this.options.onDropped?.(batch.length, error);
          } else {
            this.queue.unshift(...batch);
            await this.options.sleep(this.options.retryDelayMs * 2 ** (failures - 1));
          }
        }
      }
    } finally {
      this.running = undefined;
    }
  }

  /** Waits out what is left of `minIntervalMs` since the last report; flush() and stop() end it. */
  private async spaceOut(wait: number): Promise<void> {
    this.wake = new AbortController();
    await this.options.sleep(wait, this.wake.signal).catch(() => {});
    this.wake = undefined;
  }

  /** Resolves when everything queued so far has been reported (or dropped); sends at once. */
  async flush(): Promise<void> {
    this.hurry = true;
    try {
      this.wake?.abort();
      while (this.running) await this.running;
    } finally {
      this.hurry = false;
    }
  }

  /** Discards what is queued and takes nothing more. */
  stop(): void {
    this.stopped = true;
    this.queue = [];
    this.wake?.abort();
  }
}

/** Bytes per second over a sliding window (5 s by default), so a stall shows within seconds. */
export class SpeedMeter {
  private samples: { t: number; bytes: number }[];
  private total = 0;
  private readonly windowMs: number;
  private readonly now: () => number;

  constructor(options: { windowMs?: number; now?: () => number } = {}) {
    this.windowMs = options.windowMs ?? 5000;
    this.now = options.now ?? (() => performance.now());
    this.samples = [{ t: this.now(), bytes: 0 }];
  }

  add(bytes: number): void {
    this.total += bytes;
    const t = this.now();
    const last = this.samples[this.samples.length - 1]!;
    if (t - last.t >= 100) this.samples.push({ t, bytes: this.total });
  }

  /** Bytes per second, or undefined while there is too little history to say. */
  rate(): number | undefined {
    const t = this.now();
    while (this.samples.length > 1 && this.samples[1]!.t <= t - this.windowMs) this.samples.shift();
    const first = this.samples[0]!;
    const elapsed = t - first.t;
    if (elapsed < 250) return undefined;
    return ((this.total - first.bytes) / elapsed) * 1000;
  }
}

/**
 * Paces bytes to `bytesPerSecond` across every caller (all parts in flight share it), allowing a
 * burst of `burstMs` worth of bytes.
 */
export class RateLimiter {
  private next = Number.NEGATIVE_INFINITY;
  private readonly bytesPerSecond: number;
  private readonly burstMs: number;
  private readonly now: () => number;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;

  constructor(
    bytesPerSecond: number,
    options: {
      burstMs?: number;
      now?: () => number;
      sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
    } = {},
  ) {
    if (!(bytesPerSecond > 0)) throw new RangeError('bytesPerSecond must be above 0');
    this.bytesPerSecond = bytesPerSecond;
    this.burstMs = options.burstMs ?? 100;
    this.now = options.now ?? (() => performance.now());
    this.sleep = options.sleep ?? defaultSleep;
  }

  /** Waits until `bytes` more may go. */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    const now = this.now();
    this.next = Math.max(this.next, now - this.burstMs) + (bytes / this.bytesPerSecond) * 1000;
    const wait = this.next - now;
    if (wait > 0) await this.sleep(wait, signal);
  }
}
