import { open } from 'node:fs/promises';
import { basename } from 'node:path';
import { FileJobsError } from './errors.ts';

/**
 * What an upload reads its bytes from. A random-access source (a file, a Blob, bytes in memory)
 * lets parts be read in any order and in parallel; a stream is read once, front to back, and its
 * size must be known up front (the service plans the parts from it).
 */
export interface RandomAccessSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Throws if the source changed since it was opened (a file written to during the upload). */
  verify?(): Promise<void>;
  close?(): Promise<void>;
}

export interface StreamSource {
  stream: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;
  size: number;
}

export type UploadSource = RandomAccessSource | StreamSource | Uint8Array | Blob;

/** Reads parts by byte range; `read` calls for a stream must come in ascending offset order. */
export interface PartReader {
  readonly size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
  verify(): Promise<void>;
  close(): Promise<void>;
}

const isStreamSource = (source: UploadSource): source is StreamSource =>
  typeof (source as StreamSource).stream === 'object' && typeof (source as StreamSource).size === 'number';

export function partReader(source: UploadSource): PartReader {
  if (source instanceof Uint8Array) return randomAccess(bytesSource(source));
  if (typeof Blob !== 'undefined' && source instanceof Blob) return randomAccess(blobSource(source));
  if (isStreamSource(source)) return new SequentialReader(source);
  return randomAccess(source as RandomAccessSource);
}

function randomAccess(source: RandomAccessSource): PartReader {
  return {
    size: source.size,
    read: (offset, length) => source.read(offset, length),
    verify: async () => {
      await source.verify?.();
    },
    close: async () => {
      await source.close?.();
    },
  };
}

export function bytesSource(bytes: Uint8Array): RandomAccessSource {
  return {
    size: bytes.byteLength,
    read: async (offset, length) => bytes.subarray(offset, offset + length),
  };
}

export function blobSource(blob: Blob): RandomAccessSource {
  return {
    size: blob.size,
    read: async (offset, length) => new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer()),
  };
}

/**
 * A file on disk (Node). `name` is its base name composed to NFC, the default name for the upload:
 * the service refuses decomposed names, and macOS may give a file's name decomposed ("e" followed
 * by a combining accent).
 */
export async function fileSource(
  path: string,
): Promise<RandomAccessSource & { name: string; close(): Promise<void> }> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES' || code === 'EPERM'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'it is a directory'
            : (error as Error).message;
    throw new FileJobsError('FileUnreadable', `cannot read ${path}: ${why}`, { cause: error });
  }
  const opened = await handle.stat();
  if (!opened.isFile()) {
    await handle.close();
    throw new FileJobsError('FileUnreadable', `cannot upload ${path}: not a regular file`);
  }
  return {
    name: basename(path).normalize('NFC'),
    size: opened.size,
    async read(offset, length) {
      const buffer = new Uint8Array(length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await handle.read(buffer, filled, length - filled, offset + filled);
        if (bytesRead === 0) {
          throw new FileJobsError('FileChanged', `${path} got shorter while it was being uploaded`);
        }
        filled += bytesRead;
      }
      return buffer;
    },
    async verify() {
      const now = await handle.stat();
      if (now.size !== opened.size || now.mtimeMs !== opened.mtimeMs) {
        throw new FileJobsError(
          'FileChanged',
          `${path} changed while it was being uploaded; upload it again`,
        );
      }
    },
    close: () => handle.close(),
  };
}

/**
 * A stream read front to back: each `read` first skips up to its offset (parts already on the
 * server, when resuming), then collects exactly `length` bytes. Reads queue up, so callers may call
 * concurrently as long as they call in ascending order.
 */
class SequentialReader implements PartReader {
  readonly size: number;
  private readonly iterator: AsyncIterator<Uint8Array>;
  private position = 0;
  private leftover: Uint8Array | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(source: StreamSource) {
    this.size = source.size;
    this.iterator = (source.stream as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    const result = this.queue.then(() => this.readNow(offset, length));
    this.queue = result.catch(() => {});
    return result;
  }

  private async chunk(): Promise<Uint8Array | undefined> {
    if (this.leftover) {
      const chunk = this.leftover;
      this.leftover = undefined;
      return chunk;
    }
    const next = await this.iterator.next();
    return next.done ? undefined : next.value;
  }

  private async readNow(offset: number, length: number): Promise<Uint8Array> {
    if (offset < this.position) {
      throw new FileJobsError(
        'StreamOrder',
        `a stream cannot go back to byte ${offset} (it is at ${this.position})`,
      );
    }
    // Skip what is not needed (parts the server already holds).
    while (this.position < offset) {
      const chunk = await this.chunk();
      if (!chunk) throw this.tooShort();
      const skip = Math.min(chunk.byteLength, offset - this.position);
      this.position += skip;
      if (skip < chunk.byteLength) this.leftover = chunk.subarray(skip);
    }
    const out = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      const chunk = await this.chunk();
      if (!chunk) throw this.tooShort();
      const take = Math.min(chunk.byteLength, length - filled);
      out.set(chunk.subarray(0, take), filled);
      filled += take;
      if (take < chunk.byteLength) this.leftover = chunk.subarray(take);
    }
    this.position += length;
    return out;
  }

  private tooShort() {
    return new FileJobsError(
      'StreamSize',
      `the stream ended after ${this.position} bytes; ${this.size} were announced`,
    );
  }

  async verify(): Promise<void> {
    await this.queue;
    while (this.position < this.size) {
      const chunk = await this.chunk();
      if (!chunk) throw this.tooShort();
      this.position += chunk.byteLength;
    }
    const extra = this.position > this.size ? new Uint8Array(1) : await this.chunk();
    if (extra && extra.byteLength > 0) {
      throw new FileJobsError('StreamSize', `the stream holds more than the ${this.size} bytes announced`);
    }
  }

  async close(): Promise<void> {
    await this.iterator.return?.();
  }
}
