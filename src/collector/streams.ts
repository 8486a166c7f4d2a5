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
 *
 * Numbers are the sender's word, and a forged or corrupted one must not spoil
 * the stream for good (issue 9): a jump further than the window is taken only
 * once a second frame continues from it (until then the frame is delivered
 * but the window stays), and LATE_RESYNC late frames in a row that continue
 * one another mean the window itself was pushed astray: the stream starts
 * over at them.
 */
/** Frames a stream may be reordered by: the data plane sends a frame cut in its
 * emit stage (GSO super-packets) after later, smaller frames of the same CPU
 * that were cut at once, by up to a backlog batch. */
export const SEQ_WINDOW = 1024;
const MASK = SEQ_WINDOW - 1;
/**
 * Late frames in a row, each a little after the one before, after which the
 * stream starts over at them: real frames behind a window that a forged
 * number moved are then lost at most this many, not forever.
 */
export const LATE_RESYNC = 64;

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
  /** a frame further ahead than the window, not taken yet (see observe) */
  #candidate: { seq: number; tsHi: number; tsLo: number } | undefined;
  /** late frames in a row continuing one another, and the last of them */
  #lateRun = 0;
  #lateLast = 0;
  /** lost numbers being declared, run by run (see #noteLost), and the ended runs not yet taken (takeGap) */
  #run = 0;
  #runFirst = 0;
  #runLast = 0;
  #gapCount = 0;
  #gapFirst = 0;
  #gapLast = 0;

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
    this.#candidate = undefined;
    this.#lateRun = 0;
    this.#reset(seq, tsHi, tsLo);
    return SeqVerdict.restart;
  }

  /** Moves the window d (> 0) frames ahead to `seq`: numbers leaving it unseen are lost. */
  #advance(seq: number, tsHi: number, tsLo: number, d: number): void {
    const high = this.#high;
    const leaving = Math.min(d, SEQ_WINDOW);
    for (let i = 0; i < leaving; i++) {
      const x = (high - MASK + i) >>> 0;
      if (this.#ring[x & MASK] !== x) this.#noteLost(x, 1);
      else this.#closeRun();
    }
    if (d > SEQ_WINDOW) this.#noteLost((high + 1) >>> 0, d - SEQ_WINDOW);
    for (let x = Math.max(1, d - MASK); x < d; x++) {
      const y = (high + x) >>> 0;
      this.#ring[y & MASK] = (y + 1) >>> 0; // not seen
      this.#tsKnown[y & MASK] = 0;
    }
    this.#mark(seq, tsLo);
    this.#high = seq;
    this.#highTsHi = tsHi;
    this.#highTsLo = tsLo;
  }

  /**
   * A frame further ahead than the window: a real gap (frames lost before
   * the collector) or a forged number. The first such frame is delivered but
   * only remembered; a second one continuing from it within the window
   * confirms the jump. Anything else leaves the window where it is.
   */
  #farAhead(seq: number, tsHi: number, tsLo: number): SeqVerdictValue {
    const c = this.#candidate;
    if (c && c.seq === seq && c.tsHi === tsHi && c.tsLo === tsLo) return SeqVerdict.seen; // another piece of it
    const dc = c ? (seq - c.seq) | 0 : 0;
    if (c && dc > 0 && dc <= SEQ_WINDOW && (tsHi > c.tsHi || (tsHi === c.tsHi && tsLo > c.tsLo))) {
      this.#candidate = undefined;
      this.#advance(c.seq, c.tsHi, c.tsLo, (c.seq - this.#high) | 0);
      this.#advance(seq, tsHi, tsLo, dc);
      return SeqVerdict.fresh;
    }
    this.#candidate = { seq, tsHi, tsLo };
    return SeqVerdict.fresh;
  }

  observe(seq: number, tsHi: number, tsLo: number): SeqVerdictValue {
    if (!this.#started) {
      this.#reset(seq, tsHi, tsLo);
      return SeqVerdict.fresh;
    }
    const d = (seq - this.#high) | 0;
    if (d > 0) {
      this.#lateRun = 0;
      if (d > SEQ_WINDOW) return this.#farAhead(seq, tsHi, tsLo);
      this.#candidate = undefined;
      this.#advance(seq, tsHi, tsLo, d);
      return SeqVerdict.fresh;
    }
    if (-d < SEQ_WINDOW) {
      this.#lateRun = 0;
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
    // behind the window: late, unless late frames keep coming in order
    const dl = (seq - this.#lateLast) | 0;
    this.#lateRun = this.#lateRun > 0 && dl > 0 && dl <= SEQ_WINDOW ? this.#lateRun + 1 : 1;
    this.#lateLast = seq;
    if (this.#lateRun >= LATE_RESYNC) return this.#restart(seq, tsHi, tsLo);
    this.late++;
    return SeqVerdict.late;
  }

  /** Counts the numbers still missing in the window as lost (at close or restart). */
  flush(): void {
    if (!this.#started) return;
    // a jump nothing came to confirm or contradict: the stream ended after a gap
    const c = this.#candidate;
    this.#candidate = undefined;
    if (c && ((c.seq - this.#high) | 0) > 0) this.#advance(c.seq, c.tsHi, c.tsLo, (c.seq - this.#high) | 0);
    for (let i = SEQ_WINDOW - 1; i >= 0; i--) {
      const x = (this.#high - i) >>> 0;
      if (this.#ring[x & MASK] !== x) {
        this.#noteLost(x, 1);
        this.#ring[x & MASK] = x; // counted once
        this.#tsKnown[x & MASK] = 0;
      } else {
        this.#closeRun();
      }
    }
    this.#closeRun();
  }

  /**
   * `n` frames from number `first` on are lost: counted at once, and added to
   * the run of lost numbers being declared (reported by takeGap() once a
   * seen number ends it, so a gap of five frames is one report, not five).
   */
  #noteLost(first: number, n: number): void {
    this.lost += n;
    if (this.#run === 0) this.#runFirst = first;
    this.#run += n;
    this.#runLast = (first + n - 1) >>> 0;
  }

  /** The run of lost numbers ended: it is ready for takeGap(). */
  #closeRun(): void {
    if (this.#run === 0) return;
    if (this.#gapCount === 0) this.#gapFirst = this.#runFirst;
    this.#gapCount += this.#run;
    this.#gapLast = this.#runLast;
    this.#run = 0;
  }

  /** Whether a gap is ready for takeGap(). */
  get gapPending(): boolean {
    return this.#gapCount > 0;
  }

  /**
   * The frames declared lost in the runs that ended since the last call:
   * how many, and the first and last of their numbers (in the order they
   * were declared; not every number between them need be missing).
   * Undefined when none.
   */
  takeGap(): { count: number; first: number; last: number } | undefined {
    if (this.#gapCount === 0) return undefined;
    const g = { count: this.#gapCount, first: this.#gapFirst, last: this.#gapLast };
    this.#gapCount = 0;
    return g;
  }
}
