/**
 * How ingest workers hand rebuilt frames to the writer thread: records packed
 * into ArrayBuffers that are transferred (not copied) with postMessage, and
 * transferred back empty for reuse. The bytes a worker has handed over and
 * not got back are bounded: beyond the bound the worker drops frames and
 * counts them (`handoffDropped`), so a writer that falls behind costs counted
 * frames, never unbounded memory, and never blocks a socket.
 *
 * Records (little-endian, 8-byte aligned):
 *   frame/vxlan: u32 length, u8 type, u8 flags, u16 instance, u32 source id,
 *                u32 ifindex (VNI), u32 ts hi, u32 ts lo, u32 orig_len,
 *                u32 data length, f64 receive time (ms), data
 *   source:      u32 length, u8 type, 3 pad, u32 source id, u16 address length, address
 *   reset:       u32 length, u8 type: forget every source id
 *   gap:         u32 length, u8 type, 3 pad, u32 source id, u16 instance, u16 cpu,
 *                u32 count, u32 first, u32 last (a sequence gap: never dropped
 *                for the in-flight bound, it is a few bytes and a count)
 */
import type { Announcement, AnnouncementAuth } from '../wire/announce.ts';
import { emptyFrameRecord, type FrameRecord, type GapRecord, type IngestSink } from './ingest.ts';

const REC_FRAME = 1;
const REC_VXLAN = 2;
const REC_SOURCE = 3;
const REC_RESET = 4;
const REC_GAP = 5;
const GAP_LEN = 32;
const HDR = 40;
const MAX_IDS = 65536;

const pad8 = (n: number): number => (n + 7) & ~7;

export interface HandoffOptions {
  /** bytes per batch (default 512 KiB) */
  batchBytes?: number;
  /** bytes handed over and not yet returned, beyond which frames are dropped (default 64 MiB) */
  maxInflightBytes?: number;
}

export type PostBatch = (buf: ArrayBuffer, len: number, frames: number, firstRecvMs: number) => void;

export class HandoffEncoder implements IngestSink {
  readonly #post: PostBatch;
  readonly #onAnnounce: (address: string, a: Announcement, auth: AnnouncementAuth | undefined) => void;
  readonly #batchBytes: number;
  readonly #maxInflight: number;
  readonly #free: ArrayBuffer[] = [];
  readonly #ids = new Map<string, number>();
  /** a VXLAN frame as a record: the VNI in ifindex; no instance, flags or capture time */
  readonly #vxlanRecord: FrameRecord = emptyFrameRecord();
  #nextId = 0;
  #ab: ArrayBuffer;
  #buf: Buffer;
  #pos = 0;
  #frames = 0;
  #first = 0;
  #inflight = 0;
  /** frames dropped because the writer had not taken back enough */
  dropped = 0;

  constructor(post: PostBatch, onAnnounce: (address: string, a: Announcement, auth: AnnouncementAuth | undefined) => void, opts: HandoffOptions = {}) {
    this.#post = post;
    this.#onAnnounce = onAnnounce;
    this.#batchBytes = opts.batchBytes ?? 512 << 10;
    this.#maxInflight = opts.maxInflightBytes ?? 64 << 20;
    this.#ab = new ArrayBuffer(this.#batchBytes);
    this.#buf = Buffer.from(this.#ab);
  }

  /** Bytes in the batch being filled. */
  get pending(): number {
    return this.#pos;
  }

  /** Wall-clock ms of the first frame in the batch being filled. */
  get firstRecvMs(): number {
    return this.#first;
  }

  /** Bytes handed over and not returned yet. */
  get inflight(): number {
    return this.#inflight;
  }

  announce(address: string, a: Announcement, auth: AnnouncementAuth | undefined): void {
    this.#onAnnounce(address, a, auth);
  }

  frame(f: FrameRecord): void {
    this.#record(REC_FRAME, f);
  }

  vxlan(address: string, vni: number, data: Buffer, off: number, len: number, recvMs: number): void {
    const v = this.#vxlanRecord;
    v.address = address;
    v.ifindex = vni;
    v.origLen = len;
    v.data = data;
    v.off = off;
    v.len = len;
    v.recvMs = recvMs;
    this.#record(REC_VXLAN, v);
  }

  gap(g: GapRecord): void {
    const id = this.#ids.get(g.address) ?? this.#newSource(g.address);
    this.#reserve(GAP_LEN);
    const b = this.#buf;
    const p = this.#pos;
    b.writeUInt32LE(GAP_LEN, p);
    b[p + 4] = REC_GAP;
    b.writeUInt32LE(id, p + 8);
    b.writeUInt16LE(g.instance, p + 12);
    b.writeUInt16LE(g.cpu, p + 14);
    b.writeUInt32LE(g.count >>> 0, p + 16);
    b.writeUInt32LE(g.first >>> 0, p + 20);
    b.writeUInt32LE(g.last >>> 0, p + 24);
    this.#pos = p + GAP_LEN;
  }

  #record(type: number, f: FrameRecord): void {
    const { address, data, off, len } = f;
    const need = HDR + pad8(len);
    if (this.#inflight + this.#pos + need > this.#maxInflight) {
      this.dropped++;
      return;
    }
    const id = this.#ids.get(address) ?? this.#newSource(address);
    this.#reserve(need);
    const b = this.#buf;
    const p = this.#pos;
    b.writeUInt32LE(need, p);
    b[p + 4] = type;
    b[p + 5] = f.flags;
    b.writeUInt16LE(f.instance, p + 6);
    b.writeUInt32LE(id, p + 8);
    b.writeUInt32LE(f.ifindex >>> 0, p + 12);
    b.writeUInt32LE(f.tsHi >>> 0, p + 16);
    b.writeUInt32LE(f.tsLo >>> 0, p + 20);
    b.writeUInt32LE(f.origLen, p + 24);
    b.writeUInt32LE(len, p + 28);
    b.writeDoubleLE(f.recvMs, p + 32);
    data.copy(b, p + HDR, off, off + len);
    if (this.#frames === 0) this.#first = f.recvMs;
    this.#frames++;
    this.#pos = p + need;
  }

  #newSource(address: string): number {
    if (this.#ids.size >= MAX_IDS) {
      this.#ids.clear();
      this.#reserve(8);
      this.#buf.writeUInt32LE(8, this.#pos);
      this.#buf[this.#pos + 4] = REC_RESET;
      this.#pos += 8;
    }
    const id = this.#nextId++ >>> 0;
    this.#ids.set(address, id);
    const a = Buffer.from(address, 'utf8');
    const need = pad8(16 + a.length);
    this.#reserve(need);
    const b = this.#buf;
    b.writeUInt32LE(need, this.#pos);
    b[this.#pos + 4] = REC_SOURCE;
    b.writeUInt32LE(id, this.#pos + 8);
    b.writeUInt16LE(a.length, this.#pos + 12);
    a.copy(b, this.#pos + 16);
    this.#pos += need;
    return id;
  }

  #reserve(n: number): void {
    if (this.#pos + n <= this.#ab.byteLength) return;
    this.flush();
    if (n > this.#ab.byteLength) {
      this.#ab = new ArrayBuffer(n);
      this.#buf = Buffer.from(this.#ab);
    }
  }

  /** Hands the batch being filled to the writer (no-op when empty). */
  flush(): void {
    if (this.#pos === 0) return;
    const ab = this.#ab;
    const len = this.#pos;
    const frames = this.#frames;
    this.#inflight += len;
    this.#ab = this.#free.pop() ?? new ArrayBuffer(this.#batchBytes);
    this.#buf = Buffer.from(this.#ab);
    this.#pos = 0;
    this.#frames = 0;
    this.#post(ab, len, frames, this.#first);
  }

  /** The writer is done with a batch of `len` bytes: reuse its buffer. */
  recycle(ab: ArrayBuffer, len: number): void {
    this.#inflight -= len;
    if (ab.byteLength === this.#batchBytes && this.#free.length < 8) this.#free.push(ab);
  }
}

/** The writer's side: turns a batch back into sink calls. One per worker (source ids are per worker). */
export class HandoffDecoder {
  readonly #names = new Map<number, string>();
  readonly #frame: FrameRecord = emptyFrameRecord();

  /** Returns the number of frames decoded. */
  decode(buf: Buffer, len: number, sink: IngestSink): number {
    let frames = 0;
    for (let p = 0; p + 8 <= len; ) {
      const n = buf.readUInt32LE(p);
      const type = buf[p + 4]!;
      if (n < 8 || p + n > len) throw new RangeError(`handoff record of ${n} bytes at ${p} overruns the batch`);
      if (type === REC_FRAME || type === REC_VXLAN) {
        const address = this.#names.get(buf.readUInt32LE(p + 8));
        if (address === undefined) throw new RangeError('handoff frame of an unknown source');
        const dlen = buf.readUInt32LE(p + 28);
        const recvMs = buf.readDoubleLE(p + 32);
        if (type === REC_FRAME) {
          const f = this.#frame;
          f.address = address;
          f.instance = buf.readUInt16LE(p + 6);
          f.ifindex = buf.readUInt32LE(p + 12);
          f.flags = buf[p + 5]!;
          f.tsHi = buf.readUInt32LE(p + 16);
          f.tsLo = buf.readUInt32LE(p + 20);
          f.origLen = buf.readUInt32LE(p + 24);
          f.data = buf;
          f.off = p + HDR;
          f.len = dlen;
          f.recvMs = recvMs;
          sink.frame(f);
        } else {
          sink.vxlan(address, buf.readUInt32LE(p + 12), buf, p + HDR, dlen, recvMs);
        }
        frames++;
      } else if (type === REC_SOURCE) {
        const alen = buf.readUInt16LE(p + 12);
        this.#names.set(buf.readUInt32LE(p + 8), buf.toString('utf8', p + 16, p + 16 + alen));
      } else if (type === REC_GAP) {
        const address = this.#names.get(buf.readUInt32LE(p + 8));
        if (address === undefined) throw new RangeError('handoff gap of an unknown source');
        sink.gap({
          address, instance: buf.readUInt16LE(p + 12), cpu: buf.readUInt16LE(p + 14), count: buf.readUInt32LE(p + 16),
          first: buf.readUInt32LE(p + 20), last: buf.readUInt32LE(p + 24),
        });
      } else if (type === REC_RESET) {
        this.#names.clear();
      } else {
        throw new RangeError(`unknown handoff record type ${type}`);
      }
      p += n;
    }
    return frames;
  }
}
