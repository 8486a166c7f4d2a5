import { afterEach, describe, expect, it, vi } from 'vitest';
import { TokenBucket, WorkQueue } from '../../../src/k8s/queue.ts';

afterEach(() => {
  vi.useRealTimers();
});

describe('WorkQueue', () => {
  it('deduplicates keys while they wait', async () => {
    const q = new WorkQueue();
    for (const k of ['a', 'b', 'a', 'a', 'c', 'b']) q.add(k);
    expect(q.length).toBe(3);
    expect([await q.get(), await q.get(), await q.get()]).toEqual(['a', 'b', 'c']);
  });

  it('never hands a key to two workers; a key added while processing comes back once after done', async () => {
    const q = new WorkQueue();
    q.add('a');
    const first = await q.get();
    expect(first).toBe('a');
    q.add('a');
    q.add('a');
    expect(q.length).toBe(0); // not handed out while a worker holds it
    let second: string | undefined;
    void q.get().then((k) => (second = k));
    await Promise.resolve();
    expect(second).toBeUndefined();
    q.done('a');
    await Promise.resolve();
    expect(second).toBe('a');
    q.done('a');
    expect(q.length).toBe(0);
  });

  it('a waiting worker gets a new key at once', async () => {
    const q = new WorkQueue();
    const p = q.get();
    q.add('x');
    await expect(p).resolves.toBe('x');
  });

  it.each([
    { description: 'doubles per failure from the base', base: 5, max: 1000, failures: 6, expected: [5, 10, 20, 40, 80, 160] },
    { description: 'is capped at the maximum', base: 100, max: 300, failures: 4, expected: [100, 200, 300, 300] },
  ])('backoff $description', ({ base, max, failures, expected }) => {
    const q = new WorkQueue({ baseDelayMs: base, maxDelayMs: max, retryQps: 0 });
    const delays = Array.from({ length: failures }, () => q.addRateLimited('k'));
    expect(delays).toEqual(expected);
    expect(q.retries('k')).toBe(failures);
    q.forget('k');
    expect(q.retries('k')).toBe(0);
    expect(q.addRateLimited('k')).toBe(base);
    q.shutDown();
  });

  it('addAfter keeps the earliest deadline', async () => {
    vi.useFakeTimers();
    const q = new WorkQueue();
    q.addAfter('k', 1000);
    q.addAfter('k', 50);
    q.addAfter('k', 500);
    vi.advanceTimersByTime(49);
    expect(q.length).toBe(0);
    vi.advanceTimersByTime(1);
    expect(q.length).toBe(1);
    await q.get();
    q.done('k');
    vi.advanceTimersByTime(2000);
    expect(q.length).toBe(0); // the later deadlines were dropped
  });

  it('paces retries overall with the token bucket', () => {
    let t = 0;
    const q = new WorkQueue({ baseDelayMs: 1, retryQps: 10, retryBurst: 2, now: () => t });
    expect(q.addRateLimited('a')).toBe(1);
    expect(q.addRateLimited('b')).toBe(1);
    expect(q.addRateLimited('c')).toBeCloseTo(100); // bucket empty: one token per 100 ms
    expect(q.addRateLimited('d')).toBeCloseTo(200);
    t = 1000;
    expect(q.addRateLimited('e')).toBe(1);
    q.shutDown();
  });

  it('shutDown with drop discards waiting keys; drain waits for in-flight ones', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    const k = await q.get();
    q.shutDown({ drop: true });
    await expect(q.get()).resolves.toBeUndefined();
    let drained = false;
    const d = q.drain().then(() => (drained = true));
    await Promise.resolve();
    expect(drained).toBe(false);
    q.done(k!);
    await d;
    expect(drained).toBe(true);
    q.add('c');
    expect(q.length).toBe(0);
  });

  it('without drop, workers finish the line before getting undefined', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.shutDown();
    await expect(q.get()).resolves.toBe('a');
    await expect(q.get()).resolves.toBeUndefined();
  });

  it('reports metrics: adds once per add, depth, latency, retries', async () => {
    const m = { adds: 0, retries: 0, depth: [] as number[], latency: 0 };
    const q = new WorkQueue({
      retryQps: 0,
      metrics: { adds: () => m.adds++, retries: () => m.retries++, depth: (n) => m.depth.push(n), latency: () => m.latency++ },
    });
    q.add('a');
    q.add('a');
    q.add('b');
    const k = await q.get();
    q.add(k!); // while processing
    q.done(k!);
    q.addRateLimited('c');
    q.shutDown();
    expect(m.adds).toBe(3);
    expect(m.retries).toBe(1);
    expect(m.latency).toBe(1);
    expect(m.depth).toEqual([1, 2, 1, 2]);
  });
});

describe('TokenBucket', () => {
  it('starts full, then refills at qps', () => {
    let t = 0;
    const b = new TokenBucket(2, 2, () => t);
    expect([b.reserve(), b.reserve()]).toEqual([0, 0]);
    expect(b.reserve()).toBeCloseTo(500);
    t = 5000;
    expect(b.reserve()).toBe(0);
  });
});
