/**
 * Per-stream sequence tracking. The data plane numbers frames per (instance,
 * CPU), +1 per frame; all pieces of a frame share the number. A number never
 * seen once the stream has moved SEQ_WINDOW frames past it is a lost frame.
 *
 * Frames of one stream are taken on one CPU, so their capture timestamps
 * grow with the sequence number. That tells a restarted data plane (its
 * numbers start again) from reordering without guessing thresholds: a lower
 * number with a newer timestamp, or a known number with another timestamp,
 * means the numbering restarted.
 */
/** Frames a stream may be reordered by: the data plane sends a frame cut in its
 * emit stage (GSO super-packets) after later, smaller frames of the same CPU
 * that were cut at once, by up to a backlog batch. */
export const SEQ_WINDOW = 1024;
const MASK = SEQ_WINDOW - 1;

/** What observe() says about a piece's frame number. */
export const SeqVerdict = {
  /** first piece of a frame we have not seen: take it */
  fresh: 0,
  /** a frame already seen (another piece of it, or a duplicate) */
  seen: 1,
  /** older than the window: already counted lost, drop it */
  late: 2,
  /** the numbering restarted; the stream was reset and this frame is fresh */
  restart: 3,
} as const;
export type SeqVerdictValue = (typeof SeqVerdict)[keyof typeof SeqVerdict];

export class SeqStream {
  /** frames never seen (final once they leave the window, see flush()) */
  lost = 0;
  late = 0;
  restarts = 0;
  /** ring[x & MASK] === x when frame x has been seen */
  readonly #ring = new Uint32Array(SEQ_WINDOW);
  /** low 32 bits of the timestamp of frame x, where #tsKnown */
  readonly #ts = new Uint32Array(SEQ_WINDOW);
  readonly #tsKnown = new Uint8Array(SEQ_WINDOW);
  #high = 0;
  #highTsHi = 0;
  #highTsLo = 0;
  #started = false;

  /** Highest frame number seen. */
  get high(): number {
    return this.#high;
  }

  #reset(seq: number, tsHi: number, tsLo: number): void {
    // numbers before the first one we see are taken as seen: we cannot
    // know what came before we started listening
    for (let j = 0; j < SEQ_WINDOW; j++) {
      const x = (seq - j) >>> 0;
      this.#ring[x & MASK] = x;
      this.#tsKnown[x & MASK] = 0;
    }
    this.#mark(seq, tsLo);
    this.#high = seq;
    this.#highTsHi = tsHi;
    this.#highTsLo = tsLo;
    this.#started = true;
  }

  #mark(seq: number, tsLo: number): void {
    const s = seq & MASK;
    this.#ring[s] = seq;
    this.#ts[s] = tsLo;
    this.#tsKnown[s] = 1;
  }

  #newerThanHigh(tsHi: number, tsLo: number): boolean {
    return tsHi > this.#highTsHi || (tsHi === this.#highTsHi && tsLo > this.#highTsLo);
  }

  #restart(seq: number, tsHi: number, tsLo: number): SeqVerdictValue {
    this.flush();
    this.restarts++;
    this.#reset(seq, tsHi, tsLo);
    return SeqVerdict.restart;
  }

  observe(seq: number, tsHi: number, tsLo: number): SeqVerdictValue {
    if (!this.#started) {
      this.#reset(seq, tsHi, tsLo);
      return SeqVerdict.fresh;
    }
    const d = (seq - this.#high) | 0;
    if (d > 0) {
      // advance: numbers leaving the window unseen are lost
      const high = this.#high;
      const leaving = Math.min(d, SEQ_WINDOW);
      for (let i = 0; i < leaving; i++) {
        const x = (high - MASK + i) >>> 0;
        if (this.#ring[x & MASK] !== x) this.lost++;
      }
      if (d > SEQ_WINDOW) this.lost += d - SEQ_WINDOW;
      for (let x = Math.max(1, d - MASK); x < d; x++) {
        const y = (high + x) >>> 0;
        this.#ring[y & MASK] = (y + 1) >>> 0; // not seen
        this.#tsKnown[y & MASK] = 0;
      }
      this.#mark(seq, tsLo);
      this.#high = seq;
      this.#highTsHi = tsHi;
      this.#highTsLo = tsLo;
      return SeqVerdict.fresh;
    }
    if (-d < SEQ_WINDOW) {
      const s = seq & MASK;
      if (this.#ring[s] === seq) {
        if (!this.#tsKnown[s]) {
          // before our first frame: new to us, never counted
          this.#ts[s] = tsLo;
          this.#tsKnown[s] = 1;
          return SeqVerdict.fresh;
        }
        if (this.#ts[s] === tsLo) return SeqVerdict.seen;
        return this.#restart(seq, tsHi, tsLo);
      }
      if (this.#newerThanHigh(tsHi, tsLo)) return this.#restart(seq, tsHi, tsLo);
      this.#mark(seq, tsLo); // reordered, in time
      return SeqVerdict.fresh;
    }
    if (this.#newerThanHigh(tsHi, tsLo)) return this.#restart(seq, tsHi, tsLo);
    this.late++;
    return SeqVerdict.late;
  }

  /** Counts the numbers still missing in the window as lost (at close or restart). */
  flush(): void {
    if (!this.#started) return;
    for (let i = 0; i < SEQ_WINDOW; i++) {
      const x = (this.#high - i) >>> 0;
      if (this.#ring[x & MASK] !== x) {
        this.lost++;
        this.#ring[x & MASK] = x; // counted once
        this.#tsKnown[x & MASK] = 0;
      }
    }
  }
}
