import { MAX_PARTS_PER_REQUEST } from '../common/part-plan.ts';
import type { PartToSign, SignedPart } from './types.ts';

export interface PartUrlPoolOptions {
  /** Parts per signing request (at most 1,000). */
  batchSize?: number;
  /** Start signing the next batch this many parts before the signed ones run out. */
  lookahead?: number;
  /** A URL closer than this to its expiry is signed again before use. */
  refreshMarginMs?: number;
  now?: () => number;
}

/**
 * Presigned part URLs, signed in batches in the order the parts will be sent, ahead of need so that
 * signing stays off the PUTs' critical path; a URL about to expire (or refused as expired) is
 * re-signed. Concurrent requests for one part share one signing call.
 */
export class PartUrlPool {
  private readonly urls = new Map<number, SignedEntry>();
  private readonly pending = new Map<number, Promise<void>>();
  private readonly position: Map<number, number>;
  private readonly order: readonly number[];
  private readonly sign: (partNumbers: number[]) => Promise<SignedPart[]>;
  private readonly batchSize: number;
  private readonly lookahead: number;
  private readonly refreshMarginMs: number;
  private readonly now: () => number;
  /** Signing requests made. */
  signCalls = 0;

  constructor(
    order: readonly number[],
    sign: (partNumbers: number[]) => Promise<SignedPart[]>,
    options: PartUrlPoolOptions = {},
  ) {
    this.order = order;
    this.position = new Map(order.map((partNumber, index) => [partNumber, index]));
    this.sign = sign;
    this.batchSize = Math.min(options.batchSize ?? 500, MAX_PARTS_PER_REQUEST);
    this.lookahead = options.lookahead ?? 16;
    this.refreshMarginMs = options.refreshMarginMs ?? 60_000;
    this.now = options.now ?? Date.now;
  }

  /** URLs already at hand (the first batch that `POST /upload` returns). */
  add(parts: readonly SignedPart[]): void {
    const signedAt = this.now();
    for (const part of parts) this.urls.set(part.partNumber, signedEntry(part, signedAt));
  }

  /** Forgets a URL S3 refused (expired), so that the next `get` signs it again. */
  invalidate(partNumber: number): void {
    this.urls.delete(partNumber);
  }

  private fresh(partNumber: number): SignedPart | undefined {
    return freshPart(this.urls.get(partNumber), this.refreshMarginMs, this.now());
  }

  async get(partNumber: number): Promise<string> {
    return (await this.signed(partNumber)).url;
  }

  /** The part's URL and the headers its PUT must send. */
  async signed(partNumber: number): Promise<SignedPart> {
    for (let round = 0; round < 3; round++) {
      const part = this.fresh(partNumber);
      if (part) {
        this.prefetch(partNumber);
        return part;
      }
      await (this.pending.get(partNumber) ?? this.signFrom(partNumber));
    }
    throw new Error(`the service did not sign part ${partNumber}`);
  }

  /** Signs, in one request, `first` and the parts after it in sending order that lack a fresh URL. */
  private signFrom(first: number): Promise<void> {
    const batch = [first];
    const start = (this.position.get(first) ?? this.order.length) + 1;
    for (let i = start; i < this.order.length && batch.length < this.batchSize; i++) {
      const partNumber = this.order[i]!;
      if (!this.fresh(partNumber) && !this.pending.has(partNumber)) batch.push(partNumber);
    }
    this.signCalls++;
    const settled = this.sign(batch)
      .then((parts) => this.add(parts))
      .finally(() => {
        for (const partNumber of batch) this.pending.delete(partNumber);
      });
    for (const partNumber of batch) this.pending.set(partNumber, settled);
    return settled;
  }

  /** Starts signing the next batch in the background when the signed parts ahead run short. */
  private prefetch(partNumber: number): void {
    const index = this.position.get(partNumber);
    if (index === undefined) return;
    const ahead = this.order[Math.min(index + this.lookahead, this.order.length - 1)]!;
    if (this.fresh(ahead) || this.pending.has(ahead)) return;
    // A failure here is not lost: the part's own `get` signs it again and reports the error.
    this.signFrom(ahead).catch(() => {});
  }
}

interface SignedEntry {
  part: SignedPart;
  expiresAt: number;
  signedAt: number;
}

const signedEntry = (part: SignedPart, signedAt: number): SignedEntry => ({
  part,
  expiresAt: Date.parse(part.expiresAt),
  signedAt,
});

function freshPart(entry: SignedEntry | undefined, refreshMarginMs: number, now: number) {
  if (!entry) return undefined;
  // The margin never exceeds half a URL's lifetime, so short-lived URLs are still used.
  const margin = Math.min(refreshMarginMs, (entry.expiresAt - entry.signedAt) / 2);
  if (!(entry.expiresAt - now > margin)) return undefined;
  return entry.part;
}

export interface ChecksummedUrlPoolOptions {
  /**
   * Parts gathered before a signing request goes out while no PUT waits for a URL. A PUT that waits
   * sends everything gathered at once, however few.
   */
  minBatch?: number;
  /** A URL closer than this to its expiry is signed again before use. */
  refreshMarginMs?: number;
  now?: () => number;
}

/**
 * Part URLs of an upload with a checksum algorithm. A URL signs its part's checksum, so it can be
 * asked for only once the part has been read: `ready` hands in each part's checksum as the bytes are
 * read (ahead of the PUTs, within the upload's read-ahead window), and parts are signed in batches
 * of what has been read meanwhile, one request at a time, so that a batch grows while the previous
 * one is out. An expired or refused URL is signed again with the same checksum.
 */
export class ChecksummedUrlPool {
  private readonly sign: (parts: PartToSign[]) => Promise<SignedPart[]>;
  private readonly minBatch: number;
  private readonly refreshMarginMs: number;
  private readonly now: () => number;
  private readonly checksums = new Map<number, string>();
  private readonly urls = new Map<number, SignedEntry>();
  /** Read, not signed, not being signed: the next batch. */
  private queue: number[] = [];
  private readonly waiting = new Map<number, { resolve: () => void; reject: (error: unknown) => void }[]>();
  private signing: Promise<void> | undefined;
  /** The parts of the batch being signed. */
  private inFlight = new Set<number>();
  /** Signing requests made. */
  signCalls = 0;

  constructor(sign: (parts: PartToSign[]) => Promise<SignedPart[]>, options: ChecksummedUrlPoolOptions = {}) {
    this.sign = sign;
    this.minBatch = Math.max(1, Math.min(options.minBatch ?? 4, MAX_PARTS_PER_REQUEST));
    this.refreshMarginMs = options.refreshMarginMs ?? 60_000;
    this.now = options.now ?? Date.now;
  }

  /** Part `partNumber` was read and has this checksum: it will need a URL. */
  ready(partNumber: number, checksum: string): void {
    this.checksums.set(partNumber, checksum);
    this.urls.delete(partNumber);
    if (!this.queue.includes(partNumber)) this.queue.push(partNumber);
    this.kick();
  }

  /** Forgets a URL S3 refused (expired), so that the next `signed` signs it again. */
  invalidate(partNumber: number): void {
    this.urls.delete(partNumber);
  }

  /** The part is in S3: its URL and checksum are no longer needed. */
  forget(partNumber: number): void {
    this.urls.delete(partNumber);
    this.checksums.delete(partNumber);
  }

  async signed(partNumber: number): Promise<SignedPart> {
    for (let round = 0; round < 3; round++) {
      const part = freshPart(this.urls.get(partNumber), this.refreshMarginMs, this.now());
      if (part) return part;
      if (!this.checksums.has(partNumber)) throw new Error(`part ${partNumber} has no checksum to sign`);
      const inBatch = this.signing !== undefined && this.inFlight.has(partNumber);
      if (!inBatch && !this.queue.includes(partNumber)) this.queue.push(partNumber);
      await new Promise<void>((resolve, reject) => {
        const list = this.waiting.get(partNumber) ?? [];
        list.push({ resolve, reject });
        this.waiting.set(partNumber, list);
        this.kick();
      });
    }
    throw new Error(`the service did not sign part ${partNumber}`);
  }

  /** Sends the next batch when none is out and either a PUT waits or enough parts were read. */
  private kick(): void {
    if (this.signing || this.queue.length === 0) return;
    const someoneWaits = this.queue.some((partNumber) => this.waiting.has(partNumber));
    if (!someoneWaits && this.queue.length < this.minBatch) return;
    const batch = this.queue.splice(0, MAX_PARTS_PER_REQUEST);
    this.inFlight = new Set(batch);
    this.signCalls++;
    const request = batch.map((partNumber) => ({ partNumber, checksum: this.checksums.get(partNumber)! }));
    const settle = (error?: unknown) => {
      for (const partNumber of batch) {
        const waiters = this.waiting.get(partNumber);
        this.waiting.delete(partNumber);
        for (const waiter of waiters ?? []) {
          if (error === undefined) waiter.resolve();
          else waiter.reject(error);
        }
      }
    };
    this.signing = this.sign(request)
      .then(
        (parts) => {
          const signedAt = this.now();
          const sent = new Map(request.map((part) => [part.partNumber, part.checksum]));
          for (const part of parts) {
            // A part read again meanwhile (sent again after PartsIncomplete) waits for its new checksum's URL.
            if (this.checksums.get(part.partNumber) === sent.get(part.partNumber))
              this.urls.set(part.partNumber, signedEntry(part, signedAt));
          }
          settle();
        },
        // A part nobody waits for yet is signed again when its PUT asks (and then reports the error).
        (error: unknown) => settle(error),
      )
      .finally(() => {
        this.signing = undefined;
        this.inFlight = new Set();
        this.kick();
      });
  }
}
