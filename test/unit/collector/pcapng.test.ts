import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CaptureFile } from '../../../src/collector/capture-file.ts';
import { Direction, PcapngWriter } from '../../../src/collector/pcapng.ts';
import { pattern } from '../wire/frames.ts';
import { blocks, options, readCapture, tempDir } from './helpers.ts';

describe('pcapng writer', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => ({ dir, cleanup } = await tempDir()));
  afterAll(async () => cleanup());

  it('writes well-formed blocks: SHB, IDB with name/description/tsresol, EPB with padding and epb_flags', () => {
    const chunks: Buffer[] = [];
    const w = new PcapngWriter((c) => chunks.push(c), { batchSize: 1 << 17 });
    w.sectionHeader({ userappl: 'podtap' });
    expect(w.addInterface({ name: 'demo/web-1', description: 'node a' })).toBe(0);
    for (let len = 1; len <= 9; len++) w.packet(0, 1, 2, pattern(len), 0, len, len + 100, len % 2 ? Direction.inbound : Direction.outbound);
    w.packet(0, 1, 2, pattern(5), 0, 5, 5);
    w.flush();
    const bs = blocks(Buffer.concat(chunks));
    expect(bs.map((b) => b.type)).toEqual([0x0a0d0d0a, 1, ...Array(10).fill(6)]);
    const shb = bs[0]!.body;
    expect(shb.readUInt32LE(0)).toBe(0x1a2b3c4d);
    expect(options(shb, 16)).toContainEqual([4, Buffer.from('podtap')]);
    const idb = bs[1]!.body;
    expect([idb.readUInt16LE(0), idb.readUInt32LE(4)]).toEqual([1, 0]); // Ethernet, no snap length
    expect(options(idb, 8)).toEqual([[2, Buffer.from('demo/web-1')], [3, Buffer.from('node a')], [9, Buffer.from([9])]]);
    for (let len = 1; len <= 9; len++) {
      const e = bs[1 + len]!.body;
      expect([e.readUInt32LE(0), e.readUInt32LE(4), e.readUInt32LE(8), e.readUInt32LE(12), e.readUInt32LE(16)]).toEqual([0, 1, 2, len, len + 100]);
      expect(e.subarray(20, 20 + len).equals(pattern(len))).toBe(true);
      const flags = options(e, 20 + ((len + 3) & ~3));
      expect(flags).toEqual([[2, Buffer.from([len % 2 ? 1 : 2, 0, 0, 0])]]);
    }
    expect(bs[11]!.body.length).toBe(20 + 8); // no options at all
  });

  it('batches are whole blocks, handed over when full', () => {
    const chunks: Buffer[] = [];
    const w = new PcapngWriter((c) => chunks.push(c), { batchSize: 1 << 17 });
    w.sectionHeader({ userappl: 'podtap' });
    w.addInterface({ name: 'x' });
    const big = pattern(65549);
    for (let i = 0; i < 5; i++) w.packet(0, 0, i, big, 0, big.length, big.length, Direction.outbound);
    w.flush();
    expect(chunks.length).toBeGreaterThan(1);
    for (const c of chunks) expect(() => blocks(c)).not.toThrow();
    expect(chunks.reduce((a, c) => a + c.length, 0)).toBe(w.bytes);
  });

  it('tshark and capinfos read the file: application, interfaces, nanoseconds, lengths, direction', async () => {
    const path = join(dir, 'w.pcapng');
    const f = CaptureFile.create(path, { batchSize: 1 << 17 });
    f.writer.sectionHeader({ userappl: 'podtap', os: 'Linux', hardware: 'test' });
    const a = f.writer.addInterface({ name: 'demo/web-1', description: 'node node-a, interface veth1' });
    const b = f.writer.addInterface({ name: 'demo/db-0' });
    const frames = [pattern(60, 1), pattern(65549, 2), pattern(61, 3), pattern(1, 4)];
    // 2025-11-25T19:46:40.123456789Z = 1764100000123456789 ns
    const ns = 1764100000123456789n;
    frames.forEach((fr, i) => {
      const t = ns + BigInt(i);
      f.writer.packet(i % 2 ? b : a, Number(t >> 32n), Number(t & 0xffffffffn), fr, 0, fr.length, fr.length + (i === 3 ? 999 : 0), i % 2 ? Direction.outbound : Direction.inbound);
    });
    await f.close();
    const packets = await readCapture(path);
    expect(packets.map((p) => [p.ifName, p.len, p.capLen, p.direction, p.epoch])).toEqual([
      ['demo/web-1', 60, 60, 1, '1764100000.123456789'],
      ['demo/db-0', 65549, 65549, 2, '1764100000.123456790'],
      ['demo/web-1', 61, 61, 1, '1764100000.123456791'],
      ['demo/db-0', 1000, 1, 2, '1764100000.123456792'],
    ]);
    packets.forEach((p, i) => expect(p.data.equals(frames[i]!)).toBe(true));
    const info = await execa('capinfos', [path]);
    expect(info.stdout).toMatch(/Capture application:\s+podtap/);
    expect(info.stdout).toMatch(/Number of interfaces in file: 2/);
    expect(info.stdout).toMatch(/Time precision = nanoseconds \(9\)/);
    expect(info.stdout).toMatch(/Description = node node-a, interface veth1/);
    expect((await readFile(path)).length).toBe(f.writer.bytes);
  });

  it('interface statistics blocks: every option where the spec puts it, and capinfos counts them per interface', async () => {
    const path = join(dir, 'isb.pcapng');
    const f = CaptureFile.create(path, { batchSize: 1 << 17 });
    f.writer.sectionHeader({ userappl: 'podtap 9.9.9' });
    const a = f.writer.addInterface({ name: 'demo/web-1', snaplen: 128 });
    const b = f.writer.addInterface({ name: 'demo/db-0', snaplen: 65549 });
    const ns = 1764100000123456789n;
    f.writer.packet(a, Number(ns >> 32n), Number(ns & 0xffffffffn), pattern(60), 0, 60, 60, Direction.inbound);
    f.writer.interfaceStatistics(a, ns + 5n, { startNs: ns - 7n, endNs: ns + 5n, received: 12, ifDropped: 3, osDropped: 2, delivered: 10, comment: 'podtap: a note' });
    f.writer.interfaceStatistics(b, ns + 5n, {});
    await f.close();
    const bs = blocks(await readFile(path));
    expect(bs.map((x) => x.type)).toEqual([0x0a0d0d0a, 1, 1, 6, 5, 5]);
    const isb = bs[4]!.body;
    expect([isb.readUInt32LE(0), isb.readUInt32LE(4), isb.readUInt32LE(8)]).toEqual([0, Number((ns + 5n) >> 32n), Number((ns + 5n) & 0xffffffffn)]);
    const o = new Map(options(isb, 12));
    const ts = (v: Buffer | undefined): bigint => (BigInt(v!.readUInt32LE(0)) << 32n) | BigInt(v!.readUInt32LE(4));
    expect(o.get(1)!.toString()).toBe('podtap: a note');
    expect([ts(o.get(2)), ts(o.get(3))]).toEqual([ns - 7n, ns + 5n]);
    expect([4, 5, 7, 8].map((code) => o.get(code)!.readBigUInt64LE(0))).toEqual([12n, 3n, 2n, 10n]);
    expect(bs[5]!.body.length).toBe(12); // no options: no end-of-options either
    // Wireshark's reader takes the blocks (a malformed ISB is an error to it) and counts one per interface
    const info = await execa('capinfos', ['-I', '-k', '-F', path]);
    expect(info.stdout.match(/Number of stat entries = 1/g)).toHaveLength(2);
    expect(info.stdout).toMatch(/Capture application:\s+podtap 9\.9\.9/);
    expect(info.stdout).toMatch(/Name = demo\/web-1\n\s+Encapsulation = Ethernet \(1 - ether\)\n\s+Capture length = 128/);
    expect(info.stdout).toMatch(/Capture length = 65549/);
    expect((await readCapture(path)).length).toBe(1);
  });

  it('never overwrites a file', async () => {
    const path = join(dir, 'exists.pcapng');
    await CaptureFile.create(path).close();
    expect(() => CaptureFile.create(path)).toThrow(expect.objectContaining({ code: 'EEXIST' }));
  });
});
