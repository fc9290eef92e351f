/**
 * A bounded window of output parts in flight, and the checkpoint they allow.
 *
 * The export worker writes parts with several S3 calls at once (raw: UploadPartCopy inside S3;
 * gzip: UploadPart of compressed members), so parts finish out of order. A restart must resume
 * exactly, and it can only trust a prefix: the checkpoint is the end of the lowest contiguous run of
 * finished parts. A part above it that finished early is simply written again by the next worker
 * (S3 keeps the last upload of a part number), which is why part boundaries must depend only on the
 * checkpoint they start from.
 *
 * After the first failure no part starts; `drain` waits for the parts in flight to settle before it
 * rethrows, so nothing of this worker writes to S3 after it has given the job up.
 */

export interface Checkpoint {
  /** The source offset the next worker starts reading at. */
  offset: number;
  /** The output part number it writes first. */
  partNumber: number;
}

export class PartWindow {
  private readonly width: number;
  private readonly inFlight = new Set<Promise<void>>();
  /** Finished parts above the checkpoint, by part number: the source offset each one ends at. */
  private readonly finishedAbove = new Map<number, { end: number; sourceBytes: number }>();
  private failure: { error: unknown } | undefined;
  private serial: Promise<void> = Promise.resolve();
  private contiguous: Checkpoint;
  private readonly report: () => Promise<void>;

  /**
   * `report` (the worker's heartbeat: progress, checkpoint, lease, and the kill check) runs after
   * every finished part and on `tick`, one at a time; an error it throws fails the window like a
   * failed part.
   */
  constructor(width: number, start: Checkpoint, report: () => Promise<void>) {
    if (!Number.isInteger(width) || width < 1) throw new RangeError('the window needs a width of 1 or more');
    this.width = width;
    this.contiguous = { ...start };
    this.report = report;
  }

  /** The end of the lowest contiguous run of finished parts: where a restart resumes. */
  get checkpoint(): Checkpoint {
    return { ...this.contiguous };
  }

  /** Source bytes written: those below the checkpoint and those of the parts finished above it. */
  get bytesDone(): number {
    let bytes = this.contiguous.offset;
    for (const part of this.finishedAbove.values()) bytes += part.sourceBytes;
    return bytes;
  }

  get failed(): boolean {
    return this.failure !== undefined;
  }

  /**
   * Starts `write` for the part that covers source bytes up to `end` (exclusive), once a place in
   * the window is free. Parts must be started in part-number order. Throws the window's failure
   * instead of starting when a part already failed.
   */
  async start(partNumber: number, end: number, sourceBytes: number, write: () => Promise<unknown>) {
    while (this.inFlight.size >= this.width && !this.failure) await Promise.race(this.inFlight);
    if (this.failure) return this.drain();
    const part = write()
      .then(async () => {
        this.finished(partNumber, end, sourceBytes);
        await this.tick();
      })
      .catch((error: unknown) => {
        this.failure ??= { error };
      })
      .finally(() => {
        this.inFlight.delete(part);
      });
    this.inFlight.add(part);
  }

  /**
   * Reports progress now, after any report already under way (one at a time, each with the progress
   * known when it runs). The gzip worker ticks for every slice, also while a part is still filling.
   */
  tick(): Promise<void> {
    this.serial = this.serial.then(() => this.report());
    return this.serial;
  }

  /** Waits for every part in flight; rethrows the first failure. */
  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
    // The last heartbeat may still be running after its part left the window.
    await this.serial.catch(() => {});
    if (this.failure) throw this.failure.error;
  }

  private finished(partNumber: number, end: number, sourceBytes: number) {
    this.finishedAbove.set(partNumber, { end, sourceBytes });
    for (let next = this.finishedAbove.get(this.contiguous.partNumber); next; ) {
      this.finishedAbove.delete(this.contiguous.partNumber);
      this.contiguous = { offset: next.end, partNumber: this.contiguous.partNumber + 1 };
      next = this.finishedAbove.get(this.contiguous.partNumber);
    }
  }
}
