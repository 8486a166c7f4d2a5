/**
 * A pcapng writer (draft-ietf-opsawg-pcapng): one section, interface blocks
 * added as interfaces appear, enhanced packet blocks with nanosecond
 * timestamps and the direction in epb_flags. Blocks are assembled straight
 * into a large batch buffer that is handed to the output whole, so a packet
 * costs one copy and no allocation.
 */
/** The block types this writer produces (repair.ts recognises exactly these). */
export const BlockType = { shb: 0x0a0d0d0a, idb: 0x00000001, isb: 0x00000005, epb: 0x00000006 } as const;
const SHB = BlockType.shb;
const IDB = BlockType.idb;
const ISB = BlockType.isb;
const EPB = BlockType.epb;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const OPT_END = 0;
const OPT_COMMENT = 1;
const SHB_HARDWARE = 2;
const SHB_OS = 3;
const SHB_USERAPPL = 4;
const IF_NAME = 2;
const IF_DESCRIPTION = 3;
const IF_TSRESOL = 9;
const EPB_FLAGS = 2;
const ISB_STARTTIME = 2;
const ISB_ENDTIME = 3;
const ISB_IFRECV = 4;
const ISB_IFDROP = 5;
const ISB_OSDROP = 7;
const ISB_USRDELIV = 8;

export const LINKTYPE_ETHERNET = 1;

/** epb_flags bits 0-1 (inbound / outbound), from the pod's point of view. */
export const Direction = { unknown: 0, inbound: 1, outbound: 2 } as const;

/** EPB: 28 bytes of fields, the data, options (epb_flags: 8 bytes; end of options: 4), trailing length. */
const EPB_FIXED = 28;
const EPB_FLAGS_OPT = 8;

const pad4 = (n: number): number => (n + 3) & ~3;

export interface InterfaceInfo {
  name: string;
  description?: string;
  linktype?: number;
  /** 0 = no limit */
  snaplen?: number;
}

/** What an interface statistics block says (pcapng §4.6); counts are of this section. */
export interface InterfaceStats {
  /** ns since the epoch: when capture on the interface started and ended */
  startNs?: bigint;
  endNs?: bigint;
  /** packets the interface received (isb_ifrecv) */
  received?: number;
  /** packets lost before they reached the capturer (isb_ifdrop) */
  ifDropped?: number;
  /** packets the capturing system dropped (isb_osdrop) */
  osDropped?: number;
  /** packets written (isb_usrdeliv) */
  delivered?: number;
  comment?: string;
}

/**
 * Receives finished batches of whole blocks, with the number of packets in
 * each; owns them once called (the writer never touches them again).
 */
export type BatchOutput = (chunk: Buffer, packets: number) => void;

export class PcapngWriter {
  readonly #output: BatchOutput;
  readonly #batchSize: number;
  #buf: Buffer;
  #pos = 0;
  #interfaces = 0;
  #bytes = 0;
  #packets = 0;
  #batchPackets = 0;
  /** interface ids by the caller's key (see interfaceId) */
  readonly #ids = new Map<number, number>();

  constructor(output: BatchOutput, opts: { batchSize?: number } = {}) {
    this.#output = output;
    this.#batchSize = Math.max(opts.batchSize ?? 1 << 20, 1 << 17);
    this.#buf = Buffer.allocUnsafeSlow(this.#batchSize);
  }

  /** Bytes of blocks produced so far (flushed or not). */
  get bytes(): number {
    return this.#bytes;
  }

  get interfaceCount(): number {
    return this.#interfaces;
  }

  /** Packets written so far (flushed or not). */
  get packets(): number {
    return this.#packets;
  }

  /** The id of the interface added under `key`, if any. */
  interfaceId(key: number): number | undefined {
    return this.#ids.get(key);
  }

  /** Bytes waiting in the current batch. */
  get buffered(): number {
    return this.#pos;
  }

  #reserve(n: number): void {
    if (this.#pos + n > this.#buf.length) {
      this.flush();
      if (n > this.#buf.length) this.#buf = Buffer.allocUnsafeSlow(n);
    }
  }

  /** Hand the current batch to the output (no-op when empty). */
  flush(): void {
    if (this.#pos === 0) return;
    const chunk = this.#buf.subarray(0, this.#pos);
    const packets = this.#batchPackets;
    this.#buf = Buffer.allocUnsafeSlow(this.#batchSize);
    this.#pos = 0;
    this.#batchPackets = 0;
    this.#output(chunk, packets);
  }

  /** Writes one block whose body (between the length fields) is `body`. */
  #block(type: number, body: Buffer): void {
    const total = 12 + body.length;
    this.#reserve(total);
    const b = this.#buf;
    let p = this.#pos;
    b.writeUInt32LE(type, p);
    b.writeUInt32LE(total, p + 4);
    body.copy(b, p + 8);
    p += 8 + body.length;
    b.writeUInt32LE(total, p);
    this.#pos = p + 4;
    this.#bytes += total;
  }

  sectionHeader(info: { userappl: string; os?: string; hardware?: string }): void {
    const fixed = Buffer.alloc(16);
    fixed.writeUInt32LE(BYTE_ORDER_MAGIC, 0);
    fixed.writeUInt16LE(1, 4); // major
    fixed.writeUInt16LE(0, 6); // minor
    fixed.writeBigInt64LE(-1n, 8); // section length not specified
    const opts: Buffer[] = [];
    if (info.hardware) opts.push(stringOption(SHB_HARDWARE, info.hardware));
    if (info.os) opts.push(stringOption(SHB_OS, info.os));
    opts.push(stringOption(SHB_USERAPPL, info.userappl), endOfOptions());
    this.#block(SHB, Buffer.concat([fixed, ...opts]));
  }

  /** Adds an interface description block; returns its interface id. `key` remembers it for interfaceId(). */
  addInterface(info: InterfaceInfo, key?: number): number {
    const fixed = Buffer.alloc(8);
    fixed.writeUInt16LE(info.linktype ?? LINKTYPE_ETHERNET, 0);
    fixed.writeUInt32LE(info.snaplen ?? 0, 4);
    const tsresol = Buffer.alloc(8);
    tsresol.writeUInt16LE(IF_TSRESOL, 0);
    tsresol.writeUInt16LE(1, 2);
    tsresol[4] = 9; // 10^-9 s: nanoseconds
    const opts = [stringOption(IF_NAME, info.name)];
    if (info.description) opts.push(stringOption(IF_DESCRIPTION, info.description));
    opts.push(tsresol, endOfOptions());
    this.#block(IDB, Buffer.concat([fixed, ...opts]));
    if (key !== undefined) this.#ids.set(key, this.#interfaces);
    return this.#interfaces++;
  }

  /**
   * Writes an interface statistics block for interface `ifId`, stamped `atNs`
   * (ns since the epoch, as the interface's tsresol says).
   */
  interfaceStatistics(ifId: number, atNs: bigint, st: InterfaceStats): void {
    const fixed = Buffer.alloc(12);
    fixed.writeUInt32LE(ifId, 0);
    writeTimestamp(fixed, 4, atNs);
    const opts: Buffer[] = [];
    if (st.comment !== undefined) opts.push(stringOption(OPT_COMMENT, st.comment));
    if (st.startNs !== undefined) opts.push(timestampOption(ISB_STARTTIME, st.startNs));
    if (st.endNs !== undefined) opts.push(timestampOption(ISB_ENDTIME, st.endNs));
    if (st.received !== undefined) opts.push(u64Option(ISB_IFRECV, st.received));
    if (st.ifDropped !== undefined) opts.push(u64Option(ISB_IFDROP, st.ifDropped));
    if (st.osDropped !== undefined) opts.push(u64Option(ISB_OSDROP, st.osDropped));
    if (st.delivered !== undefined) opts.push(u64Option(ISB_USRDELIV, st.delivered));
    if (opts.length > 0) opts.push(endOfOptions());
    this.#block(ISB, Buffer.concat([fixed, ...opts]));
  }

  /**
   * Writes an enhanced packet block with the packet data src[off, off+len).
   * ts is nanoseconds since the epoch in two 32-bit halves. direction
   * undefined leaves epb_flags out; a comment becomes opt_comment (Wireshark
   * shows it as the packet's comment). Returns the block's size.
   */
  packet(ifId: number, tsHi: number, tsLo: number, src: Buffer, off: number, len: number, origLen: number, direction?: number, comment?: string): number {
    const padded = pad4(len);
    const note = comment === undefined ? undefined : stringOption(OPT_COMMENT, comment);
    const hasOpts = direction !== undefined || note !== undefined;
    const total = EPB_FIXED + padded + (direction === undefined ? 0 : EPB_FLAGS_OPT) + (note?.length ?? 0) + (hasOpts ? 4 : 0) + 4;
    this.#reserve(total);
    const b = this.#buf;
    let p = this.#pos;
    b.writeUInt32LE(EPB, p);
    b.writeUInt32LE(total, p + 4);
    b.writeUInt32LE(ifId, p + 8);
    b.writeUInt32LE(tsHi >>> 0, p + 12);
    b.writeUInt32LE(tsLo >>> 0, p + 16);
    b.writeUInt32LE(len, p + 20);
    b.writeUInt32LE(origLen, p + 24);
    p += EPB_FIXED;
    src.copy(b, p, off, off + len);
    p += len;
    for (; p & 3; p++) b[p] = 0;
    if (direction !== undefined) {
      b.writeUInt32LE(EPB_FLAGS | (4 << 16), p); // code, length 4 (LE: code first)
      b.writeUInt32LE(direction, p + 4);
      p += EPB_FLAGS_OPT;
    }
    if (note) {
      note.copy(b, p);
      p += note.length;
    }
    if (hasOpts) {
      b.writeUInt32LE(OPT_END, p);
      p += 4;
    }
    b.writeUInt32LE(total, p);
    this.#pos = p + 4;
    this.#bytes += total;
    this.#packets++;
    this.#batchPackets++;
    return total;
  }
}

function stringOption(code: number, value: string): Buffer {
  const v = Buffer.from(value, 'utf8');
  const len = Math.min(v.length, 0xfff0);
  const b = Buffer.alloc(4 + pad4(len));
  b.writeUInt16LE(code, 0);
  b.writeUInt16LE(len, 2);
  v.copy(b, 4, 0, len);
  return b;
}

/** A timestamp as pcapng stores it: the upper and the lower 32 bits, each little-endian. */
function writeTimestamp(b: Buffer, at: number, ns: bigint): void {
  b.writeUInt32LE(Number((ns >> 32n) & 0xffffffffn), at);
  b.writeUInt32LE(Number(ns & 0xffffffffn), at + 4);
}

function timestampOption(code: number, ns: bigint): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16LE(code, 0);
  b.writeUInt16LE(8, 2);
  writeTimestamp(b, 4, ns);
  return b;
}

function u64Option(code: number, n: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16LE(code, 0);
  b.writeUInt16LE(8, 2);
  b.writeBigUInt64LE(BigInt(n), 4);
  return b;
}

function endOfOptions(): Buffer {
  return Buffer.alloc(4);
}
