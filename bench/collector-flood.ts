/**
 * What a flood of tiny datagrams from one sender costs the collector in
 * memory (issue 9: 65,536 of them once added about 676 MiB). Each datagram is
 * a valid one-piece frame of a new sequence stream (another CPU number), the
 * most state a single datagram can ask for; the sender is authenticated, so
 * only the collector's own bounds stand between it and the memory.
 *
 * The collector runs in this process, ingest in the main thread, inside a
 * private network namespace. The figure is the growth of the resident set
 * (and of the heap and array buffers) across the flood, after a forced GC
 * on both sides, with every datagram received (the sender waits for the
 * collector to keep up, so the kernel drops none).
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
    // prepared before the first measurement: the sender's own buffers are not the collector's
    const tiny = Buffer.alloc(60, 1);
    const flood = Array.from({ length: n }, (_, k) => encodeFrame(tiny, { instance: 1, cpu: k & 0xffff, seq: k >>> 16, ifindex: 7, tstamp: 1n })[0]!);
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
    const before = await settle();
    for (let i = 0; i < flood.length; i++) {
      await send(flood[i]!);
      if (i % 128 === 127) {
        const end = Date.now() + 5000;
        while (c.stats().received < i + 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 1));
      }
    }
    const end = Date.now() + 10_000;
    while (c.stats().received < n + 1 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    const after = await settle();
    const s = c.stats();
    const mib = (b: number): string => (b / 2 ** 20).toFixed(1);
    const result = {
      datagrams: n, received: s.received - 1, kernelDropped: s.kernelDropped, streams: s.streams, refusedTooMany: s.malformedByReason['too-many'],
      rssMiB: mib(after.rss - before.rss), heapMiB: mib(after.heapUsed - before.heapUsed), arrayBuffersMiB: mib(after.arrayBuffers - before.arrayBuffers),
    };
    console.log(`flood of ${n} tiny datagrams (each a new stream) from one authenticated sender:`);
    console.log(`  received ${result.received}, streams held ${result.streams}, refused (too-many) ${result.refusedTooMany}`);
    console.log(`  memory growth: resident ${result.rssMiB} MiB, heap ${result.heapMiB} MiB, array buffers ${result.arrayBuffersMiB} MiB`);
    console.log(JSON.stringify(result));
  } finally {
    udp.close();
    await c.close();
    await rm(dir, { recursive: true, force: true });
  }
}

if (await enterPrivateNamespace(new URL(import.meta.url).pathname)) await main();
