import { promisify } from 'node:util';
import { gzip as gzipCallback } from 'node:zlib';

const gzip = promisify(gzipCallback);

export interface Member {
  /** Source offset the member starts at, and the one after its last byte. */
  start: number;
  end: number;
  bytes: Buffer;
}

/**
 * The source from `from` to `size`, in slices of `sliceSize` bytes, each compressed as its own gzip
 * member, handed out in source order. Up to `depth` slices are read and compressed at once: zlib's
 * async calls run in libuv's thread pool, so members compress on as many cores as the function has
 * while the next slices download. Memory stays below `depth` slices and their members.
 *
 * Members depend only on their slice, so a worker that resumes at any slice boundary produces the
 * same bytes as one that never stopped.
 */
export async function* gzipMembers(
  read: (start: number, end: number) => Promise<Uint8Array>,
  range: { from: number; size: number; sliceSize: number; depth: number },
): AsyncGenerator<Member> {
  const { from, size, sliceSize, depth } = range;
  const ahead: Promise<Member>[] = [];
  let next = from;
  const fill = () => {
    while (ahead.length < depth && next < size) {
      const start = next;
      const end = Math.min(start + sliceSize, size);
      next = end;
      const member = read(start, end - 1).then(async (slice) => ({ start, end, bytes: await gzip(slice) }));
      // Awaited in order below; one that fails while an earlier one is awaited must not go unhandled.
      member.catch(() => {});
      ahead.push(member);
    }
  };
  fill();
  while (ahead.length > 0) {
    const member = await ahead.shift()!;
    fill();
    yield member;
  }
}
