/**
 * Test helpers: run datagrams through the collector pipeline into a pcapng
 * file, and read the file back with tshark (a reader nobody here wrote).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { CaptureFile } from '../../../src/collector/capture-file.ts';
import { Pipeline, type PipelineOptions, type PipelineStats } from '../../helpers/pipeline.ts';

export interface Datagram {
  buf: Buffer;
  address: string;
}

export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'podtap-collector-test-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Feed datagrams to a fresh pipeline writing `file`; returns the final stats. */
export async function runPipeline(file: string, datagrams: Iterable<Datagram>, opts: PipelineOptions = { mode: 'geneve' }): Promise<PipelineStats> {
  const out = CaptureFile.create(file);
  out.writer.sectionHeader({ userappl: 'podtap' });
  const p = new Pipeline(out.writer, opts);
  for (const d of datagrams) p.handle(d.buf, d.address);
  p.finish();
  await out.close();
  return p.stats();
}

/** tshark's stderr minus its warning about running as root. */
function complaints(stderr: string): string {
  return stderr.split('\n').filter((l) => l.trim() && !l.includes('This could be dangerous')).join('\n');
}

export interface ReadPacket {
  len: number;
  capLen: number;
  ifName: string;
  ifDescription: string;
  /** 1 inbound, 2 outbound, 0 none */
  direction: number;
  /** seconds since the epoch, as tshark prints it (ns precision) */
  epoch: string;
  data: Buffer;
}

/**
 * Every packet of a capture as tshark reads it: the fields, and the bytes via
 * tshark's own conversion to classic pcap. Throws when tshark complains.
 */
export async function readCapture(file: string): Promise<ReadPacket[]> {
  const fields = await execa('tshark', [
    '-r', file, '-n', '-T', 'fields', '-E', 'separator=|', '-E', 'occurrence=f',
    '-e', 'frame.len', '-e', 'frame.cap_len', '-e', 'frame.interface_name', '-e', 'frame.interface_description',
    '-e', 'frame.packet_flags_direction', '-e', 'frame.time_epoch',
  ]);
  if (complaints(fields.stderr)) throw new Error(`tshark complained: ${fields.stderr}`);
  const rows = fields.stdout.split('\n').filter((l) => l.length > 0).map((l) => l.split('|'));
  const pcap = `${file}.pcap`;
  const conv = await execa('tshark', ['-r', file, '-F', 'pcap', '-w', pcap]);
  if (complaints(conv.stderr)) throw new Error(`tshark complained: ${conv.stderr}`);
  const frames = parseClassicPcap(await readFile(pcap));
  await rm(pcap);
  if (frames.length !== rows.length) throw new Error(`tshark: ${rows.length} rows but ${frames.length} frames`);
  return rows.map((r, i) => ({
    len: Number(r[0]),
    capLen: Number(r[1]),
    ifName: r[2] ?? '',
    ifDescription: r[3] ?? '',
    direction: r[4] ? Number(r[4]) : 0,
    epoch: r[5] ?? '',
    data: frames[i]!,
  }));
}

function parseClassicPcap(b: Buffer): Buffer[] {
  const magic = b.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  const u32 = (o: number): number => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const out: Buffer[] = [];
  for (let p = 24; p + 16 <= b.length; ) {
    const incl = u32(p + 8);
    out.push(b.subarray(p + 16, p + 16 + incl));
    p += 16 + incl;
  }
  return out;
}

/** Deterministic shuffle (xorshift), so a failing order can be reproduced. */
export function shuffle<T>(items: T[], seed = 12345): T[] {
  const a = [...items];
  let x = seed >>> 0 || 1;
  for (let i = a.length - 1; i > 0; i--) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const j = x % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** Walks the blocks: every length a multiple of 4 and repeated at the end. */
export function blocks(b: Buffer): { type: number; body: Buffer }[] {
  const out: { type: number; body: Buffer }[] = [];
  for (let p = 0; p < b.length; ) {
    const type = b.readUInt32LE(p);
    const len = b.readUInt32LE(p + 4);
    if (len % 4 !== 0 || len < 12 || p + len > b.length) throw new Error(`bad block length ${len} at ${p}`);
    if (b.readUInt32LE(p + len - 4) !== len) throw new Error(`trailing length differs at ${p}`);
    out.push({ type, body: b.subarray(p + 8, p + len - 4) });
    p += len;
  }
  return out;
}

/** Options from `at` in a block body: [code, value] until opt_endofopt, which must be there. */
export function options(body: Buffer, at: number): [number, Buffer][] {
  const out: [number, Buffer][] = [];
  for (let p = at; ; ) {
    if (p + 4 > body.length) throw new Error('options not terminated');
    const code = body.readUInt16LE(p);
    const len = body.readUInt16LE(p + 2);
    if (code === 0) {
      if (len !== 0 || p + 4 !== body.length) throw new Error('opt_endofopt not last');
      return out;
    }
    out.push([code, body.subarray(p + 4, p + 4 + len)]);
    p += 4 + ((len + 3) & ~3);
  }
}
