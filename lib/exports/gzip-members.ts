import { promisify } from 'node:util';
import { deflateRaw as deflateRawCallback, gzip as gzipCallback, type ZlibOptions } from 'node:zlib';
import { MiB } from '../../common/part-plan.ts';
import { type RangeBytes, type ReadRange, SequentialReads } from './sequential-reads.ts';

const gzipAsync = promisify(gzipCallback);
const deflateRawAsync = promisify(deflateRawCallback);

/**
 * zlib's async calls hand their output back to the main thread one chunk at a time, and the
 * compressing thread waits for it before it goes on. With the default 16 KiB chunks that is a round
 * trip per 16 KiB: two threads compressing 256 MiB of random data reached 46-58 MB/s on two cores;
 * with 1 MiB chunks, 73-80 MB/s, what `pigz -6 -p 2` does (AMD EPYC × 2; bench/README.md, exports).
 */
const GZIP_OPTIONS: ZlibOptions = { level: 6, chunkSize: 1 * MiB };

/** gzip at the worker's settings: level 6 (gzip's default), large output chunks (see above). */
export const gzip = (bytes: Uint8Array): Promise<Buffer> => gzipAsync(bytes, GZIP_OPTIONS);

/**
 * Most large files are compressed already (video, images, archives), and deflate cannot shrink them:
 * level 6 spends as long on such a slice as on text (about 20 ms per MiB per core) to write it
 * 0.03% larger. So a slice is sampled first: PROBES windows of PROBE_BYTES spread over it, deflated
 * together at level 1 (a few ms per 8 MiB slice). If they do not shrink by STORE_BELOW_SAVING, the
 * slice is written in deflate's stored blocks (level 0: a copy and its CRC, at memory speed), about
 * as large as level 6 would have made it. The choice depends on the slice's bytes alone, so a
 * restarted worker still writes the same members. A slice that is mixed (incompressible where the
 * windows fall, compressible between them) is stored too: a cost in size only, never in
 * correctness, and rare in one 8 MiB slice.
 */
const PROBES = 4;
const PROBE_BYTES = 64 * 1024;
const STORE_BELOW_SAVING = 0.01;
/** Below this a slice is compressed whatever it holds: sampling would cost more than it saves. */
const MIN_SAMPLED_SLICE = 4 * PROBES * PROBE_BYTES;

/** Whether deflate would leave `bytes` about as large as they are (see above). */
export async function incompressible(bytes: Uint8Array): Promise<boolean> {
  if (bytes.length < MIN_SAMPLED_SLICE) return false;
  const stride = Math.floor((bytes.length - PROBE_BYTES) / (PROBES - 1));
  const sample = Buffer.allocUnsafe(PROBES * PROBE_BYTES);
  for (let probe = 0; probe < PROBES; probe++) {
    sample.set(bytes.subarray(probe * stride, probe * stride + PROBE_BYTES), probe * PROBE_BYTES);
  }
  const deflated = await deflateRawAsync(sample, { level: 1 });
  return deflated.length > sample.length * (1 - STORE_BELOW_SAVING);
}

/** A slice as one gzip member: level 6, or stored when it is incompressible (see above). */
export async function gzipSlice(bytes: Uint8Array): Promise<Buffer> {
  return (await incompressible(bytes)) ? gzipAsync(bytes, { ...GZIP_OPTIONS, level: 0 }) : gzip(bytes);
}

/**
 * The largest slice compressed as one member. Smaller slices keep every thread busy (no thread waits
 * at the end of a part for the last big slice, none waits for the first download) and keep memory
 * small; each member costs 18 bytes of header and a fresh dictionary, nothing measurable at 8 MiB.
 */
export const GZIP_SLICE_TARGET = 8 * MiB;

/**
 * Steps read ahead of the one being cut: its bytes arrive while the step before it compresses. (Two
 * ahead made no difference on this project's two-core machine, 22.8 and 23.7 s for 512 MiB in-process,
 * where moto is CPU-bound, and cost a step of memory. The steps share one connection, and AWS gives
 * one connection 85-90 MB/s, about what two of these threads compress: a function with many more
 * cores would want its reads spread over several.)
 */
export const STEPS_AHEAD = 1;

export interface Member {
  /** Source offset the member starts at, and the one after its last byte. */
  start: number;
  end: number;
  /** Whether `end` is a step boundary (or the source's end): a part may end here, a restart begin. */
  stepEnd: boolean;
  bytes: Buffer;
}

/**
 * One step's bytes, copied into one buffer as they arrive, so that each slice can be compressed as
 * soon as its own bytes are here instead of after the whole step. A read that ends early, runs over
 * or fails fails every slice still waiting for its bytes.
 */
class StepBytes {
  private readonly bytes: Buffer;
  private received = 0;
  private failure: { error: unknown } | undefined;
  private readonly waiting = new Set<{ end: number; settle: () => void }>();

  constructor(length: number, read: Promise<RangeBytes>) {
    this.bytes = Buffer.allocUnsafe(length);
    void this.fill(read);
  }

  /** Bytes `start` to `end` (exclusive) of the step, once they are here. */
  range(start: number, end: number): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      const waiter = {
        end,
        settle: () => {
          if (this.failure) reject(this.failure.error);
          else if (this.received >= end) resolve(this.bytes.subarray(start, end));
          else return;
          this.waiting.delete(waiter);
        },
      };
      this.waiting.add(waiter);
      waiter.settle();
    });
  }

  private async fill(read: Promise<RangeBytes>) {
    try {
      const body = await read;
      for await (const chunk of body instanceof Uint8Array ? [body] : body) {
        if (this.received + chunk.length > this.bytes.length) {
          throw new Error(`the source read gave more than the ${this.bytes.length} bytes asked for`);
        }
        this.bytes.set(chunk, this.received);
        this.received += chunk.length;
        for (const waiter of this.waiting) if (waiter.end <= this.received) waiter.settle();
      }
      if (this.received < this.bytes.length) {
        throw new Error(`the source read ended after ${this.received} of ${this.bytes.length} bytes`);
      }
    } catch (error) {
      this.failure = { error };
      for (const waiter of this.waiting) waiter.settle();
    }
  }
}

/**
 * The source from `from` to `size`, in steps of `stepSize` bytes (the export's part size: where parts
 * may end and restarts begin), each cut into equal slices of at most GZIP_SLICE_TARGET, each slice
 * compressed as its own gzip member, handed out in source order.
 *
 * The steps are read in order from one GET of the source from `from` on (SequentialReads); each
 * step's bytes are copied into its buffer as they arrive, and a slice compresses as soon as its own
 * bytes are there, so the first part does not wait for a whole step to download. The next STEPS_AHEAD
 * steps start taking bytes as soon as the first slice of a step is taken, so that no thread waits for
 * bytes; the body is not pulled beyond them.
 * `threads` slices compress at once (zlib's async calls run in libuv's thread pool, one core each),
 * and at most threads + 2 slices are in flight (waiting, compressing, or compressed and not yet
 * taken): memory stays below the steps those slices fall in, the STEPS_AHEAD steps after them, and
 * their members (with 64 MiB steps, 8 MiB slices and 2 threads: three steps and four members).
 * zlib collects a member's chunks before joining them, so a member may briefly be there twice.
 *
 * Members depend only on their slice, and slices only on the step they are in, so a worker that
 * resumes at any step boundary produces the same bytes as one that never stopped.
 */
export async function* gzipMembers(
  read: ReadRange,
  range: {
    from: number;
    size: number;
    stepSize: number;
    threads: number;
    /** For tests: the slice size aimed at, and the compressor. */
    sliceTarget?: number;
    compress?: (bytes: Uint8Array) => Promise<Buffer>;
  },
): AsyncGenerator<Member> {
  const { from, size, stepSize, threads, sliceTarget = GZIP_SLICE_TARGET, compress = gzipSlice } = range;
  const slicesPerStep = Math.ceil(stepSize / sliceTarget);
  const sliceSize = Math.ceil(stepSize / slicesPerStep);
  const depth = threads + 2;
  // The step being cut into slices and the STEPS_AHEAD after it.
  const steps = new Map<number, StepBytes>();
  const source = new SequentialReads(read, from, size);
  const readStep = (start: number) => {
    if (start >= size || steps.has(start)) return;
    const end = Math.min(start + stepSize, size);
    steps.set(start, new StepBytes(end - start, source.read(start, end - 1)));
  };
  const ahead: Promise<Member>[] = [];
  // The last `threads` compressions started, oldest first: a slice compresses once its bytes are
  // here and the compression `threads` places before it has ended, so at most `threads` run at once,
  // in source order.
  const compressions: Promise<unknown>[] = [];
  let stepStart = from;
  let next = from;
  const fill = () => {
    while (ahead.length < depth && next < size) {
      const start = next;
      const step = stepStart;
      const stepEnd = Math.min(step + stepSize, size);
      const end = Math.min(start + sliceSize, stepEnd);
      next = end;
      if (start === step) {
        readStep(step);
        for (let k = 1; k <= STEPS_AHEAD; k++) readStep(step + k * stepSize);
      }
      const stepBytes = steps.get(step)!;
      if (end === stepEnd) {
        // The step's slices hold on to its bytes from here; the map lets go of them.
        steps.delete(step);
        stepStart = stepEnd;
      }
      const turn = compressions.length === threads ? compressions.shift() : undefined;
      const bytes = Promise.all([stepBytes.range(start - step, end - step), turn]).then(([slice]) =>
        compress(slice),
      );
      compressions.push(bytes.catch(() => {}));
      const member = bytes.then((compressed) => ({
        start,
        end,
        stepEnd: end === stepEnd,
        bytes: compressed,
      }));
      // Awaited in order below; one that fails while an earlier one is awaited must not go unhandled.
      member.catch(() => {});
      ahead.push(member);
    }
  };
  try {
    fill();
    while (ahead.length > 0) {
      const member = await ahead.shift()!;
      fill();
      yield member;
    }
  } finally {
    source.close();
  }
}
