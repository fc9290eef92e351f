import type { SignedPart } from './types.ts';

export const MiB = 1024 * 1024;
/** S3's limits, which the service enforces too; checked here to fail before any request. */
export const MIN_PART_SIZE = 5 * MiB;
export const MAX_PART_SIZE = 5 * 1024 * MiB;
export const MAX_PARTS = 10_000;
/** `POST /upload/{jobId}/parts` signs up to 1,000 parts per call. */
export const MAX_PARTS_PER_SIGN = 1000;

export interface PartLayout {
  size: number;
  partSize: number;
  partCount: number;
}

/** Where part `partNumber` (1-based) lies in the file: every part is `partSize` bytes but the last. */
export function partRange(layout: PartLayout, partNumber: number): { offset: number; length: number } {
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > layout.partCount) {
    throw new RangeError(`part ${partNumber} is outside 1..${layout.partCount}`);
  }
  const offset = (partNumber - 1) * layout.partSize;
  return { offset, length: Math.min(layout.partSize, layout.size - offset) };
}

/** A problem with a requested part size, in words, or undefined when S3 would accept it for `size` bytes. */
export function partSizeProblem(size: number, partSize: number): string | undefined {
  if (!Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE || partSize > MAX_PART_SIZE) {
    return `the part size must be from 5 MiB to 5 GiB`;
  }
  if (Math.ceil(size / partSize) > MAX_PARTS) {
    return `${Math.ceil(size / partSize)} parts would be needed; S3 allows ${MAX_PARTS}: use parts of at least ${Math.ceil(size / MAX_PARTS / MiB)} MiB`;
  }
  return undefined;
}

/** `[1, 2, 3, 7]` -> `"1-3, 7"`. */
export function describeParts(numbers: readonly number[]): string {
  const ranges: string[] = [];
  const sorted = [...numbers].sort((a, b) => a - b);
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    ranges.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return ranges.join(', ');
}

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
  private readonly urls = new Map<number, { url: string; expiresAt: number; signedAt: number }>();
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
    this.batchSize = Math.min(options.batchSize ?? 500, MAX_PARTS_PER_SIGN);
    this.lookahead = options.lookahead ?? 16;
    this.refreshMarginMs = options.refreshMarginMs ?? 60_000;
    this.now = options.now ?? Date.now;
  }

  /** URLs already at hand (the first batch that `POST /upload` returns). */
  add(parts: readonly SignedPart[]): void {
    const signedAt = this.now();
    for (const part of parts) {
      this.urls.set(part.partNumber, { url: part.url, expiresAt: Date.parse(part.expiresAt), signedAt });
    }
  }

  /** Forgets a URL S3 refused (expired), so that the next `get` signs it again. */
  invalidate(partNumber: number): void {
    this.urls.delete(partNumber);
  }

  private fresh(partNumber: number): string | undefined {
    const entry = this.urls.get(partNumber);
    if (!entry) return undefined;
    // The margin never exceeds half a URL's lifetime, so short-lived URLs are still used.
    const margin = Math.min(this.refreshMarginMs, (entry.expiresAt - entry.signedAt) / 2);
    if (!(entry.expiresAt - this.now() > margin)) return undefined;
    return entry.url;
  }

  async get(partNumber: number): Promise<string> {
    for (let round = 0; round < 3; round++) {
      const url = this.fresh(partNumber);
      if (url) {
        this.prefetch(partNumber);
        return url;
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
