/**
 * What the stored files say about themselves (issue 12): podtap's version in
 * the section header, each interface's snap length from its policy, a
 * comment on the packet after a sequence gap, and interface statistics
 * blocks when a file closes — through a real collector, read back with
 * tshark and capinfos.
 */
import { readFile } from 'node:fs/promises';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { SEQ_WINDOW } from '../../../src/collector/streams.ts';
import { podtapVersion } from '../../../src/util/version.ts';
import { encodeAnnouncement, monotonicRealtimePair, type Announcement } from '../../../src/wire/announce.ts';
import { FRAME_MAX } from '../../../src/wire/format.ts';
import { encodeFrame } from '../../helpers/encode.ts';
import { ipv4Frame } from '../wire/frames.ts';
import { blocks, options } from './helpers.ts';
import { startRunning, until, type Running } from './running.ts';

let r: Running | undefined;
afterEach(async () => {
  await r?.stop();
  r = undefined;
});

function announce(instance: number, policy: string, snapLength: number, ifindexes: number[]): Buffer {
  const a: Announcement = {
    v: 2, node: 'node-a', source: '127.0.0.1', sender: 'agent', senderId: 's', instance, tunnel: 'Geneve', snapLength,
    policy: { namespace: 'shop', name: policy, uid: 'u' }, clock: monotonicRealtimePair(),
    interfaces: ifindexes.map((i) => ({ ifindex: i, name: `veth${i}`, pod: { namespace: 'shop', name: `web-${i}` }, directions: ['Ingress', 'Egress'] })),
  };
  return encodeAnnouncement(a);
}

/** Frames numbered `seqs` on one stream of `instance` (CPU 0), each on interface `ifindex`. */
function frames(instance: number, ifindex: number, seqs: number[]): Buffer[] {
  return seqs.flatMap((seq) =>
    encodeFrame(ipv4Frame({ proto: 'UDP', payload: 100, seed: seq }), { instance, cpu: 0, seq, ifindex, tstamp: process.hrtime.bigint() }),
  );
}

const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);

/** The ISB options of each interface in `file`, by interface name. */
async function statistics(file: string): Promise<Map<string, Map<number, Buffer>>> {
  const bs = blocks(await readFile(file));
  const names = bs.filter((b) => b.type === 1).map((b) => options(b.body, 8).find(([code]) => code === 2)![1].toString());
  return new Map(bs.filter((b) => b.type === 5).map((b) => [names[b.body.readUInt32LE(0)]!, new Map(options(b.body, 12))]));
}

describe('annotations in stored files', () => {
  it('version, snap lengths, a comment after a sequence gap, and interface statistics on close', async () => {
    r = await startRunning({ ingest: { workers: 0 } });
    // 10..14 never sent; the gap is declared once the stream's window (SEQ_WINDOW frames) has passed them
    const gap = [...range(0, 10), ...range(15, 15 + SEQ_WINDOW + 20)];
    await r.send([
      announce(1, 'one-pod', 128, [11]), // one interface: its losses are its own
      announce(2, 'two-pods', 0, [21, 22]), // two: losses cannot be told apart
      ...frames(1, 11, gap),
      ...frames(2, 21, range(0, 5)),
      ...frames(2, 22, range(8, 10)), // 5..7 never sent
    ]);
    await until(() => r!.c.stats().written === gap.length + 7, 'every frame on disk');
    await r.c.close(); // the gaps are declared at the end of the streams at the latest; ISBs as the files close
    const [one, two] = ['one-pod', 'two-pods'].map((p) => r!.c.files().find((f) => f.includes(`/shop_${p}/`))!);

    const info = await execa('capinfos', ['-I', '-k', '-F', one!, two!]);
    expect(info.stdout.match(/Capture application:\s+podtap (\S+)/g)).toEqual(Array(2).fill(`Capture application: podtap ${podtapVersion()}`));
    expect(info.stdout).toMatch(/Name = shop\/web-11\n\s+Description = [^\n]*\n\s+Encapsulation = Ethernet \(1 - ether\)\n\s+Capture length = 128\n/);
    expect(info.stdout).toMatch(new RegExp(`Name = shop/web-21\\n\\s+Description = [^\\n]*\\n\\s+Encapsulation = Ethernet \\(1 - ether\\)\\n\\s+Capture length = ${FRAME_MAX}\\n`));
    expect(info.stdout.match(/Number of stat entries = 1/g)).toHaveLength(3);

    // the gap of instance 1 is told on the next packet written to its capture, by tshark
    const c = await execa('tshark', ['-r', one!, '-Y', 'frame.comment', '-T', 'fields', '-e', 'frame.number', '-e', 'frame.comment']);
    const comments = c.stdout.split('\n').filter(Boolean);
    expect(comments).toHaveLength(1);
    expect(comments[0]).toMatch(/^\d+\tpodtap: 5 frame\(s\) never arrived from node node-a \(data plane 1, CPU 0, numbers 10\.\.14\)$/);
    // on the packet right after the one that moved the window past them (frame 14 + SEQ_WINDOW, the packet numbered 10 + SEQ_WINDOW)
    expect(Number(comments[0]!.split('\t')[0])).toBe(10 + SEQ_WINDOW + 1);

    // statistics per interface: the lone interface owns its losses, the two others do not
    const s1 = (await statistics(one!)).get('shop/web-11')!;
    expect([4, 5, 7, 8].map((code) => s1.get(code)?.readBigUInt64LE(0))).toEqual([BigInt(gap.length), 5n, 0n, BigInt(gap.length)]);
    const start = (s1.get(2)!.readUInt32LE(0) * 2 ** 32 + s1.get(2)!.readUInt32LE(4)) / 1e9;
    const end = (s1.get(3)!.readUInt32LE(0) * 2 ** 32 + s1.get(3)!.readUInt32LE(4)) / 1e9;
    expect(start).toBeLessThanOrEqual(end);
    expect(Math.abs(end - Date.now() / 1000)).toBeLessThan(60);
    const s2 = await statistics(two!);
    for (const name of ['shop/web-21', 'shop/web-22']) {
      const st = s2.get(name)!;
      expect(st.has(5)).toBe(false);
      expect(st.get(1)!.toString()).toMatch(/^podtap: 3 frame\(s\) of this capture never arrived while this file was open/);
    }
  });
});
