import { gunzipSync, gzipSync } from 'node:zlib';
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

  const collect = async (
    members: AsyncIterable<{ start: number; end: number; stepEnd: boolean; bytes: Buffer }>,
  ) => {
    const all = [];
    for await (const member of members) all.push(member);
    return all;
  };

  it('cuts each step into equal slices, one member each, in order; a step end is marked', async () => {
    const members = await collect(
      gzipMembers(read, { from: 0, size: source.length, stepSize: 1000, threads: 2, sliceTarget: 300 }),
    );
    // 1000-byte steps in 4 slices of 250; the source's last step is shorter.
    const expected = [];
    for (let step = 0; step < source.length; step += 1000) {
      const stepEnd = Math.min(step + 1000, source.length);
      for (let start = step; start < stepEnd; start += 250) {
        const end = Math.min(start + 250, stepEnd);
        expected.push([start, end, end === stepEnd]);
      }
    }
    expect(members.map((member) => [member.start, member.end, member.stepEnd])).toEqual(expected);
    expect(gunzipSync(Buffer.concat(members.map((member) => member.bytes)))).toEqual(source);
  });

  it('gives from a step boundary the same members as a run that never stopped there', async () => {
    const range = { size: source.length, stepSize: 1000, threads: 2, sliceTarget: 300 };
    const whole = await collect(gzipMembers(read, { ...range, from: 0 }));
    const resumed = await collect(gzipMembers(read, { ...range, from: 3000 }));
    expect(resumed).toEqual(whole.filter((member) => member.start >= 3000));
  });

  it('compresses at most `threads` slices at once, whatever order they finish in', async () => {
    let running = 0;
    let most = 0;
    let calls = 0;
    const compress = async (bytes: Uint8Array) => {
      running++;
      most = Math.max(most, running);
      // Later slices of each three finish first: order must come from the generator, not the compressor.
      await new Promise((resolve) => setTimeout(resolve, 15 - (calls++ % 3) * 5));
      running--;
      return gzipSync(bytes);
    };
    const members = await collect(
      gzipMembers(read, {
        from: 0,
        size: source.length,
        stepSize: 1000,
        threads: 3,
        sliceTarget: 100,
        compress,
      }),
    );
    expect(most).toBe(3);
    expect(gunzipSync(Buffer.concat(members.map((member) => member.bytes)))).toEqual(source);
  });

  it('reads each step with one read, the next step ahead, and no further', async () => {
    const reads: Array<[number, number]> = [];
    const counting = async (start: number, end: number) => {
      reads.push([start, end]);
      return read(start, end);
    };
    // 1000-byte steps of 4 slices, 1 thread: 3 slices in flight, all in the first step.
    const members = gzipMembers(counting, {
      from: 2000,
      size: source.length,
      stepSize: 1000,
      threads: 1,
      sliceTarget: 250,
    });
    expect((await members.next()).value?.start).toBe(2000);
    await settle();
    expect(reads).toEqual([
      [2000, 2999],
      [3000, 3999],
    ]);
    // The first slice of the next step is taken: the one after it is read.
    for (let i = 0; i < 3; i++) await members.next();
    await settle();
    expect(reads.at(-1)).toEqual([4000, 4999]);
    expect(reads).toHaveLength(3);
    await members.return(undefined);
  });

  it('with one slice per step, reads the steps of threads + 2 slices in flight and one more', async () => {
    let reads = 0;
    const counting = async (start: number, end: number) => {
      reads++;
      return read(start, end);
    };
    const members = gzipMembers(counting, { from: 2000, size: source.length, stepSize: 500, threads: 2 });
    expect((await members.next()).value?.start).toBe(2000);
    await settle();
    // The first taken, four in flight (2500 to 4000), and 4500 read ahead.
    expect(reads).toBe(6);
    await members.return(undefined);
  });

  it('compresses a slice as soon as its bytes arrive, before the rest of its step', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    // The first step's body: its first 250 bytes, then nothing until the gate opens.
    const streaming = async (start: number, end: number) =>
      (async function* () {
        yield source.subarray(start, start + 250);
        if (start === 0) await gate;
        yield source.subarray(start + 250, end + 1);
      })();
    const members = gzipMembers(streaming, {
      from: 0,
      size: source.length,
      stepSize: 1000,
      threads: 2,
      sliceTarget: 250,
    });
    const first = await members.next();
    expect(first.value).toMatchObject({ start: 0, end: 250, stepEnd: false });
    expect(gunzipSync(first.value!.bytes)).toEqual(source.subarray(0, 250));
    release();
    const rest = await collect(members);
    expect(gunzipSync(Buffer.concat([first.value!.bytes, ...rest.map((member) => member.bytes)]))).toEqual(
      source,
    );
  });

  async function* chunks(...parts: Uint8Array[]) {
    yield* parts;
  }
  it.each([
    ['ends early', (bytes: Buffer) => chunks(bytes.subarray(0, 600)), 'ended after 600 of 1000 bytes'],
    ['gives more than asked', (bytes: Buffer) => chunks(bytes, Buffer.from('x')), 'more than the 1000 bytes'],
    [
      'breaks off mid-body',
      (bytes: Buffer) =>
        (async function* () {
          yield bytes.subarray(0, 600);
          throw new Error('socket hang up');
        })(),
      'socket hang up',
    ],
    [
      'is refused (the source changed)',
      (): AsyncIterable<Uint8Array> => {
        throw new Error('source changed');
      },
      'source changed',
    ],
  ])("fails, after the members before it, when a step's read %s", async (_, body, message) => {
    const broken = async (start: number, end: number) => {
      const bytes = source.subarray(start, end + 1);
      return start === 2000 ? body(bytes) : chunks(bytes);
    };
    const seen: number[] = [];
    await expect(
      (async () => {
        for await (const member of gzipMembers(broken, {
          from: 0,
          size: source.length,
          stepSize: 1000,
          threads: 2,
          sliceTarget: 250,
        }))
          seen.push(member.start);
      })(),
    ).rejects.toThrow(message);
    expect(seen).toEqual([0, 250, 500, 750, 1000, 1250, 1500, 1750]);
  });
});
