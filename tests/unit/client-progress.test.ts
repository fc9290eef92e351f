import {
  ApiError,
  MiB,
  ProgressBatcher,
  partRange,
  partSizeProblem,
  RateLimiter,
  SpeedMeter,
} from '../../client/index.ts';

/** A promise with its resolve/reject at hand. */
function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('progress reports in batches', () => {
  it('keeps one report in flight and sends everything finished meanwhile in the next', async () => {
    const sent: number[][] = [];
    const gates: { resolve: () => void }[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const batcher = new ProgressBatcher<number>(async (items) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      sent.push(items);
      const gate = deferred();
      gates.push({ resolve: () => gate.resolve() });
      await gate.promise;
      inFlight--;
    });

    batcher.add(1); // starts a report at once
    for (let part = 2; part <= 6; part++) batcher.add(part); // queue behind it
    await tick();
    expect(sent).toEqual([[1]]);
    gates[0]!.resolve();
    await tick();
    expect(sent).toEqual([[1], [2, 3, 4, 5, 6]]);
    batcher.add(7);
    gates[1]!.resolve();
    await tick();
    gates[2]!.resolve();
    await batcher.flush();
    expect(sent).toEqual([[1], [2, 3, 4, 5, 6], [7]]);
    expect(maxInFlight).toBe(1);
    expect(batcher.requests).toBe(3);
    expect(batcher.sent).toBe(7);
  });

  it('never makes add() wait, even while a report hangs', async () => {
    const hang = deferred();
    const batcher = new ProgressBatcher<number>(() => hang.promise);
    const started = performance.now();
    for (let part = 1; part <= 10_000; part++) batcher.add(part);
    expect(performance.now() - started).toBeLessThan(200);
    expect(batcher.pending).toBe(9_999);
    hang.resolve();
  });

  it('splits a large backlog into requests of at most maxBatch', async () => {
    const sizes: number[] = [];
    const gate = deferred();
    const batcher = new ProgressBatcher<number>(
      async (items) => {
        sizes.push(items.length);
        if (sizes.length === 1) await gate.promise;
      },
      { maxBatch: 1000 },
    );
    for (let part = 1; part <= 2501; part++) batcher.add(part);
    gate.resolve();
    await batcher.flush();
    expect(sizes).toEqual([1, 1000, 1000, 500]);
  });

  it('retries a failed report with the parts that piled up, then drops it after maxFailures', async () => {
    const sent: number[][] = [];
    const dropped: number[] = [];
    let failuresLeft = 2;
    const batcher = new ProgressBatcher<number>(
      async (items) => {
        sent.push(items);
        if (failuresLeft-- > 0) throw new Error('network');
      },
      { sleep: async () => {}, onDropped: (count) => dropped.push(count) },
    );
    batcher.add(1);
    batcher.add(2);
    await batcher.flush();
    expect(sent).toEqual([[1], [1, 2], [1, 2]]);
    expect(dropped).toEqual([]);

    const failing = new ProgressBatcher<number>(
      async () => {
        throw new Error('down');
      },
      { sleep: async () => {}, maxFailures: 3, onDropped: (count) => dropped.push(count) },
    );
    failing.add(1);
    await failing.flush();
    expect(dropped).toEqual([1]);
  });

  it('stops for good on a fatal error (the job was killed elsewhere)', async () => {
    const fatal: unknown[] = [];
    let calls = 0;
    const batcher = new ProgressBatcher<number>(
      async () => {
        calls++;
        throw new ApiError(409, 'JobNotActive', 'upload is ABORTED');
      },
      {
        isFatal: (error) => error instanceof ApiError && error.code === 'JobNotActive',
        onFatal: (error) => fatal.push(error),
      },
    );
    batcher.add(1);
    await batcher.flush();
    batcher.add(2);
    await batcher.flush();
    expect(calls).toBe(1);
    expect(fatal).toHaveLength(1);
  });
});

describe('progress reports spaced in time', () => {
  /** A clock and a sleep the test moves by hand; a sleep ends early when its signal aborts. */
  function manualTime() {
    let now = 0;
    const sleeps: { ms: number; end: () => void }[] = [];
    const sleep = (ms: number, signal?: AbortSignal) =>
      new Promise<void>((resolve, reject) => {
        sleeps.push({ ms, end: resolve });
        signal?.addEventListener('abort', () => reject(new Error('woken')), { once: true });
      });
    return {
      sleeps,
      now: () => now,
      sleep,
      advance(ms: number) {
        now += ms;
        sleeps.shift()?.end();
      },
    };
  }

  it('sends the first part at once, then at most one report per minIntervalMs with all that finished', async () => {
    const time = manualTime();
    const sent: number[][] = [];
    const batcher = new ProgressBatcher<number>(async (items) => void sent.push(items), {
      minIntervalMs: 1000,
      now: time.now,
      sleep: time.sleep,
    });
    batcher.add(1);
    await tick();
    expect(sent).toEqual([[1]]);
    // Answered at once, yet the next report waits for the rest of the second.
    for (let part = 2; part <= 40; part++) batcher.add(part);
    await tick();
    expect(sent).toHaveLength(1);
    expect(time.sleeps.map((sleep) => sleep.ms)).toEqual([1000]);
    time.advance(1000);
    await tick();
    expect(sent).toHaveLength(2);
    expect(sent[1]).toHaveLength(39);
    expect(batcher.requests).toBe(2);
  });

  it('sends what is waiting at once on flush(), without waiting out the interval', async () => {
    const time = manualTime();
    const sent: number[][] = [];
    const batcher = new ProgressBatcher<number>(async (items) => void sent.push(items), {
      minIntervalMs: 60_000,
      now: time.now,
      sleep: time.sleep,
    });
    batcher.add(1);
    await tick();
    batcher.add(2);
    batcher.add(3);
    await tick();
    expect(sent).toEqual([[1]]);
    await batcher.flush();
    expect(sent).toEqual([[1], [2, 3]]);
    // And stop() ends a wait too, sending nothing more.
    batcher.add(4);
    await tick();
    batcher.stop();
    await tick();
    expect(sent).toEqual([[1], [2, 3]]);
    expect(batcher.inFlight).toBe(false);
  });
});

describe('speed and rate limiting', () => {
  it('measures bytes per second over a sliding window', () => {
    let now = 0;
    const meter = new SpeedMeter({ windowMs: 5000, now: () => now });
    expect(meter.rate()).toBeUndefined();
    for (let second = 1; second <= 10; second++) {
      now = second * 1000;
      meter.add(second <= 5 ? 10 * MiB : 2 * MiB);
    }
    // The last five seconds moved 2 MiB each.
    expect(meter.rate()).toBeCloseTo(2 * MiB, -3);
  });

  it('paces bytes to the rate across callers, with a small burst', async () => {
    let now = 0;
    const waits: number[] = [];
    const limiter = new RateLimiter(1 * MiB, {
      burstMs: 100,
      now: () => now,
      sleep: async (ms) => {
        waits.push(ms);
      },
    });
    await limiter.take(64 * 1024); // within the burst: no wait
    expect(waits).toEqual([]);
    // 1 MiB more needs about a second beyond the burst.
    await limiter.take(MiB);
    expect(waits[0]).toBeGreaterThan(900);
    expect(waits[0]).toBeLessThan(1000);
    now = 60_000; // long idle: credit is capped at the burst
    await limiter.take(MiB);
    expect(waits[1]).toBeCloseTo(900, 0);
  });
});

describe('part layout', () => {
  it('places every part and the shorter last one', () => {
    const layout = { size: 12 * MiB + 5, partSize: 5 * MiB, partCount: 3 };
    expect(partRange(layout, 1)).toEqual({ offset: 0, length: 5 * MiB });
    expect(partRange(layout, 3)).toEqual({ offset: 10 * MiB, length: 2 * MiB + 5 });
    expect(() => partRange(layout, 4)).toThrow(RangeError);
    expect(() => partRange(layout, 0)).toThrow(RangeError);
  });

  it("checks a requested part size against S3's limits", () => {
    expect(partSizeProblem(100 * MiB, 5 * MiB)).toBeUndefined();
    expect(partSizeProblem(100 * MiB, 4 * MiB)).toMatch(/5 MiB to 5 GiB/);
    expect(partSizeProblem(60_000 * MiB, 5 * MiB)).toMatch(/at least 6 MiB/);
  });
});
