import { Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import { gzipMembers } from '../../lib/exports/gzip-members.ts';
import { PartWindow } from '../../lib/exports/part-window.ts';
import { REOPENS_PER_READ } from '../../lib/exports/sequential-reads.ts';

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

  /** A read that answers in 100-byte chunks and records what it was asked for and how far it was pulled. */
  const chunked = () => {
    const opened: Array<[number, number]> = [];
    let pulled = 0;
    const open = async (start: number, end: number) => {
      opened.push([start, end]);
      return (async function* () {
        for (let at = start; at <= end; at += 100) {
          pulled = Math.min(at + 100, end + 1);
          yield source.subarray(at, pulled);
        }
      })();
    };
    return { open, opened, pulled: () => pulled };
  };

  it('reads the source with one read from `from` on, pulled no further than the step ahead', async () => {
    const { open, opened, pulled } = chunked();
    // 1000-byte steps of 4 slices, 1 thread: 3 slices in flight, all in the first step.
    const members = gzipMembers(open, {
      from: 2000,
      size: source.length,
      stepSize: 1000,
      threads: 1,
      sliceTarget: 250,
    });
    expect((await members.next()).value?.start).toBe(2000);
    await settle();
    expect(opened).toEqual([[2000, source.length - 1]]);
    // The step being cut and the one after it, no further.
    expect(pulled()).toBe(4000);
    // The first slice of the next step is taken: the step after it is read.
    for (let i = 0; i < 3; i++) await members.next();
    await settle();
    expect(pulled()).toBe(5000);
    await members.return(undefined);
    expect(opened).toHaveLength(1);
  });

  it('with one slice per step, pulls the steps of threads + 2 slices in flight and one more', async () => {
    const { open, pulled } = chunked();
    const members = gzipMembers(open, { from: 2000, size: source.length, stepSize: 500, threads: 2 });
    expect((await members.next()).value?.start).toBe(2000);
    await settle();
    // The first taken, four in flight (2500 to 4000), and 4500 read ahead.
    expect(pulled()).toBe(5000);
    await members.return(undefined);
  });

  it('lets go of the body when the members are given up mid-source (a hand-off)', async () => {
    const body = Readable.from(
      (function* () {
        for (let at = 0; at < source.length; at += 100) yield source.subarray(at, at + 100);
      })(),
    );
    const members = gzipMembers(async () => body, {
      from: 0,
      size: source.length,
      stepSize: 1000,
      threads: 2,
      sliceTarget: 250,
    });
    expect((await members.next()).value?.start).toBe(0);
    expect(body.destroyed).toBe(false);
    await members.return(undefined);
    expect(body.destroyed).toBe(true);
  });

  it('opens the source again where its body broke off, and gives the same members', async () => {
    const opened: number[] = [];
    const breaksOnce = async (start: number, end: number) => {
      opened.push(start);
      return (async function* () {
        yield source.subarray(start, Math.min(start + 2600, end + 1));
        if (opened.length === 1) throw new Error('socket hang up');
        yield source.subarray(start + 2600, end + 1);
      })();
    };
    const range = { from: 0, size: source.length, stepSize: 1000, threads: 2, sliceTarget: 250 };
    const members = await collect(gzipMembers(breaksOnce, range));
    expect(opened).toEqual([0, 2600]);
    expect(members).toEqual(await collect(gzipMembers(read, range)));
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

  // The source's body goes wrong 600 bytes into the step at 2000, every time it is opened.
  const brokenAt = 2600;
  it.each([
    [
      'ends early',
      async (start: number) =>
        (async function* () {
          yield source.subarray(start, brokenAt);
        })(),
      'ended after 600 of 1000 bytes',
    ],
    [
      `breaks off mid-body, again each time it is opened (${REOPENS_PER_READ} times)`,
      async (start: number) =>
        (async function* () {
          yield source.subarray(start, brokenAt);
          throw new Error('socket hang up');
        })(),
      'socket hang up',
    ],
    [
      'breaks off, and is refused when opened again (the source changed)',
      async (start: number) => {
        if (start > 0) throw new Error('source changed');
        return (async function* () {
          yield source.subarray(start, brokenAt);
          throw new Error('socket hang up');
        })();
      },
      'source changed',
    ],
  ])("fails, after the members before it, when the source's read %s", async (_, broken, message) => {
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
