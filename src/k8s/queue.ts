/**
 * A work queue with client-go's semantics: keys are deduplicated while they
 * wait, a key is never processed by two workers at once (a key added while it
 * is being processed is queued again when done), failures back off
 * exponentially per key, and delayed adds keep only the earliest deadline.
 *
 * Retries are also paced overall by a token bucket (client-go's default
 * controller rate limiter: 10 per second, bursts of 100): when the API
 * server is down every policy fails at once, and per-key backoff alone
 * would retry them all together at 5 ms, 10 ms, 20 ms...
 */
export interface QueueMetrics {
  adds(): void;
  retries(): void;
  depth(n: number): void;
  /** Seconds a key waited between being added and being handed to a worker. */
  latency(seconds: number): void;
}

export interface QueueOptions {
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Overall retry rate (tokens per second) and burst; qps 0 disables the bucket. */
  retryQps?: number;
  retryBurst?: number;
  metrics?: QueueMetrics;
  /** Clock for the token bucket (tests). */
  now?: () => number;
}

/** Tokens refill at `qps` per second up to `burst`; reserve() says how long to wait for one. */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly qps: number;
  private readonly burst: number;
  private readonly now: () => number;

  constructor(qps: number, burst: number, now: () => number = () => performance.now()) {
    this.qps = qps;
    this.burst = burst;
    this.tokens = burst;
    this.now = now;
    this.last = now();
  }

  /** Take a token (possibly one not yet refilled): the delay in ms until it is due. */
  reserve(): number {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.qps);
    this.last = t;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.qps) * 1000;
  }
}

export class WorkQueue {
  private queue: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly delayed = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly addedAt = new Map<string, number>();
  private waiters: ((key: string | undefined) => void)[] = [];
  private idleWaiters: (() => void)[] = [];
  private shuttingDown = false;
  private readonly base: number;
  private readonly max: number;
  private readonly bucket: TokenBucket | undefined;
  private readonly metrics: QueueMetrics | undefined;

  constructor(opts: QueueOptions = {}) {
    this.base = opts.baseDelayMs ?? 5;
    this.max = opts.maxDelayMs ?? 300_000;
    const qps = opts.retryQps ?? 10;
    this.bucket = qps > 0 ? new TokenBucket(qps, opts.retryBurst ?? 100, opts.now) : undefined;
    this.metrics = opts.metrics;
  }

  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.metrics?.adds();
    this.dirty.add(key);
    this.addedAt.set(key, performance.now());
    if (this.processing.has(key)) return; // queued again by done()
    this.enqueue(key);
  }

  /** Hand a dirty key to a waiting worker, or put it in line. */
  private enqueue(key: string): void {
    const w = this.waiters.shift();
    if (w) {
      this.take(key);
      w(key);
    } else {
      this.queue.push(key);
      this.metrics?.depth(this.queue.length);
    }
  }

  private take(key: string): void {
    this.dirty.delete(key);
    this.processing.add(key);
    const t = this.addedAt.get(key);
    if (t !== undefined) this.metrics?.latency((performance.now() - t) / 1000);
    this.addedAt.delete(key);
  }

  /** Next key to process, or undefined once shut down (and, unless dropped, drained). */
  get(): Promise<string | undefined> {
    const key = this.queue.shift();
    if (key !== undefined) {
      this.metrics?.depth(this.queue.length);
      this.take(key);
      return Promise.resolve(key);
    }
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** The worker finished `key`; if it was added meanwhile it goes back in line. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key) && !this.shuttingDown) this.enqueue(key);
    if (this.processing.size === 0) {
      for (const w of this.idleWaiters) w();
      this.idleWaiters = [];
    }
  }

  /** Add after `ms`; of several delayed adds of a key, the earliest wins. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) return this.add(key);
    const at = Date.now() + ms;
    const existing = this.delayed.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    timer.unref();
    this.delayed.set(key, { at, timer });
  }

  /** The delay addRateLimited would use now, counting this failure. */
  private backoff(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const perKey = Math.min(this.base * 2 ** n, this.max);
    return Math.max(perKey, this.bucket?.reserve() ?? 0);
  }

  /** Requeue after this key's exponential backoff (5 ms, 10 ms, ... up to maxDelayMs), paced overall. */
  addRateLimited(key: string): number {
    if (this.shuttingDown) return 0;
    this.metrics?.retries();
    const delay = this.backoff(key);
    this.addAfter(key, delay);
    return delay;
  }

  /** The key succeeded: reset its backoff. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  retries(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  get length(): number {
    return this.queue.length;
  }

  /** Keys being processed right now. */
  get inFlight(): number {
    return this.processing.size;
  }

  get isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /**
   * Stop accepting keys. Waiting workers get undefined. With `drop`, keys
   * still in line are discarded (losing leadership: the next leader lists
   * everything anyway); without it, workers first finish the line.
   */
  shutDown(opts: { drop?: boolean } = {}): void {
    this.shuttingDown = true;
    for (const d of this.delayed.values()) clearTimeout(d.timer);
    this.delayed.clear();
    if (opts.drop) {
      for (const k of this.queue) this.dirty.delete(k);
      this.queue = [];
      this.metrics?.depth(0);
    }
    for (const w of this.waiters) w(undefined);
    this.waiters = [];
  }

  /** Keys waiting in line for a worker (not those being processed, nor those delayed). */
  get waiting(): number {
    return this.queue.length;
  }

  /** Resolves when no key is being processed (in-flight reconciles have finished). */
  drain(): Promise<void> {
    if (this.processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }
}
