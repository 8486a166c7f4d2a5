/**
 * Collector ingest benchmark (root; traffic only inside network namespaces it
 * creates, 198.18.0.0/15).
 *
 *   "node" namespace                          "collector" namespace
 *   generator (Node workers, one UDP   up0 ── eth0   podtap collector (the CLI process)
 *   socket per sequence stream)                      tcpdump -w on eth0, same traffic
 *
 * Two kinds of traffic, pre-encoded with test/helpers/encode.ts (the data plane's
 * piece builder) and replayed with the sequence number patched per frame:
 *   pieces      a 1400-byte frame per datagram (one WHOLE piece)
 *   reassembly  65549-byte frames (65535-byte IPv4 packets), 48 pieces each
 *
 * For each offered rate (datagrams/s; "max" = as fast as the senders go) one
 * run: a fresh collector and a tcpdump -w on the same interface at the same
 * time, for --seconds. Reported per run: what the generator sent, what the
 * collector received, rebuilt and wrote (packets/s, Gbit/s of rebuilt
 * frames), what it counted as lost (kernel socket drops, handoff, disk), what
 * nobody counted (sent − received − kernel-dropped − interface drops: must be
 * 0), and tcpdump's captured and dropped packets (the ratio: collector
 * datagrams received / tcpdump packets captured).
 *
 * Prints a table and writes bench/results/collector-<time>.json.
 *   npm exec -- node bench/collector.ts [--seconds 5] [--workers N] [--senders 2]
 *     [--streams 8] [--rates 50000,100000,200000,max] [--modes pieces,reassembly]
 */
import { createSocket, type Socket } from 'node:dgram';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { execa, type ResultPromise } from 'execa';
import { NODE_BIN, PODTAP_MAIN, createTopology, inNs, sh, type Topology } from '../test/lab/netns.ts';
import { encodeAnnouncement, monotonicRealtimePair } from '../src/wire/announce.ts';
import { encodeFrame } from '../test/helpers/encode.ts';
import { META_LEN, MetaOff } from '../src/wire/format.ts';

type Mode = 'pieces' | 'reassembly';
const COLLECTOR_IP = '198.18.9.2';
const PORT = 6081;
const HTTP_PORT = 8089;
const META_AT = 12;
const IFINDEX = 7;

// ---------------------------------------------------------------- frames ---

/** An Ethernet + IPv4 + UDP frame of `len` bytes with a deterministic payload. */
function frame(len: number): Buffer {
  const f = Buffer.alloc(len);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f.writeUInt16BE(len - 14, 16);
  f[22] = 64;
  f[23] = 17;
  Buffer.from([198, 18, 10, 2, 198, 18, 11, 2]).copy(f, 26);
  f.writeUInt16BE(40000, 34);
  f.writeUInt16BE(5001, 36);
  f.writeUInt16BE(len - 34, 38);
  for (let i = 42; i < len; i++) f[i] = (i * 31) & 0xff;
  return f;
}

/** The datagrams of one frame of stream `cpu`, to be replayed with seq patched. */
function template(mode: Mode, cpu: number): Buffer[] {
  const f = mode === 'pieces' ? frame(1400) : frame(65549);
  return encodeFrame(f, { instance: 1, cpu, seq: 0, ifindex: IFINDEX, tstamp: process.hrtime.bigint() });
}

// ------------------------------------------------------------- generator ---

interface GenConfig {
  mode: Mode;
  /** datagrams per second for this worker; 0 = as fast as possible */
  rate: number;
  seconds: number;
  streams: number[];
  target: string;
}

interface GenResult {
  sent: number;
  bytes: number;
  frames: number;
  errors: number;
  seconds: number;
}

/** One sender thread: a socket per stream, frames round-robin over the streams, paced. */
async function senderThread(cfg: GenConfig): Promise<GenResult> {
  const socks: Socket[] = [];
  for (const _ of cfg.streams) {
    const s = createSocket({ type: 'udp4', sendBufferSize: 4 << 20 });
    await new Promise<void>((r) => s.bind(0, () => r()));
    s.connect(PORT, cfg.target);
    await new Promise((r) => s.once('connect', r));
    socks.push(s);
  }
  const tpl = cfg.streams.map((cpu) => template(cfg.mode, cpu));
  const seqs = cfg.streams.map(() => 0);
  const r: GenResult = { sent: 0, bytes: 0, frames: 0, errors: 0, seconds: 0 };
  let inflight = 0;
  const start = performance.now();
  const end = start + cfg.seconds * 1000;
  let k = 0;
  const onSent = (err: Error | null): void => {
    inflight--;
    if (err) r.errors++;
  };
  for (;;) {
    const now = performance.now();
    if (now >= end) break;
    const due = cfg.rate > 0 ? Math.floor(((now - start) / 1000) * cfg.rate) : Number.POSITIVE_INFINITY;
    let burst = 0;
    while (r.sent < due && inflight < 512 && burst < 2048) {
      const i = k++ % tpl.length;
      const ds = tpl[i]!;
      const seq = seqs[i]!++;
      const ts = process.hrtime.bigint();
      for (const d of ds) {
        d.writeUInt32BE(seq >>> 0, META_AT + MetaOff.seq);
        d.writeBigUInt64BE(ts, META_AT + MetaOff.tstamp);
        inflight++;
        socks[i]!.send(Buffer.from(d), onSent);
        r.sent++;
        r.bytes += d.length;
        burst++;
      }
      r.frames++;
    }
    // ahead of schedule: sleep (a busy loop would take the CPU the collector is measured on)
    if (cfg.rate > 0 && r.sent >= due) await new Promise((res) => setTimeout(res, 1));
    else await new Promise((res) => setImmediate(res));
  }
  while (inflight > 0) await new Promise((res) => setImmediate(res));
  r.seconds = (performance.now() - start) / 1000;
  for (const s of socks) s.close();
  return r;
}

async function generator(opts: { mode: Mode; rate: number; seconds: number; senders: number; streams: number; target: string }): Promise<GenResult> {
  // announce the interface and the clock first, as an agent would
  const a = createSocket('udp4');
  await new Promise<void>((r) => a.connect(PORT, opts.target, () => r()));
  const ann = encodeAnnouncement({
    v: 2, node: 'bench-node', source: a.address().address, sender: 'agent', senderId: 'bench', instance: 1, tunnel: 'Geneve',
    policy: { namespace: 'bench', name: opts.mode, uid: 'b' }, clock: monotonicRealtimePair(),
    interfaces: [{ ifindex: IFINDEX, name: 'veth-bench', pod: { namespace: 'bench', name: 'pod-1' }, directions: ['Ingress', 'Egress'] }],
  });
  await new Promise<void>((r) => a.send(ann, () => r()));
  a.close();
  await new Promise((r) => setTimeout(r, 200));
  const workers: Promise<GenResult>[] = [];
  for (let w = 0; w < opts.senders; w++) {
    const streams = Array.from({ length: opts.streams }, (_, i) => i).filter((i) => i % opts.senders === w);
    const cfg: GenConfig = { mode: opts.mode, rate: opts.rate / opts.senders, seconds: opts.seconds, streams, target: opts.target };
    workers.push(
      new Promise((resolve, reject) => {
        const worker = new Worker(new URL(import.meta.url), { workerData: cfg });
        worker.once('message', resolve);
        worker.once('error', reject);
      }),
    );
  }
  const rs = await Promise.all(workers);
  return {
    sent: rs.reduce((n, r) => n + r.sent, 0), bytes: rs.reduce((n, r) => n + r.bytes, 0), frames: rs.reduce((n, r) => n + r.frames, 0),
    errors: rs.reduce((n, r) => n + r.errors, 0), seconds: Math.max(...rs.map((r) => r.seconds)),
  };
}

// ---------------------------------------------------------------- runner ---

interface Run {
  mode: Mode;
  offered: number | 'max';
  workers: number;
  gen: GenResult;
  collector: {
    received: number;
    rebuilt: number;
    written: number;
    lost: number;
    incomplete: number;
    kernelDropped: number;
    writeDropped: number;
    bytesWritten: number;
    ingestLagMs: number;
    workerReceived: number[];
  };
  rebuiltBytes: number;
  interfaceDrops: number;
  unreported: number;
  tcpdump: { captured: number; dropped: number };
  pps: { offered: number; received: number; rebuiltFrames: number; tcpdump: number };
  gbps: { rebuilt: number; received: number };
  ratio: number;
  cpuSeconds: { collector: number; tcpdump: number; generator: number };
  /** share of the machine idle just before the run (others' work skews it) */
  idleBefore: number;
}

async function linkDrops(topo: Topology): Promise<number> {
  const read = async (ns: string, dev: string, dir: 'rx' | 'tx'): Promise<number> => {
    const j = JSON.parse(await inNs(ns, 'ip', ['-s', '-j', 'link', 'show', 'dev', dev])) as { stats64: Record<string, { dropped: number }> }[];
    return j[0]!.stats64[dir]!.dropped;
  };
  return (await read(topo.node, 'up0', 'tx')) + (await read(topo.collector.ns, 'eth0', 'rx'));
}

async function status(ns: string): Promise<Record<string, unknown>> {
  return JSON.parse(await inNs(ns, 'curl', ['-s', `http://127.0.0.1:${HTTP_PORT}/api/v1/status`])) as Record<string, unknown>;
}

/** user + system CPU seconds of a process (and its threads) from /proc. */
async function cpuOf(pid: number | undefined): Promise<number> {
  if (!pid) return 0;
  try {
    const f = (await sh('cat', [`/proc/${pid}/stat`])).split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

async function untilUp(ns: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await inNs(ns, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${HTTP_PORT}/readyz`], { reject: false })) === '200') return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the collector did not come up');
}

/** Share of CPU time idle over `ms` (from /proc/stat). */
async function idleShare(ms: number): Promise<number> {
  const read = async (): Promise<number[]> => (await sh('head', ['-1', '/proc/stat'])).trim().split(/\s+/).slice(1).map(Number);
  const a = await read();
  await new Promise((r) => setTimeout(r, ms));
  const b = await read();
  const d = b.map((v, i) => v - a[i]!);
  const total = d.reduce((x, y) => x + y, 0);
  return total > 0 ? (d[3]! + d[4]!) / total : 1;
}

/** Other work on the machine skews every figure: wait (up to a minute) for it to be mostly idle. */
async function quiet(): Promise<number> {
  let idle = 0;
  for (let i = 0; i < 30; i++) {
    idle = await idleShare(1000);
    if (idle >= 0.9) return idle;
    console.error(`machine busy (${(100 * (1 - idle)).toFixed(0)}% CPU in use by others): waiting`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  return idle;
}

async function oneRun(topo: Topology, mode: Mode, offered: number | 'max', o: { seconds: number; workers: number; senders: number; streams: number; tcpdump: boolean }): Promise<Run> {
  const idleBefore = await quiet();
  const out = await mkdtemp(join(tmpdir(), 'podtap-bench-col-'));
  const dump = join(out, 'tcpdump.pcap');
  await mkdir(join(out, 'captures'));
  const col = execa('nsenter', [
    `--net=/run/netns/${topo.collector.ns}`, NODE_BIN, PODTAP_MAIN, 'collector', '--listen', `${COLLECTOR_IP}:${PORT}`, '--out', join(out, 'captures'),
    '--workers', String(o.workers), '--http', `127.0.0.1:${HTTP_PORT}`, '--rotate-size', '1GiB',
  ], { reject: false, env: { PODTAP_LOG_LEVEL: 'warn', NODE_OPTIONS: process.env.COLLECTOR_NODE_OPTIONS ?? '' } });
  let tcpdump: ResultPromise | undefined;
  try {
    await untilUp(topo.collector.ns);
    tcpdump = o.tcpdump
      ? execa('nsenter', [`--net=/run/netns/${topo.collector.ns}`, 'tcpdump', '-i', 'eth0', '-n', '-s', '0', '-B', '8192', '-w', dump, 'udp', 'port', String(PORT)], { reject: false })
      : execa('sleep', ['infinity'], { reject: false });
    await new Promise((r) => setTimeout(r, 500));
    const drops0 = await linkDrops(topo);
    const colPid = Number((await sh('pgrep', ['-P', String(col.pid), '-f', 'collector'], { reject: false })).split('\n')[0]) || col.pid;
    const cpu0 = { collector: await cpuOf(colPid), tcpdump: await cpuOf(tcpdump.pid) };
    const gen = execa('nice', [
      '-n', '19', 'nsenter', `--net=/run/netns/${topo.node}`, NODE_BIN, new URL(import.meta.url).pathname, '--role', 'generator', '--mode', mode,
      '--rate', offered === 'max' ? '0' : String(offered), '--seconds', String(o.seconds), '--senders', String(o.senders),
      '--streams', String(o.streams), '--target', COLLECTOR_IP,
    ], { reject: false });
    const genRes = await gen;
    if (genRes.exitCode !== 0) throw new Error(`generator failed: ${String(genRes.stderr)}`);
    const g = JSON.parse(String(genRes.stdout)) as GenResult & { cpu: number };
    // let the collector drain its socket buffers and the writer its batches
    let s = await status(topo.collector.ns);
    for (let i = 0; i < 50; i++) {
      await new Promise((r) => setTimeout(r, 200));
      const n = await status(topo.collector.ns);
      if (n.received === s.received && n.written === s.written && n.socketQueueBytes === 0) break;
      s = n;
    }
    await new Promise((r) => setTimeout(r, 1200)); // (kernel drops are read once a second)
    s = await status(topo.collector.ns);
    const cpu1 = { collector: await cpuOf(colPid), tcpdump: await cpuOf(tcpdump.pid) };
    tcpdump.kill('SIGINT');
    const td = await tcpdump;
    const captured = Number(/(\d+) packets? captured/.exec(String(td.stderr))?.[1] ?? NaN);
    const tdDropped = Number(/(\d+) packets? dropped by kernel/.exec(String(td.stderr))?.[1] ?? NaN);
    const interfaceDrops = (await linkDrops(topo)) - drops0;
    const num = (k: string): number => Number(s[k] ?? 0);
    const frameBytes = mode === 'pieces' ? 1400 : 65549;
    const rebuiltBytes = num('rebuilt') * frameBytes;
    // datagrams the generator sent besides the announcement
    const unreported = g.sent + 1 - num('received') - num('kernelDropped') - interfaceDrops;
    const secs = g.seconds;
    return {
      mode, offered, workers: o.workers, gen: g,
      collector: {
        received: num('received'), rebuilt: num('rebuilt'), written: num('written'), lost: num('lost'), incomplete: num('incomplete'),
        kernelDropped: num('kernelDropped'), writeDropped: num('writeDropped'), bytesWritten: num('bytesWritten'), ingestLagMs: num('ingestLagMs'),
        workerReceived: s.workerReceived as number[],
      },
      rebuiltBytes, interfaceDrops, unreported,
      tcpdump: { captured, dropped: tdDropped },
      pps: { offered: g.sent / secs, received: num('received') / secs, rebuiltFrames: num('rebuilt') / secs, tcpdump: captured / secs },
      gbps: { rebuilt: (rebuiltBytes * 8) / secs / 1e9, received: (num('receivedBytes') * 8) / secs / 1e9 },
      ratio: num('received') / captured,
      cpuSeconds: { collector: cpu1.collector - cpu0.collector, tcpdump: cpu1.tcpdump - cpu0.tcpdump, generator: g.cpu },
      idleBefore,
    };
  } finally {
    tcpdump?.kill('SIGINT');
    col.kill('SIGTERM');
    await col;
    await tcpdump;
    await rm(out, { recursive: true, force: true });
  }
}

function table(runs: Run[]): string {
  const head = ['mode', 'offered pps', 'sent pps', 'collector rx pps', 'rebuilt/s', 'rebuilt Gbit/s', 'counted loss', 'unreported', 'tcpdump pps', 'tcpdump drop', 'ratio', 'CPU col/tcpdump/gen'];
  const rows = runs.map((r) => {
    const counted = r.collector.kernelDropped + r.collector.writeDropped + r.interfaceDrops;
    return [
      r.mode, r.offered === 'max' ? 'max' : String(r.offered), r.pps.offered.toFixed(0), r.pps.received.toFixed(0), r.pps.rebuiltFrames.toFixed(0),
      r.gbps.rebuilt.toFixed(2), `${counted} (${((100 * counted) / Math.max(1, r.gen.sent)).toFixed(1)}%)`, String(r.unreported),
      r.pps.tcpdump.toFixed(0), String(r.tcpdump.dropped), r.ratio.toFixed(2),
      `${(r.cpuSeconds.collector / r.gen.seconds).toFixed(2)}/${(r.cpuSeconds.tcpdump / r.gen.seconds).toFixed(2)}/${(r.cpuSeconds.generator / r.gen.seconds).toFixed(2)}`,
    ];
  });
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padStart(w[i]!)).join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    allowNegative: true,
    options: {
      role: { type: 'string', default: 'main' },
      mode: { type: 'string' },
      modes: { type: 'string', default: 'pieces,reassembly' },
      rate: { type: 'string' },
      rates: { type: 'string', default: '25000,50000,100000,200000,max' },
      seconds: { type: 'string', default: '5' },
      senders: { type: 'string', default: '2' },
      streams: { type: 'string', default: '8' },
      workers: { type: 'string', default: '1' },
      target: { type: 'string', default: COLLECTOR_IP },
      tcpdump: { type: 'boolean', default: true },
    },
  });
  if (a.role === 'generator') {
    const c0 = process.cpuUsage();
    const r = await generator({ mode: a.mode as Mode, rate: Number(a.rate), seconds: Number(a.seconds), senders: Number(a.senders), streams: Number(a.streams), target: a.target });
    const c1 = process.cpuUsage(c0);
    process.stdout.write(JSON.stringify({ ...r, cpu: (c1.user + c1.system) / 1e6 }));
    return;
  }
  if (process.getuid?.() !== 0) throw new Error('bench/collector.ts needs root (network namespaces)');
  const o = { seconds: Number(a.seconds), workers: Number(a.workers), senders: Number(a.senders), streams: Number(a.streams), tcpdump: a.tcpdump };
  const modes = a.modes.split(',') as Mode[];
  const rates = a.rates.split(',').map((r) => (r === 'max' ? 'max' : Number(r)));
  const topo = await createTopology({ pods: 0 });
  const runs: Run[] = [];
  try {
    for (const mode of modes) {
      for (const rate of rates) {
        const offered = rate === 'max' ? 'max' : mode === 'reassembly' ? rate : rate;
        const r = await oneRun(topo, mode, offered, o);
        runs.push(r);
        console.error(`${mode} ${offered}: sent ${r.gen.sent}, received ${r.collector.received}, rebuilt ${r.collector.rebuilt}, kernel dropped ${r.collector.kernelDropped}, unreported ${r.unreported}, tcpdump ${r.tcpdump.captured}/${r.tcpdump.dropped}`);
      }
    }
  } finally {
    await topo.destroy();
  }
  console.log(`\ncollector ingest vs tcpdump -w (same traffic, same interface, same run); ${o.workers} ingest worker(s), ${o.senders} sender threads, ${o.streams} streams, ${o.seconds} s per run`);
  console.log(`machine: ${availableParallelism()} CPUs (${cpus()[0]?.model ?? '?'}), rmem_max ${(await sh('sysctl', ['-n', 'net.core.rmem_max'])).trim()}`);
  console.log(table(runs));
  const file = join(import.meta.dirname, 'results', `collector-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  await writeFile(file, `${JSON.stringify({ options: o, cpus: availableParallelism(), meta: { pieceMeta: META_LEN }, runs }, null, 2)}\n`);
  console.log(`\nwrote ${file}`);
}

if (isMainThread) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
} else {
  senderThread(workerData as GenConfig).then((r) => parentPort!.postMessage(r));
}

