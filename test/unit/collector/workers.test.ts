/**
 * Ingest on several worker threads: the handoff batches, SO_REUSEPORT keeping
 * each stream on one worker (every frame rebuilt once, nothing lost, pieces
 * never split across workers), acceptance of a source passed between workers,
 * and datagrams the kernel dropped before anyone read them.
 */
import { createSocket, type Socket } from 'node:dgram';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { HandoffDecoder, HandoffEncoder } from '../../../src/collector/handoff.ts';
import type { FrameRecord, IngestSink } from '../../../src/collector/ingest.ts';
import { udpSockets } from '../../../src/collector/sockets.ts';
import { pattern } from '../wire/frames.ts';
import { readCapture } from './helpers.ts';
import { FrameSource, announcement, sendAll, startRunning, until, type Running } from './running.ts';

type Call = [string, ...unknown[]];

function recorder(): IngestSink & { calls: Call[] } {
  const calls: Call[] = [];
  return {
    calls,
    announce: (address, a) => calls.push(['announce', address, a.node]),
    frame: (f) =>
      calls.push(['frame', f.address, f.instance, f.ifindex, f.flags, f.tsHi, f.tsLo, f.origLen, Buffer.from(f.data.subarray(f.off, f.off + f.len)).toString('hex'), f.recvMs]),
    vxlan: (address, vni, data, off, len, recvMs) => calls.push(['vxlan', address, vni, Buffer.from(data.subarray(off, off + len)).toString('hex'), recvMs]),
    gap: (g) => calls.push(['gap', g.address, g.instance, g.cpu, g.count, g.first, g.last]),
  };
}

/** A 1400-byte frame of stream 198.18.0.1 / instance 1, captured at `tsLo`. */
function frameRecord(data: Buffer, tsLo: number): FrameRecord {
  return { address: '198.18.0.1', instance: 1, ifindex: 1, flags: 0, tsHi: 0, tsLo, origLen: 1400, data, off: 0, len: 1400, recvMs: 0 };
}

describe('handoff batches', () => {
  it('carry frames, VXLAN frames, sequence gaps and source names through transferred buffers, in order', () => {
    const batches: { ab: ArrayBuffer; len: number; frames: number }[] = [];
    const enc = new HandoffEncoder((ab, len, frames) => batches.push({ ab, len, frames }), () => undefined, { batchBytes: 1 << 16 });
    const want = recorder();
    for (let k = 0; k < 100; k++) {
      const data = pattern(100 + k * 13, k);
      const address = k % 3 === 0 ? '198.18.0.1' : k % 3 === 1 ? '2001:db8::7' : '198.18.0.2';
      const f: FrameRecord = {
        address, instance: k, ifindex: 1000 + k, flags: k & 0x1f, tsHi: 0x18000000 + k, tsLo: 0xfffffff0 - k, origLen: data.length + 7,
        data, off: 0, len: data.length, recvMs: 1.7641e12 + k / 7,
      };
      if (k % 10 === 9) {
        enc.vxlan(address, 42 + k, data, 0, data.length, f.recvMs);
        want.vxlan(address, 42 + k, data, 0, data.length, f.recvMs);
      } else if (k % 10 === 4) {
        const g = { address, instance: k, cpu: 300 + k, count: 7 * k, first: (0xfffffff0 + k) >>> 0, last: k };
        enc.gap(g);
        want.gap(g);
      } else {
        enc.frame(f);
        want.frame(f);
      }
    }
    enc.flush();
    expect(batches.length).toBeGreaterThan(1);
    const got = recorder();
    const dec = new HandoffDecoder();
    let frames = 0;
    for (const b of batches) frames += dec.decode(Buffer.from(b.ab, 0, b.len), b.len, got);
    expect(frames).toBe(90);
    expect(batches.reduce((n, b) => n + b.frames, 0)).toBe(90);
    expect(got.calls).toEqual(want.calls);
  });

  it('bounds what the writer has not given back: frames beyond it are dropped and counted', () => {
    const held: { ab: ArrayBuffer; len: number }[] = [];
    const enc = new HandoffEncoder((ab, len) => held.push({ ab, len }), () => undefined, { batchBytes: 1 << 16, maxInflightBytes: 1 << 18 });
    const data = pattern(1400);
    for (let k = 0; k < 400; k++) {
      enc.frame(frameRecord(data, k));
      if (k % 40 === 39) enc.flush();
    }
    expect(enc.dropped).toBeGreaterThan(200);
    expect(enc.inflight + enc.pending).toBeLessThanOrEqual(1 << 18);
    // the writer catches up: the space comes back
    for (const h of held.splice(0)) enc.recycle(h.ab, h.len);
    const dropped = enc.dropped;
    enc.frame(frameRecord(data, 999));
    expect(enc.dropped).toBe(dropped);
  });
});

describe('worker threads', () => {
  let r: Running | undefined;
  const extra: Socket[] = [];
  afterEach(async () => {
    for (const s of extra.splice(0)) s.close();
    await r?.stop();
    r = undefined;
  });

  async function sockets(n: number): Promise<Socket[]> {
    const out: Socket[] = [];
    for (let i = 0; i < n; i++) {
      const s = createSocket('udp4');
      await new Promise<void>((res) => s.bind(0, '127.0.0.1', () => res()));
      out.push(s);
      extra.push(s);
    }
    return out;
  }

  it('each stream (one source port) stays on one worker: every frame once, none lost, none split', async () => {
    r = await startRunning({ ingest: { workers: 3, secret: 'tok' } });
    const policy = { namespace: 'shop', name: 'web-debug' };
    // the agent announces from its own port; each data-plane stream has its own source port
    await r.send([announcement(policy, [{ ifindex: 11, namespace: 'shop', pod: 'web-1' }], { secret: 'tok' })]);
    await until(() => r!.c.stats().announcements === 1, 'the announcement');
    const streams = await sockets(12);
    const src = new FrameSource();
    let frames = 0;
    for (let round = 0; round < 5; round++) {
      await Promise.all(
        streams.map((s, cpu) => {
          // big frames: many pieces each, which only join up on the worker that saw the others
          const ds = src.frames(10, { ifindex: 11, cpu, payload: cpu % 2 ? 200 : 30_000 });
          frames += 10;
          return sendAll(r!.udp, r!.c.address.port, ds, s);
        }),
      );
    }
    await until(() => r!.c.stats().written === frames, 'every frame on disk');
    await r.c.close();
    const s = r.c.stats();
    expect(s).toMatchObject({ rebuilt: frames, written: frames, lost: 0, incomplete: 0, duplicates: 0, malformed: 0, kernelDropped: 0, handoffDropped: 0 });
    // the streams spread over the workers (12 source ports over 3 sockets)
    expect(s.workerReceived.filter((n) => n > 0).length).toBeGreaterThan(1);
    expect(s.workerReceived.reduce((a, b) => a + b, 0)).toBe(s.received);
    const packets = await readCapture(r.c.files()[0]!);
    expect(packets.length).toBe(frames);
  });

  it('replaces a worker that dies, keeps its counts, and goes on rebuilding', async () => {
    const mark = join(tmpdir(), `podtap-crash-${process.pid}-${Date.now()}`);
    onTestFinished(() => Promise.all([rm(mark, { force: true }), rm(`${mark}.now`, { force: true })]).then(() => undefined));
    process.env.PODTAP_TEST_CRASH_MARK = mark; // (a worker's env is a copy made when it starts)
    try {
      r = await startRunning({ ingest: { workers: 2, workerModule: new URL('./crashing-worker.ts', import.meta.url) } });
    } finally {
      delete process.env.PODTAP_TEST_CRASH_MARK;
    }
    await r.send([announcement(null, [{ ifindex: 11, namespace: 'shop', pod: 'web-1' }])]);
    const streams = await sockets(8);
    const src = new FrameSource();
    const round = async () => {
      await Promise.all(streams.map((s, cpu) => sendAll(r!.udp, r!.c.address.port, src.frames(5, { ifindex: 11, cpu }), s)));
      return streams.length * 5;
    };
    const before = await round();
    await until(() => r!.c.stats().written === before, 'the frames sent before the crash');
    // worker 0 dies now; what it counted since its last periodic report
    // reaches us through its dying words (uncaughtExceptionMonitor)
    await writeFile(`${mark}.now`, '');
    await until(() => r!.c.stats().workerRestarts === 1, 'worker 0 to die and be replaced', 5000);
    // the successor is bound again: every stream is served, whichever socket it hashes to
    await new Promise((res) => setTimeout(res, 500));
    const after = await round();
    await until(() => r!.c.stats().written === before + after, 'the frames sent after the restart');
    // the dead worker's counts are kept, not reset with it (workers report every 250 ms)
    await until(() => r!.c.stats().received === 1 + before + after, 'every datagram counted', 2000).catch(() => undefined);
    const s = r.c.stats();
    expect(s).toMatchObject({ workerRestarts: 1, rebuilt: before + after, lost: 0, malformed: 0 });
    expect(s.received).toBe(1 + before + after);
    const metrics = await (await r.get('/metrics')).text();
    expect(metrics).toMatch(/^podtap_collector_worker_restarts_total 1$/m);
    expect((await r.get('/healthz')).status).toBe(200);
  });

  it('an announcement on one worker lets the source’s data in on the others', async () => {
    r = await startRunning({ ingest: { workers: 3, secret: 'tok' } });
    const streams = await sockets(9);
    const src = new FrameSource();
    const ds = streams.map((_, cpu) => src.frames(1, { ifindex: 11, cpu }));
    // before the announcement: refused everywhere
    await Promise.all(streams.map((s, i) => sendAll(r!.udp, r!.c.address.port, ds[i]!, s)));
    await until(() => r!.c.stats().malformedByReason.unannounced === 9, 'refusals');
    await r.send([announcement(null, [], { secret: 'tok' })]);
    await until(() => r!.c.stats().announcements === 1, 'the announcement');
    await new Promise((res) => setTimeout(res, 50)); // (the writer passes it on to the other workers)
    const after = streams.map((_, cpu) => src.frames(1, { ifindex: 11, cpu }));
    await Promise.all(streams.map((s, i) => sendAll(r!.udp, r!.c.address.port, after[i]!, s)));
    await until(() => r!.c.stats().written === 9, 'every stream accepted, whichever worker it lands on');
    expect(r.c.stats().workerReceived.filter((n) => n > 0).length).toBeGreaterThan(1);
  });

  it('datagrams the kernel dropped (full socket buffer) are counted, from /proc/net/udp', async () => {
    r = await startRunning({ ingest: { workers: 0, recvBufferSize: 4096 } });
    await r.send([announcement(null, [])]);
    // our socket is in the kernel's list, with its drops column
    const mine = await udpSockets(r.c.address.port);
    expect(mine.length).toBe(1);
    expect(mine[0]!.drops).toBe(0);
    // the collector's thread is busy while another thread sends: datagrams pile up in a tiny buffer and overflow
    const sender = new Worker(
      `const s = require('node:dgram').createSocket('udp4');
       const d = Buffer.alloc(1000, 0x5a);
       let n = 0;
       const next = () => (n++ < 400 ? s.send(d, ${r.c.address.port}, '127.0.0.1', next) : s.close());
       next();`,
      { eval: true },
    );
    const done = new Promise((res) => sender.once('exit', res));
    const end = Date.now() + 500;
    while (Date.now() < end) {
      // busy
    }
    await done;
    await until(() => r!.c.stats().kernelDropped > 0, 'the kernel drops to be counted', 5000);
    const s = r.c.stats();
    expect(s.kernelDropped + s.received).toBe(401);
    expect(await (await fetch(`${r.base}/metrics`)).text()).toMatch(new RegExp(`podtap_collector_kernel_dropped_total ${s.kernelDropped}\\n`));
  });
});
