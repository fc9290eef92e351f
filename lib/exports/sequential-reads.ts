/** What a read answers: the range's bytes whole, or as they arrive (a response body). */
export type RangeBytes = Uint8Array | AsyncIterable<Uint8Array>;

/** A read of `start` to `end`, both inclusive (as an HTTP Range). */
export type ReadRange = (start: number, end: number) => Promise<RangeBytes>;

/** How often one read may open the source again after its body broke off mid-way. */
export const REOPENS_PER_READ = 2;

/**
 * Consecutive reads of a source served from one GET.
 *
 * The gzip export reads its source a step (its part size) at a time, in order. A ranged GET per step
 * costs S3 nothing, but an emulator such as moto copies the whole object for every range it serves:
 * eight 64 MiB ranges of a 512 MiB object took 3.3 s here against 0.95 s for one GET of it, on the
 * cores that compress (bench/README.md, exports). So the reads share one GET, opened where the first
 * one starts and running to the source's end, and each read takes the next bytes of its body in turn.
 * The body is pulled only while a read takes bytes, so TCP's flow control holds the rest at the
 * server: memory stays what the reads in flight hold, as with a GET per step. (One connection to S3
 * gives 85-90 MB/s, about what two cores compress; the reads in flight were never more than two.)
 *
 * A body that breaks off mid-way is opened again where it broke, up to REOPENS_PER_READ times per
 * read, with the same If-Match as the first (the opener's); the opening itself the SDK retries. A body
 * that ends early is not reopened: the read reports it (an HTTP body ends early only with an error).
 * close() lets the connection go, so that a worker handing off mid-source leaves no body half read.
 */
export class SequentialReads {
  private body: AsyncIterator<Uint8Array> | undefined;
  /** The open response, to destroy on close (a Node Readable) when it is one. */
  private response: RangeBytes | undefined;
  private position: number;
  private leftover: Uint8Array | undefined;
  private turn: Promise<void> = Promise.resolve();
  private failure: { error: unknown } | undefined;
  private closed = false;
  private readonly open: ReadRange;
  private readonly end: number;

  /** Reads of `from` up to `end` (exclusive), through `open`. */
  constructor(open: ReadRange, from: number, end: number) {
    this.open = open;
    this.position = from;
    this.end = end;
  }

  /** The bytes `start` to `end` (inclusive) as they arrive. Reads must be asked for in source order. */
  read: ReadRange = (start, end) => {
    const previous = this.turn;
    let finished!: () => void;
    this.turn = new Promise((resolve) => {
      finished = resolve;
    });
    return Promise.resolve(this.take(start, end + 1, previous, finished));
  };

  /** Lets go of the open body; reads after this fail. */
  close(): void {
    this.closed = true;
    this.leftover = undefined;
    this.dropBody();
  }

  private async *take(start: number, end: number, previous: Promise<void>, finished: () => void) {
    try {
      await previous;
      if (this.failure) throw this.failure.error;
      if (this.closed) throw new Error('the source reads are closed');
      if (start !== this.position) {
        throw new Error(`a read from byte ${start} asked for after the bytes up to ${this.position}`);
      }
      let reopens = 0;
      while (this.position < end) {
        if (this.closed) throw new Error('the source reads are closed');
        let chunk = this.leftover;
        this.leftover = undefined;
        if (!chunk) {
          this.body ??= this.openAt(await this.open(this.position, this.end - 1));
          let next: IteratorResult<Uint8Array>;
          try {
            next = await this.body.next();
          } catch (error) {
            this.dropBody();
            if (this.closed || ++reopens > REOPENS_PER_READ) throw error;
            continue;
          }
          if (next.done) {
            // The reader counts what it got and says so; the reads after it cannot start.
            this.failure = { error: new Error(`the source's body ended early, at byte ${this.position}`) };
            return;
          }
          chunk = next.value;
        }
        const wanted = end - this.position;
        if (chunk.length > wanted) {
          this.leftover = chunk.subarray(wanted);
          chunk = chunk.subarray(0, wanted);
        }
        this.position += chunk.length;
        yield chunk;
      }
    } catch (error) {
      this.failure ??= { error };
      throw error;
    } finally {
      finished();
    }
  }

  private openAt(response: RangeBytes): AsyncIterator<Uint8Array> {
    this.response = response;
    return (async function* () {
      if (response instanceof Uint8Array) yield response;
      else yield* response;
    })();
  }

  private dropBody() {
    const response = this.response as { destroy?: () => void } | undefined;
    if (typeof response?.destroy === 'function') response.destroy();
    else void this.body?.return?.(undefined).catch(() => {});
    this.body = undefined;
    this.response = undefined;
  }
}
