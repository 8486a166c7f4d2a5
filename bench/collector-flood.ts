/**
 * What a flood of tiny datagrams from one sender costs the collector in
 * memory (issue 9: 65,536 of them once added about 676 MiB). Each datagram is
 * a valid one-piece frame of a new sequence stream (another CPU number), the
 * most state a single datagram can ask for. Twice: on the stream an
 * authenticated announcement granted (only the collector's bounds stand
 * between the sender and the memory), then on an instance nobody announced
 * (refused before any state is made).
 *
 * The collector runs in this process, ingest in the main thread, inside a
 * private network namespace. The figure is the growth of the resident set
 * (and of the heap and array buffers) across the flood, after a forced GC
 * on both sides, with every datagram received (the sender waits for the
 * collector to keep up, so the kernel drops none). The second flood makes no
 * state at all: its growth is the measurement's own noise (V8 keeps the
 * pages the flood's buffers used).
 *
 *   flock /run/lock/podtap-bench.lock node bench/collector-flood.ts [--datagrams N]
 */
import { createSocket } from 'node:dgram';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { startCollector } from '../src/collector/collector.ts';
import { silentLogger } from '../src/util/log.ts';
import { encodeAnnouncement, monotonicRealtimePair } from '../src/wire/announce.ts';
import { deriveNodeKey } from '../src/wire/auth.ts';
import { encodeFrame } from '../test/helpers/encode.ts';
import { enterPrivateNamespace } from './privatens.ts';

const SECRET = 'bench-install-secret';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { datagrams: { type: 'string', default: '65536' } } });
  const n = Number(values.datagrams);
  setFlagsFromString('--expose_gc');
  const gc = runInNewContext('gc') as () => void;
  const settle = async (): Promise<NodeJS.MemoryUsage> => {
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 50));
    }
    return process.memoryUsage();
  };

  const dir = await mkdtemp(join(tmpdir(), 'podtap-flood-'));
  const c = await startCollector({ logger: silentLogger, ingest: { host: '127.0.0.1', port: 0, secret: SECRET, workers: 0 }, store: { dir } });
  const udp = createSocket('udp4');
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
  const send = (b: Buffer): Promise<void> => new Promise((res, rej) => udp.send(b, c.address.port, '127.0.0.1', (e) => (e ? rej(e) : res())));
  try {
    // (each flood is prepared before its first measurement: the sender's own buffers are not the collector's)
    const tiny = Buffer.alloc(60, 1);
    await send(
      encodeAnnouncement(
        {
          v: 2, node: 'flood', source: '127.0.0.1', sender: 'agent', senderId: 'flood', instance: 1, tunnel: 'Geneve',
          policy: { namespace: 'bench', name: 'flood', uid: '' }, clock: monotonicRealtimePair(),
          interfaces: [{ ifindex: 7, name: 'veth7', pod: { namespace: 'bench', name: 'p' }, directions: ['Ingress'] }],
        },
        { key: { id: 'flood', key: deriveNodeKey(SECRET, 'flood') } },
      ),
    );
    while (c.stats().grants < 1) await new Promise((r) => setTimeout(r, 5));
    const mib = (b: number): string => (b / 2 ** 20).toFixed(1);
    const results = [];
    for (const phase of [{ name: 'granted stream', instance: 1 }, { name: 'unannounced instance', instance: 2 }]) {
      const flood = Array.from({ length: n }, (_, k) => encodeFrame(tiny, { instance: phase.instance, cpu: k & 0xffff, seq: k >>> 16, ifindex: 7, tstamp: 1n })[0]!);
      const start = c.stats();
      const before = await settle();
      for (let i = 0; i < flood.length; i++) {
        await send(flood[i]!);
        if (i % 128 === 127) {
          const end = Date.now() + 5000;
          while (c.stats().received - start.received < i + 1 && Date.now() < end) await new Promise((r) => setTimeout(r, 1));
        }
      }
      const end = Date.now() + 10_000;
      while (c.stats().received - start.received < n && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      flood.length = 0;
      const after = await settle();
      const s = c.stats();
      const result = {
        phase: phase.name, datagrams: n, received: s.received - start.received, kernelDropped: s.kernelDropped, streams: s.streams,
        tooMany: s.malformedByReason['too-many'] - start.malformedByReason['too-many'], unannounced: s.malformedByReason.unannounced - start.malformedByReason.unannounced,
        rssMiB: mib(after.rss - before.rss), heapMiB: mib(after.heapUsed - before.heapUsed), arrayBuffersMiB: mib(after.arrayBuffers - before.arrayBuffers),
      };
      results.push(result);
      console.log(`flood of ${n} tiny datagrams (each a new stream) from one authenticated sender, ${phase.name}:`);
      console.log(`  received ${result.received}, streams held ${result.streams}, refused: too-many ${result.tooMany}, unannounced ${result.unannounced}`);
      console.log(`  memory growth: resident ${result.rssMiB} MiB, heap ${result.heapMiB} MiB, array buffers ${result.arrayBuffersMiB} MiB`);
    }
    console.log(JSON.stringify(results));
  } finally {
    udp.close();
    await c.close();
    await rm(dir, { recursive: true, force: true });
  }
}

if (await enterPrivateNamespace(new URL(import.meta.url).pathname)) await main();
