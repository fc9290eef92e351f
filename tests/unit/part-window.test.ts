import { gunzipSync } from 'node:zlib';
import { gzipMembers } from '../../lib/exports/gzip-members.ts';
import { PartWindow } from '../../lib/exports/part-window.ts';

const deferred = () => {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
};
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('PartWindow', () => {
  it('keeps at most `width` parts in flight', async () => {
    const window = new PartWindow(2, { offset: 0, partNumber: 1 }, async () => {});
    const parts = [deferred(), deferred(), deferred()];
    await window.start(1, 10, 10, () => parts[0]!.promise);
    await window.start(2, 20, 10, () => parts[1]!.promise);
    let thirdStarted = false;
    const third = window.start(3, 30, 10, async () => {
      thirdStarted = true;
      await parts[2]!.promise;
    });
    await settle();
    expect(thirdStarted).toBe(false);
    parts[1]!.resolve();
    await third;
    expect(thirdStarted).toBe(true);
    parts[0]!.resolve();
    parts[2]!.resolve();
    await window.drain();
    expect(window.checkpoint).toEqual({ offset: 30, partNumber: 4 });
  });

  it('moves the checkpoint only over a contiguous run of finished parts', async () => {
    const reports: Array<{ checkpoint: unknown; bytes: number }> = [];
    const window: PartWindow = new PartWindow(4, { offset: 100, partNumber: 5 }, async () => {
      reports.push({ checkpoint: window.checkpoint, bytes: window.bytesDone });
    });
    const parts = [deferred(), deferred(), deferred()];
    for (const [index, part] of parts.entries()) {
      await window.start(5 + index, 100 + 10 * (index + 1), 10, () => part.promise);
    }
    parts[2]!.resolve();
    parts[1]!.resolve();
    await settle();
    expect(window.checkpoint).toEqual({ offset: 100, partNumber: 5 });
    expect(window.bytesDone).toBe(120);
    parts[0]!.resolve();
    await window.drain();
    expect(window.checkpoint).toEqual({ offset: 130, partNumber: 8 });
    expect(reports.at(-1)).toEqual({ checkpoint: { offset: 130, partNumber: 8 }, bytes: 130 });
    expect(reports).toHaveLength(3);
  });

  it('after a failure starts nothing and rethrows once every part in flight settled', async () => {
    const window = new PartWindow(3, { offset: 0, partNumber: 1 }, async () => {});
    const slow = deferred();
    let slowSettled = false;
    await window.start(1, 10, 10, () => slow.promise.finally(() => (slowSettled = true)));
    await window.start(2, 20, 10, async () => {
      throw new Error('part 2 failed');
    });
    await settle();
    expect(window.failed).toBe(true);
    let thirdStarted = false;
    const third = window.start(3, 30, 10, async () => {
      thirdStarted = true;
    });
    await settle();
    slow.resolve();
    await expect(third).rejects.toThrow('part 2 failed');
    expect(thirdStarted).toBe(false);
    expect(slowSettled).toBe(true);
    expect(window.checkpoint).toEqual({ offset: 10, partNumber: 2 });
  });

  it('fails like a failed part when a report fails (the kill check)', async () => {
    const window = new PartWindow(2, { offset: 0, partNumber: 1 }, async () => {
      throw new Error('cancelled');
    });
    await window.start(1, 10, 10, async () => {});
    await expect(window.drain()).rejects.toThrow('cancelled');
  });
});

describe('gzipMembers', () => {
  const source = Buffer.from(Array.from({ length: 1000 }, (_, i) => `line ${i}\n`).join(''));
  const read = async (start: number, end: number) => source.subarray(start, end + 1);

  it('hands out one member per slice, in order, however the compressions finish', async () => {
    const members = [];
    for await (const member of gzipMembers(read, {
      from: 0,
      size: source.length,
      sliceSize: 1000,
      depth: 3,
    })) {
      members.push(member);
    }
    expect(members.map((member) => [member.start, member.end])).toEqual(
      Array.from({ length: Math.ceil(source.length / 1000) }, (_, i) => [
        i * 1000,
        Math.min((i + 1) * 1000, source.length),
      ]),
    );
    expect(gunzipSync(Buffer.concat(members.map((member) => member.bytes)))).toEqual(source);
  });

  it('reads at most `depth` slices ahead of the consumer', async () => {
    let reads = 0;
    const counting = async (start: number, end: number) => {
      reads++;
      return read(start, end);
    };
    const members = gzipMembers(counting, { from: 2000, size: source.length, sliceSize: 500, depth: 2 });
    const first = await members.next();
    expect(first.value?.start).toBe(2000);
    await settle();
    expect(reads).toBeLessThanOrEqual(3);
    await members.return(undefined);
  });
});
