/**
 * A counting semaphore: at most `max` tasks run at once, the rest wait in
 * order. Shared by all workers, it bounds the controller's concurrent API
 * writes however many policies reconcile at the same time.
 */
export class Limiter {
  private readonly max: number;
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(max: number) {
    if (!(max >= 1)) throw new Error(`limiter: max must be at least 1, got ${max}`);
    this.max = max;
  }

  get active(): number {
    return this.running;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next(); // hand the slot over: running stays the same
      else this.running--;
    }
  }
}
