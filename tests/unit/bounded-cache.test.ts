import { BoundedCache, BoundedCacheMap } from '../../lib/auth/bounded-cache.ts';

/** A source that answers 1, 2, 3, … and a clock the test moves. */
function setup(maxAgeMs = 1000) {
  let now = 0;
  let reads = 0;
  const cache = new BoundedCache(
    async () => ++reads,
    maxAgeMs,
    () => now,
  );
  return { cache, reads: () => reads, advance: (ms: number) => (now += ms) };
}

describe('BoundedCache', () => {
  it('keeps a value until it is maxAge old, then reads again', async () => {
    const { cache, reads, advance } = setup();
    expect(await cache.get()).toBe(1);
    advance(999);
    expect(await cache.get()).toBe(1);
    advance(1);
    expect(await cache.get()).toBe(2);
    expect(reads()).toBe(2);
  });

  it('shares one read among callers that arrive while it runs', async () => {
    const { cache, reads } = setup();
    expect(await Promise.all([cache.get(), cache.get(), cache.get()])).toEqual([1, 1, 1]);
    expect(reads()).toBe(1);
  });

  it('forces a read on refresh, at most once per interval, however recent the last read', async () => {
    const { cache, reads, advance } = setup(60_000);
    expect(await cache.get()).toBe(1);
    expect(await cache.refresh(5000)).toBe(2);
    advance(4999);
    expect(await cache.refresh(5000)).toBe(2);
    advance(1);
    expect(await cache.refresh(5000)).toBe(3);
    expect(reads()).toBe(3);
  });

  it('does not keep a failed read: the next call reads again', async () => {
    let fail = true;
    const cache = new BoundedCache(
      async () => {
        if (fail) throw new Error('down');
        return 'up';
      },
      1000,
      () => 0,
    );
    await expect(cache.get()).rejects.toThrow('down');
    fail = false;
    await expect(cache.get()).resolves.toBe('up');
  });

  it('with maxAge 0 reads on every call', async () => {
    const { cache, reads } = setup(0);
    await cache.get();
    await cache.get();
    expect(reads()).toBe(2);
  });
});

describe('BoundedCacheMap', () => {
  it('keeps one value per key and forgets them all past maxEntries', async () => {
    let reads = 0;
    const map = new BoundedCacheMap(async (key) => `${key}:${++reads}`, 1000, {
      maxEntries: 2,
      now: () => 0,
    });
    expect(await map.entry('a').get()).toBe('a:1');
    expect(await map.entry('b').get()).toBe('b:2');
    expect(await map.entry('a').get()).toBe('a:1');
    expect(await map.entry('c').get()).toBe('c:3');
    expect(await map.entry('a').get()).toBe('a:4');
  });
});
