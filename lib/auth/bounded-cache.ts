/**
 * A value read from somewhere slower than memory (a key file, SSM, a DynamoDB item), kept for at most
 * `maxAgeMs`: what a warm container knows is never older than that, so a change made by an operator
 * (a rotated key, a revoked user) reaches it within that time, with no restart.
 *
 * Callers that arrive while a read is under way share it. A failed read is not kept: the next call
 * reads again (and the failure reaches the caller, who answers 503 for a dependency error).
 */
export class BoundedCache<T> {
  private value: Promise<T> | undefined;
  private readAt = 0;
  private refreshedAt = Number.NEGATIVE_INFINITY;
  private readonly read: () => Promise<T>;
  private readonly maxAgeMs: number;
  private readonly now: () => number;

  constructor(read: () => Promise<T>, maxAgeMs: number, now: () => number = Date.now) {
    this.read = read;
    this.maxAgeMs = maxAgeMs;
    this.now = now;
  }

  get(): Promise<T> {
    if (this.value && this.now() - this.readAt < this.maxAgeMs) return this.value;
    return this.reload();
  }

  /**
   * Reads again now, unless the last such forced read began less than `minIntervalMs` ago: for when the caller has
   * seen proof that what is kept is out of date (a token naming a key not known yet), which anyone
   * can send, so it must not turn every request into a read.
   */
  refresh(minIntervalMs: number): Promise<T> {
    const now = this.now();
    if (this.value && now - this.refreshedAt < minIntervalMs) return this.value;
    this.refreshedAt = now;
    return this.reload();
  }

  private reload(): Promise<T> {
    const value = this.read();
    this.value = value;
    this.readAt = this.now();
    value.catch(() => {
      if (this.value === value) this.value = undefined;
    });
    return value;
  }
}

/** One BoundedCache per key (a username), dropping them all past `maxEntries` so memory stays bounded. */
export class BoundedCacheMap<T> {
  private readonly entries = new Map<string, BoundedCache<T>>();
  private readonly read: (key: string) => Promise<T>;
  private readonly maxAgeMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(
    read: (key: string) => Promise<T>,
    maxAgeMs: number,
    options: { maxEntries?: number; now?: () => number } = {},
  ) {
    this.read = read;
    this.maxAgeMs = maxAgeMs;
    this.maxEntries = options.maxEntries ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  entry(key: string): BoundedCache<T> {
    let entry = this.entries.get(key);
    if (!entry) {
      if (this.entries.size >= this.maxEntries) this.entries.clear();
      entry = new BoundedCache(() => this.read(key), this.maxAgeMs, this.now);
      this.entries.set(key, entry);
    }
    return entry;
  }
}
