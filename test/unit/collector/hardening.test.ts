/**
 * What a collector on the network gets that it did not ask for. Each case
 * sends it through a real socket to a collector with ingest workers and an
 * install secret, then checks that it was counted under the right name and
 * that the collector still serves: /healthz answers and a good frame sent
 * afterwards reaches the capture file.
 */
import { createSocket, type Socket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CollectorStats } from '../../../src/collector/collector.ts';
import { MALFORMED_REASONS, META_LEN, MetaOff, type MalformedReason } from '../../../src/wire/format.ts';
import { encodeFrame } from '../../helpers/encode.ts';
import { ipv4Frame, pattern } from '../wire/frames.ts';
import { FrameSource, announcement, rawAnnouncement, sendAll, startRunning, until, type Running } from './running.ts';

const SECRET = 'install-secret';
const POLICY = { namespace: 'shop', name: 'web-debug' };
const META = 12;
const INNER = META + META_LEN;

let r: Running;
let stranger: Socket;
const src = new FrameSource();
/** the agent's own announcement, admitted at the start (the replay cases send it again) */
let agentAnnouncement: Buffer;

beforeAll(async () => {
  r = await startRunning({
    ingest: { workers: 2, secret: SECRET, reassembly: { maxFrames: 256, maxBytes: 4 << 20, timeoutMs: 500 } },
    router: { limits: { interfacesPerSource: 64 } },
  });
  stranger = createSocket('udp4');
  await new Promise<void>((res) => stranger.bind(0, '127.0.0.2', () => res()));
  agentAnnouncement = announcement(POLICY, [{ ifindex: 11, namespace: 'shop', pod: 'web-1' }], { secret: SECRET });
  await r.send([agentAnnouncement]);
  // (admission counts at once; the workers report their counts every 250 ms)
  await until(() => r.c.stats().announcements === 1 && r.c.stats().grants === 1 && r.c.stats().received === 1, 'the agent announcement');
});
afterAll(async () => {
  stranger.close();
  await r.stop();
});

/** An announcement's JSON with some fields changed (its MAC is made for it by rawAnnouncement). */
function rawJson(over: Record<string, unknown>): string {
  return JSON.stringify({
    v: 2, node: 'node-a', source: '127.0.0.1', sender: 'agent', senderId: 's', instance: 1, tunnel: 'Geneve', policy: null,
    clock: { monoNs: '1', realtimeNs: '2' }, interfaces: [], ...over,
  });
}

function mutate(d: Buffer, f: (b: Buffer) => void): Buffer {
  const b = Buffer.from(d);
  f(b);
  return b;
}

type Delta = Partial<Record<MalformedReason, number>> & Partial<Pick<CollectorStats, 'duplicates' | 'overlaps' | 'incomplete' | 'late' | 'rebuilt' | 'written'>>;

interface Case {
  description: string;
  input: () => { datagrams: Buffer[]; from?: 'stranger'; settle?: number };
  expected: Delta;
}

const cases: Case[] = [
  { description: 'foreign UDP: a DNS query', input: () => ({ datagrams: [Buffer.from('12340100000100000000000003777777076578616d706c6503636f6d0000010001', 'hex')] }), expected: { 'bad-options': 1 } },
  { description: 'foreign UDP: text', input: () => ({ datagrams: [Buffer.from('GET / HTTP/1.1\r\n\r\n')] }), expected: { 'bad-version': 1 } },
  { description: 'empty datagram', input: () => ({ datagrams: [Buffer.alloc(0)] }), expected: { short: 1 } },
  { description: 'truncated piece', input: () => ({ datagrams: [src.frames(1, { ifindex: 11 })[0]!.subarray(0, 40)] }), expected: { 'bad-options': 1 } },
  {
    description: 'truncated inner frame (WHOLE piece shorter than its frame)',
    input: () => ({ datagrams: [src.frames(1, { ifindex: 11 })[0]!.subarray(0, INNER + 30)] }),
    expected: { 'outside-frame': 1 },
  },
  {
    description: 'oversized: the largest UDP payload, claiming a 70000-byte frame',
    input: () => ({
      datagrams: [mutate(Buffer.concat([src.frames(1, { ifindex: 11 })[0]!, pattern(65_507 - 300)]).subarray(0, 65_507), (b) => {
        b.writeUInt32BE(70_000, META + MetaOff.origLen);
        b.writeUInt32BE(70_000, META + MetaOff.capLen);
      })],
    }),
    expected: { 'bad-lengths': 1 },
  },
  {
    description: 'a piece reaching past its frame',
    input: () => ({ datagrams: [mutate(src.frames(1, { ifindex: 11, payload: 5000 })[1]!, (b) => b.writeUInt32BE(5000, META + MetaOff.pieceOff))] }),
    // (its sequence number was never seen: counted lost once the stream moves past it)
    expected: { 'outside-frame': 1 },
  },
  { description: 'unknown metadata version', input: () => ({ datagrams: [mutate(src.frames(1, { ifindex: 11 })[0]!, (b) => (b[META + MetaOff.version] = 9))] }), expected: { 'meta-version': 1 } },
  {
    description: 'replayed: every datagram of 3 frames twice',
    input: () => {
      const ds = src.frames(3, { ifindex: 11, payload: 3000 });
      return { datagrams: [...ds, ...ds] };
    },
    expected: { duplicates: 9, rebuilt: 3, written: 3 },
  },
  {
    description: 'replayed after the sequence window: late',
    input: () => {
      const old = src.frames(1, { ifindex: 11, cpu: 1 });
      return { datagrams: [...old, ...src.frames(1100, { ifindex: 11, cpu: 1, payload: 20 }), ...old] };
    },
    expected: { late: 1, rebuilt: 1101, written: 1101 },
  },
  {
    description: 'a forged sequence number far ahead (and a far-future timestamp), then the real frames: none late',
    input: () => {
      const forged = encodeFrame(ipv4Frame({ proto: 'UDP', payload: 100, seed: 9 }), {
        instance: 1, cpu: 6, ifindex: 11, seq: 0x40000000, tstamp: process.hrtime.bigint() + 10n ** 15n,
      });
      return { datagrams: [...src.frames(5, { ifindex: 11, cpu: 6 }), ...forged, ...src.frames(50, { ifindex: 11, cpu: 6 })] };
    },
    // (the forged frame itself came on an accepted stream: it is written too)
    expected: { rebuilt: 56, written: 56 },
  },
  {
    description: 'overlapping pieces: a piece shifted by 8 bytes after the real one',
    input: () => {
      const ps = src.frames(1, { ifindex: 11, payload: 6000 });
      const shifted = mutate(ps[1]!, (b) => b.writeUInt32BE(b.readUInt32BE(META + MetaOff.pieceOff) + 8, META + MetaOff.pieceOff));
      return { datagrams: [ps[0]!, ps[1]!, shifted, ...ps.slice(2)] };
    },
    expected: { overlaps: 1, rebuilt: 1, written: 1 },
  },
  {
    description: 'a fragment flood: first pieces of 2000 frames that never complete',
    input: () => ({ datagrams: Array.from({ length: 2000 }, (_, k) => src.frames(1, { ifindex: 11, cpu: 2, payload: 30_000 + (k % 7) })[0]!), settle: 900 }),
    // memory bounded: beyond 256 frames (or 4 MiB) the oldest go; the rest time out
    expected: { incomplete: 2000 },
  },
  {
    description: 'unknown interface ids: written under <address>/if<N>, then the limit',
    input: () => ({ datagrams: Array.from({ length: 70 }, (_, k) => src.frames(1, { ifindex: 1000 + k, cpu: 3 })).flat() }),
    // 64 interfaces per source: the one announced and 63 new ones
    expected: { rebuilt: 70, written: 63, 'too-many': 7 },
  },
  { description: 'data from an address that never announced', input: () => ({ datagrams: src.frames(2, { ifindex: 11, cpu: 4 }), from: 'stranger' }), expected: { unannounced: 2 } },
  {
    description: 'an announcement signed under a guessed secret, then its data',
    input: () => ({
      datagrams: [announcement(POLICY, [{ ifindex: 11, namespace: 'shop', pod: 'evil' }], { secret: 'guess' }), ...src.frames(1, { ifindex: 11, cpu: 5 })],
      from: 'stranger',
    }),
    expected: { 'bad-mac': 1, unannounced: 1 },
  },
  {
    description: 'an unsigned announcement (no MAC), then its data',
    input: () => ({ datagrams: [announcement(POLICY, [{ ifindex: 11, namespace: 'shop', pod: 'evil' }]), ...src.frames(1, { ifindex: 11, cpu: 5, instance: 9 })] }),
    expected: { unauthenticated: 1, unannounced: 1 },
  },
  { description: "the agent's announcement replayed", input: () => ({ datagrams: [agentAnnouncement] }), expected: { replayed: 1 } },
  {
    description: "the agent's announcement replayed from another address, then data from there",
    input: () => ({ datagrams: [agentAnnouncement, ...src.frames(1, { ifindex: 11, cpu: 5 })], from: 'stranger' }),
    expected: { 'wrong-source': 1, unannounced: 1 },
  },
  {
    description: 'a signed announcement dated ten minutes ago',
    input: () => ({ datagrams: [rawAnnouncement(rawJson({}), SECRET, 'node-a', Date.now() - 600_000)] }),
    expected: { stale: 1 },
  },
  {
    description: 'a signed announcement that is not JSON',
    input: () => ({ datagrams: [rawAnnouncement('{"v":2,', SECRET)] }),
    expected: { 'bad-announcement': 1 },
  },
  {
    description: 'a signed announcement that does not validate',
    input: () => ({ datagrams: [rawAnnouncement(rawJson({ instance: -1 }), SECRET)] }),
    expected: { 'bad-announcement': 1 },
  },
  {
    description: "a node's key signing another node's announcement",
    input: () => ({ datagrams: [rawAnnouncement(rawJson({ node: 'node-b' }), SECRET, 'node-a')] }),
    expected: { 'bad-announcement': 1 },
  },
  { description: 'an unknown control message', input: () => ({ datagrams: [mutate(announcement(null, []), (b) => b.writeUInt16BE(0x1234, 2))] }), expected: { 'unknown-control': 1 } },
];

function delta(before: CollectorStats, after: CollectorStats): Record<string, number> {
  const d: Record<string, number> = {};
  for (const r of MALFORMED_REASONS) if (after.malformedByReason[r] !== before.malformedByReason[r]) d[r] = after.malformedByReason[r] - before.malformedByReason[r];
  for (const k of ['duplicates', 'overlaps', 'incomplete', 'late', 'lost', 'rebuilt', 'written'] as const) if (after[k] !== before[k]) d[k] = after[k] - before[k];
  return d;
}

describe('hardening', () => {
  it.each(cases)('$description', async ({ input, expected }) => {
    const before = r.c.stats();
    const { datagrams, from, settle } = input();
    await sendAll(r.udp, r.c.address.port, datagrams, from === 'stranger' ? stranger : undefined);
    await until(() => r.c.stats().received - before.received === datagrams.length, 'every datagram to be received');
    await new Promise((res) => setTimeout(res, settle ?? 700)); // timeouts, the writer, and the file flush
    const after = r.c.stats();
    const got = delta(before, after);
    // (gaps a case leaves are counted lost only once their stream moves past them)
    delete got.lost;
    expect(got).toEqual(expected);
    expect(after.kernelDropped).toBe(0);

    // still serving: health, and a good frame all the way to the file
    expect((await fetch(`${r.base}/healthz`)).status).toBe(200);
    const good = r.c.stats();
    await r.send(src.frames(1, { ifindex: 11, cpu: 7 }));
    await until(() => r.c.stats().written === good.written + 1, 'a good frame to be written afterwards');
    // (workers report their counts every 250 ms: let the next case start from settled numbers)
    await until(() => r.c.stats().rebuilt === good.rebuilt + 1, 'the worker to report it');
  });

  it('memory stayed bounded through the flood', () => {
    const s = r.c.stats();
    expect(s.evicted).toBeGreaterThan(0);
    expect(s.pendingFrames).toBeLessThanOrEqual(256 * 2); // per worker
  });
});

describe('a full disk end to end', () => {
  it('keeps serving and counting; writing resumes in a new file when space returns', async () => {
    let full = false;
    const { nodeCaptureFs } = await import('../../../src/collector/capture-file.ts');
    const rr = await startRunning({
      ingest: { workers: 1 },
      store: {
        minFreeBytes: 1,
        fs: {
          ...nodeCaptureFs,
          write: (fd, buf, off, len, pos) => (full ? Promise.reject(Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' })) : nodeCaptureFs.write(fd, buf, off, len, pos)),
          freeBytes: async () => (full ? 0 : 1 << 30),
        },
      },
    });
    try {
      const s = new FrameSource();
      await rr.send([announcement(POLICY, [{ ifindex: 11, namespace: 'shop', pod: 'web-1' }]), ...s.frames(10, { ifindex: 11 })]);
      await until(() => rr.c.stats().written === 10, 'the first frames on disk');
      full = true;
      await rr.send(s.frames(10, { ifindex: 11 }));
      await until(() => rr.c.stats().diskFull, 'the failed write');
      await rr.send(s.frames(10, { ifindex: 11 }));
      await until(() => rr.c.stats().rebuilt === 30, 'ingest to go on');
      const during = rr.c.stats();
      expect(during.lostInWrite + during.droppedDiskFull).toBe(20);
      expect((await fetch(`${rr.base}/healthz`)).status).toBe(200);
      expect((await rr.get('/api/v1/captures')).status).toBe(200);
      expect(await (await fetch(`${rr.base}/metrics`)).text()).toContain('podtap_collector_disk_full 1');
      full = false;
      await until(() => !rr.c.stats().diskFull, 'writing to resume', 5000);
      await rr.send(s.frames(5, { ifindex: 11 }));
      await until(() => rr.c.stats().written === 15, 'the new frames on disk');
      expect(rr.c.files()).toHaveLength(2);
    } finally {
      await rr.stop();
    }
  });
});
