/**
 * Rebuilding frames that travel as several pieces. Each piece carries the
 * frame's header prefix (restored here byte for byte, see wire/restore.ts) and
 * the chunk [piece_off, piece_off + n) of the frame. Memory is bounded (frames
 * and bytes pending), incomplete frames time out, and a piece that repeats or
 * overlaps what a frame already has is counted and ignored, so a frame is
 * only ever made of bytes that agree.
 */
import { FRAME_MAX, Flag, type PieceMeta } from '../wire/format.ts';
import { restorePrefix } from '../wire/restore.ts';

export interface ReassemblyLimits {
  /** frames pending at once (oldest dropped beyond) */
  maxFrames: number;
  /** bytes of pending frames (their cap_len) */
  maxBytes: number;
  /** a frame still incomplete this long after its first piece is dropped */
  timeoutMs: number;
}

export const DEFAULT_REASSEMBLY_LIMITS: ReassemblyLimits = { maxFrames: 4096, maxBytes: 128 << 20, timeoutMs: 2000 };

/**
 * Frame buffers kept for reuse. A completed frame's bytes are copied out by
 * the sink (into a pcapng or handoff batch) before the next piece arrives, so
 * its buffer can serve the next frame: at thousands of 64 KB frames a
 * second, allocating each one kept the garbage collector busy exactly when
 * bursts needed the thread.
 */
const POOL_MAX = 32;

/** Flags that must be equal in every piece of a frame (not FRAG or LAST). */
const FRAME_FLAGS = ~(Flag.frag | Flag.last) & 0xff;

export interface PendingFrame {
  readonly key: number;
  readonly stream: number;
  readonly created: number;
  readonly data: Buffer;
  readonly capLen: number;
  readonly prefixLen: number;
  /** chunk bytes present */
  have: number;
  /** chunks present: sorted, non-overlapping [start, end) pairs, flattened */
  readonly ranges: number[];
  // what every piece of the frame must agree on
  readonly flags: number;
  readonly kind: number;
  readonly origLen: number;
  readonly hdrLen: number;
  readonly l3Off: number;
  readonly ifindex: number;
  readonly tstampHi: number;
  readonly tstampLo: number;
  readonly fix0: number;
  readonly fix1: number;
  readonly fix2: number;
  readonly fix3: number;
}

export const PieceResult = {
  /** the frame is complete: see Reassembler.completed */
  complete: 0,
  pending: 1,
  duplicate: 2,
  overlap: 3,
  /** the piece contradicts earlier pieces of its frame (dropped) */
  inconsistent: 4,
  /** no pending frame for a piece that is not the first seen (already done or dropped) */
  unknown: 5,
} as const;
export type PieceResultValue = (typeof PieceResult)[keyof typeof PieceResult];

/** Key of a frame: stream number (< 2^21) and its 32-bit sequence number. */
export function frameKey(stream: number, seq: number): number {
  return stream * 0x1_0000_0000 + seq;
}

export class Reassembler {
  readonly limits: ReassemblyLimits;
  /** insertion order = age: the first entry is the oldest */
  readonly #pending = new Map<number, PendingFrame>();
  #bytes = 0;
  #scratch = Buffer.alloc(512);
  readonly #pool: Buffer[] = [];
  /** the frame the last add() completed (valid until the next start() or add()) */
  completed: PendingFrame | undefined;
  /** frames dropped unfinished: timed out, evicted by the limits, or their stream restarted */
  incomplete = 0;
  evicted = 0;

  constructor(limits: Partial<ReassemblyLimits> = {}) {
    this.limits = { ...DEFAULT_REASSEMBLY_LIMITS, ...limits };
  }

  get pendingFrames(): number {
    return this.#pending.size;
  }

  get pendingBytes(): number {
    return this.#bytes;
  }

  /**
   * First piece of a frame: start it. The piece has passed
   * parseDatagramInto's checks, so its offsets lie inside the frame.
   */
  start(stream: number, m: PieceMeta, src: Buffer, innerOff: number, innerLen: number, now: number): PieceResultValue {
    this.#recycle();
    const key = frameKey(stream, m.seq);
    const old = this.#pending.get(key);
    if (old) this.#drop(old); // cannot happen unless a stream was not reset: be safe
    while (this.#pending.size >= this.limits.maxFrames || (this.#bytes + m.capLen > this.limits.maxBytes && this.#pending.size > 0)) {
      const oldest = this.#pending.values().next().value!;
      this.#drop(oldest);
      this.evicted++;
    }
    const data = (this.#pool.pop() ?? Buffer.allocUnsafeSlow(FRAME_MAX)).subarray(0, m.capLen);
    const prefixLen = restorePrefix(src, innerOff, m, data, 0);
    const f: PendingFrame = {
      key, stream, created: now, data, capLen: m.capLen, prefixLen, have: 0, ranges: [],
      flags: m.flags & FRAME_FLAGS, kind: m.kind, origLen: m.origLen, hdrLen: m.hdrLen, l3Off: m.l3Off,
      ifindex: m.ifindex, tstampHi: m.tstampHi, tstampLo: m.tstampLo, fix0: m.fix0, fix1: m.fix1, fix2: m.fix2, fix3: m.fix3,
    };
    this.#pending.set(key, f);
    this.#bytes += m.capLen;
    return this.#addChunk(f, m, src, innerOff, innerLen);
  }

  /** A further piece of a frame already started. */
  add(stream: number, m: PieceMeta, src: Buffer, innerOff: number, innerLen: number): PieceResultValue {
    this.#recycle();
    const f = this.#pending.get(frameKey(stream, m.seq));
    if (!f) return PieceResult.unknown;
    if (
      f.capLen !== m.capLen || f.origLen !== m.origLen || f.kind !== m.kind || f.hdrLen !== m.hdrLen ||
      f.l3Off !== m.l3Off || f.ifindex !== m.ifindex || f.flags !== (m.flags & FRAME_FLAGS) ||
      f.tstampHi !== m.tstampHi || f.tstampLo !== m.tstampLo || f.fix0 !== m.fix0 || f.fix1 !== m.fix1 ||
      f.fix2 !== m.fix2 || f.fix3 !== m.fix3
    ) {
      return PieceResult.inconsistent;
    }
    if (f.prefixLen > 0) {
      // every piece restores to the same prefix, or it belongs to another frame
      if (this.#scratch.length < f.prefixLen) this.#scratch = Buffer.alloc(f.prefixLen);
      restorePrefix(src, innerOff, m, this.#scratch, 0);
      if (this.#scratch.compare(f.data, 0, f.prefixLen, 0, f.prefixLen) !== 0) return PieceResult.inconsistent;
    }
    return this.#addChunk(f, m, src, innerOff, innerLen);
  }

  #addChunk(f: PendingFrame, m: PieceMeta, src: Buffer, innerOff: number, innerLen: number): PieceResultValue {
    const start = m.pieceOff;
    const n = innerLen - m.hdrLen;
    const end = start + n;
    const r = f.ranges;
    if (n > 0) {
      // find the insertion point: the first range that ends after start
      let i = r.length;
      while (i >= 2 && r[i - 1]! > start) i -= 2;
      if (i < r.length) {
        const s = r[i]!;
        const e = r[i + 1]!;
        if (s < end) return s === start && e === end ? PieceResult.duplicate : PieceResult.overlap;
      }
      src.copy(f.data, start, innerOff + m.hdrLen, innerOff + innerLen);
      r.splice(i, 0, start, end);
      f.have += n;
    }
    if (f.prefixLen + f.have === f.capLen) {
      this.#pending.delete(f.key);
      this.#bytes -= f.capLen;
      this.completed = f;
      return PieceResult.complete;
    }
    return PieceResult.pending;
  }

  /** The last completed frame has been consumed: its buffer serves the next frame. */
  #recycle(): void {
    const f = this.completed;
    this.completed = undefined;
    if (f) this.#release(f);
  }

  #release(f: PendingFrame): void {
    if (this.#pool.length < POOL_MAX) this.#pool.push(Buffer.from(f.data.buffer, f.data.byteOffset, FRAME_MAX));
  }

  #drop(f: PendingFrame): void {
    this.#pending.delete(f.key);
    this.#bytes -= f.capLen;
    this.incomplete++;
    this.#release(f);
  }

  /** Drops frames older than the timeout. */
  sweep(now: number): void {
    for (const f of this.#pending.values()) {
      if (now - f.created < this.limits.timeoutMs) break;
      this.#drop(f);
    }
  }

  /** Drops the pending frames of a stream (its numbering restarted). */
  dropStream(stream: number): void {
    for (const f of this.#pending.values()) if (f.stream === stream) this.#drop(f);
  }

  /** Drops everything (at close). */
  dropAll(): void {
    for (const f of this.#pending.values()) this.#drop(f);
  }
}

