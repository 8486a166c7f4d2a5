/**
 * Torn tails. The collector appends whole pcapng blocks, but a crash (power
 * loss, kill -9 in the middle of a short write, a full disk) can leave a file
 * ending in part of a block, which tshark refuses to read past — or at all.
 * On start the collector checks the end of every capture file and cuts a torn
 * one back to its last complete block.
 *
 * Checking the end is cheap and enough: a complete file ends with a block's
 * trailing length L, and the block L bytes back starts with a known type and
 * the same length. Only a file that fails that check is walked block by block.
 */
import { open } from 'node:fs/promises';
import { BlockType } from './pcapng.ts';

const SHB = BlockType.shb;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;
/** Block types this collector writes (SHB, IDB, ISB, EPB); others end the walk of a file of ours. */
const KNOWN_TYPES = new Set<number>(Object.values(BlockType));

export type RepairOutcome =
  /** ends with a complete block */
  | { kind: 'whole'; size: number }
  /** was cut back to its last complete block */
  | { kind: 'truncated'; size: number; removedBytes: number }
  /** holds no complete section header: nothing to keep (removed by the caller) */
  | { kind: 'empty'; size: number }
  /** does not start with a little-endian section header: not ours, left alone */
  | { kind: 'foreign'; size: number };

/** Reads 32-bit little-endian words of a file through a window, for a sequential walk. */
class WordReader {
  readonly #fh: Awaited<ReturnType<typeof open>>;
  #buf = Buffer.alloc(1 << 22);
  #start = 0;
  #len = 0;
  constructor(fh: Awaited<ReturnType<typeof open>>) {
    this.#fh = fh;
  }

  async u32(pos: number): Promise<number> {
    if (pos < this.#start || pos + 4 > this.#start + this.#len) {
      const { bytesRead } = await this.#fh.read(this.#buf, 0, this.#buf.length, pos);
      this.#start = pos;
      this.#len = bytesRead;
      if (bytesRead < 4) throw new RangeError('read past the end');
    }
    return this.#buf.readUInt32LE(pos - this.#start);
  }
}

/** Whether the file of `size` bytes ends with a complete block (O(1): two small reads). */
async function tailIsWhole(r: WordReader, size: number): Promise<boolean> {
  if (size < 28 || size % 4 !== 0) return false;
  const len = await r.u32(size - 4);
  if (len < 12 || len % 4 !== 0 || len > size) return false;
  const start = size - len;
  return KNOWN_TYPES.has(await r.u32(start)) && (await r.u32(start + 4)) === len;
}

/** Length of the longest prefix of whole blocks, walking from the section header. */
async function wholePrefix(r: WordReader, size: number): Promise<number> {
  let pos = 0;
  while (pos + 12 <= size) {
    const type = await r.u32(pos);
    const len = await r.u32(pos + 4);
    if (!KNOWN_TYPES.has(type) || len < 12 || len % 4 !== 0 || pos + len > size) break;
    if (type !== SHB && pos === 0) break;
    if ((await r.u32(pos + len - 4)) !== len) break;
    pos += len;
  }
  return pos;
}

/**
 * Check a capture file and cut a torn tail. Safe on a file no one is writing.
 * A file whose first block is not a little-endian section header is reported
 * `foreign` and not touched.
 */
export async function repairCapture(path: string): Promise<RepairOutcome> {
  const fh = await open(path, 'r+');
  try {
    const size = (await fh.stat()).size;
    const r = new WordReader(fh);
    if (size < 12) return { kind: 'empty', size };
    if ((await r.u32(0)) !== SHB) return { kind: 'foreign', size };
    if ((await r.u32(8)) !== BYTE_ORDER_MAGIC) return { kind: 'foreign', size };
    if (await tailIsWhole(r, size)) return { kind: 'whole', size };
    const keep = await wholePrefix(r, size);
    if (keep === 0) return { kind: 'empty', size };
    await fh.truncate(keep);
    await fh.sync();
    return { kind: 'truncated', size: keep, removedBytes: size - keep };
  } finally {
    await fh.close();
  }
}
