/**
 * Data-plane benchmark (root; inside network namespaces it creates):
 *
 *  1. BPF run time per packet (kernel.bpf_stats_enabled: run_time_ns / run_cnt)
 *     of the tap on non-matching and matching packets (a matching tap's time
 *     includes the tunnel program it runs synchronously through the clone) and
 *     of the tunnel on 1400-byte and 64 KB frames (for those: the stash stage
 *     and the emit stage that cuts the pieces, and their sum).
 *  2. Pod-to-pod TCP throughput through the node with: no capture; podtap; the
 *     kernel's `tc ... action mirred` to a VXLAN device; `tcpdump -w` on the
 *     veth — each run side by side, interleaved, as a ratio to no capture, with
 *     the share of mirrored packets that reached a collector-side sink (which
 *     only counts: the collector namespace's interface counters).
 *
 * Prints a table and writes bench/results/datapath-<time>.json.
 *   npm exec -- node bench/datapath.ts [--seconds 5] [--rounds 3]
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { captureConfig, collectorPort, SniffPolicySpecSchema } from '../src/api/index.ts';
import { LOSS_REASONS } from '../src/datapath/counters.ts';
import { createRunner } from '../src/datapath/exec.ts';
import { Session } from '../src/datapath/session.ts';
import { createTopology, inNs, sh, type Topology } from '../test/helpers/netns.ts';
import { iperf } from '../test/helpers/traffic.ts';

const { values: args } = parseArgs({
  options: { seconds: { type: 'string', default: '5' }, rounds: { type: 'string', default: '3' } },
});
const SECONDS = Number(args.seconds);
const ROUNDS = Number(args.rounds);

interface ProgStats {
  runTimeNs: number;
  runCnt: number;
}

async function progStats(id: number): Promise<ProgStats> {
  const j = JSON.parse((await execa('bpftool', ['-j', 'prog', 'show', 'id', String(id)])).stdout) as { run_time_ns?: number; run_cnt?: number };
  return { runTimeNs: j.run_time_ns ?? 0, runCnt: j.run_cnt ?? 0 };
}

function perPacket(a: ProgStats, b: ProgStats): number {
  const n = b.runCnt - a.runCnt;
  return n > 0 ? (b.runTimeNs - a.runTimeNs) / n : NaN;
}

const SINK_PIN = '/sys/fs/bpf/podtap-bench-sink';

/** Count-and-drop at tc ingress of the collector's interface (bench/bpf/sink.bpf.c). */
async function installSink(topo: Topology): Promise<void> {
  const obj = `/tmp/podtap-bench-sink-${topo.prefix}.o`;
  await execa('clang', ['-O2', '-g', '-target', 'bpf', ...(process.arch === 'x64' ? ['-I/usr/include/x86_64-linux-gnu'] : []), '-c', join(import.meta.dirname, 'bpf', 'sink.bpf.c'), '-o', obj]);
  await rm(SINK_PIN, { recursive: true, force: true });
  await execa('bpftool', ['prog', 'loadall', obj, SINK_PIN, 'pinmaps', `${SINK_PIN}/maps`]);
  await inNs(topo.collector.ns, 'tc', ['qdisc', 'add', 'dev', 'eth0', 'clsact']);
  await inNs(topo.collector.ns, 'tc', ['filter', 'add', 'dev', 'eth0', 'ingress', 'bpf', 'da', 'object-pinned', `${SINK_PIN}/sink`]);
  await rm(obj, { force: true });
}

async function sinkStats(): Promise<{ packets: number; bytes: number }> {
  const rows = JSON.parse((await execa('bpftool', ['-j', 'map', 'dump', 'pinned', `${SINK_PIN}/maps/sink_count`])).stdout) as {
    formatted: { values: { value: { packets: number; bytes: number } }[] };
  }[];
  const vals = rows[0]?.formatted.values ?? [];
  return { packets: vals.reduce((n, v) => n + v.value.packets, 0), bytes: vals.reduce((n, v) => n + v.value.bytes, 0) };
}

async function withSession<T>(topo: Topology, id: string, spec: Record<string, unknown>, ifaces: string[], fn: (s: Session) => Promise<T>): Promise<T> {
  const runner = createRunner(topo.node);
  const session = await Session.open({ id, runner });
  try {
    const policy = SniffPolicySpecSchema.parse({ ...spec, collector: { address: topo.collector.ip4 } });
    await session.apply(captureConfig(policy, { address: topo.collector.ip4, port: collectorPort(policy) }));
    for (const i of ifaces) await session.attach(i, ['ingress', 'egress']);
    return await fn(session);
  } finally {
    await session.destroy();
  }
}

async function runTimes(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  await sh('sysctl', ['-qw', 'kernel.bpf_stats_enabled=1']);
  try {
    // small frames: pod MTU 1500
    const topo = await createTopology({ pods: 2, podMtu: 1500 });
    try {
      const [p1, p2] = topo.pods as [Topology['pods'][0], Topology['pods'][0]];
      const flood = (size: number, count: number) => inNs(p1.ns, 'ping', ['-q', '-f', '-c', String(count), '-s', String(size), p2.ip4]);
      await withSession(topo, 'bench-nomatch', { filter: { ports: [{ port: 1 }] } }, [p1.hostIf], async (s) => {
        const id = s.pinned!.progs.pt_tap_ingress.id;
        const a = await progStats(id);
        await flood(56, 20_000);
        out.tapNonMatchingNs = perPacket(a, await progStats(id));
      });
      await withSession(topo, 'bench-match', {}, [p1.hostIf], async (s) => {
        const tap = s.pinned!.progs.pt_tap_ingress.id;
        const tun = s.pinned!.progs.pt_tunnel.id;
        const [a, t0] = [await progStats(tap), await progStats(tun)];
        await flood(56, 20_000);
        out.tapMatchingNs = perPacket(a, await progStats(tap));
        const t1 = await progStats(tun);
        out.tunnelSmallNs = perPacket(t0, t1);
        // a 1400-byte frame: 14 Ethernet + 20 IPv4 + 8 ICMP + 1358
        await flood(1358, 20_000);
        out.tunnel1400Ns = perPacket(t1, await progStats(tun));
      });
    } finally {
      await topo.destroy();
    }
    // 64 KB frames: pod MTU 65535
    const big = await createTopology({ pods: 2, podMtu: 65535 });
    try {
      const [p1, p2] = big.pods as [Topology['pods'][0], Topology['pods'][0]];
      await withSession(big, 'bench-big', {}, [p1.hostIf], async (s) => {
        const tun = s.pinned!.progs.pt_tunnel.id;
        const emit = s.pinned!.progs.pt_emit.id;
        const [a, e] = [await progStats(tun), await progStats(emit)];
        await inNs(p1.ns, 'ping', ['-q', '-c', '500', '-i', '0.002', '-s', '65000', p2.ip4]);
        const [a1, e1] = [await progStats(tun), await progStats(emit)];
        // stage 1 (stash) per frame, stage 2 (47 pieces) per frame, and the sum
        out.tunnel64kStashNs = perPacket(a, a1);
        out.tunnel64kEmitNs = perPacket(e, e1);
        out.tunnel64kNs = out.tunnel64kStashNs + out.tunnel64kEmitNs;
      });
    } finally {
      await big.destroy();
    }
  } finally {
    await sh('sysctl', ['-qw', 'kernel.bpf_stats_enabled=0']);
  }
  return out;
}

type Mode = 'none' | 'podtap' | 'mirred' | 'tcpdump';

interface ThroughputRun {
  mode: Mode;
  gbps: number;
  mirrored?: number;
  piecesSent?: number;
  sinkPackets: number;
  sinkBytes: number;
  lost?: number;
  /** pieces the uplink dropped (node side tx + collector side rx): the collector sees them as sequence gaps */
  uplinkDropped?: number;
  captured?: number;
  dropped?: number;
}

/** Drops of the uplink veth pair: tx on the node's side, rx on the collector's. */
async function uplinkDrops(topo: Topology): Promise<number> {
  const drops = async (ns: string, dev: string, dir: 'tx' | 'rx') => {
    const [l] = JSON.parse(await inNs(ns, 'ip', ['-s', '-j', 'link', 'show', dev])) as { stats64: Record<'tx' | 'rx', { dropped: number }> }[];
    return l!.stats64[dir].dropped;
  };
  return (await drops(topo.node, 'up0', 'tx')) + (await drops(topo.collector.ns, 'eth0', 'rx'));
}

async function throughputRound(topo: Topology, mode: Mode): Promise<ThroughputRun> {
  const [p1, p2] = topo.pods as [Topology['pods'][0], Topology['pods'][0]];
  const sink0 = await sinkStats();
  const measure = async () => (await iperf(p2.ns, p2.ip4, p1.ns, SECONDS)).bps / 1e9;
  const sinkDelta = async () => {
    const s = await sinkStats();
    return { sinkPackets: s.packets - sink0.packets, sinkBytes: s.bytes - sink0.bytes };
  };
  if (mode === 'none') return { mode, gbps: await measure(), ...(await sinkDelta()) };
  if (mode === 'podtap') {
    return withSession(topo, 'bench-tput', {}, [p1.hostIf], async (s) => {
      const c0 = await s.counters();
      const u0 = await uplinkDrops(topo);
      const gbps = await measure();
      await new Promise((r) => setTimeout(r, 300));
      const c = await s.counters();
      const lost = LOSS_REASONS.reduce((n, k) => n + (c[k].packets - c0[k].packets), 0);
      const uplinkDropped = (await uplinkDrops(topo)) - u0;
      return { mode, gbps, mirrored: c.mirrored.packets - c0.mirrored.packets, piecesSent: c.pieces.packets - c0.pieces.packets, lost, uplinkDropped, ...(await sinkDelta()) };
    });
  }
  if (mode === 'mirred') {
    await inNs(topo.node, 'ip', ['link', 'add', 'vxbench', 'type', 'vxlan', 'id', '42', 'local', '198.18.9.1', 'remote', topo.collector.ip4, 'dstport', '4789', 'dev', 'up0']);
    await inNs(topo.node, 'ip', ['link', 'set', 'vxbench', 'up']);
    await inNs(topo.node, 'tc', ['qdisc', 'add', 'dev', p1.hostIf, 'clsact'], { reject: false });
    for (const hook of ['ingress', 'egress']) {
      await inNs(topo.node, 'tc', ['filter', 'add', 'dev', p1.hostIf, hook, 'pref', '10', 'protocol', 'all', 'u32', 'match', 'u32', '0', '0', 'action', 'mirred', 'egress', 'mirror', 'dev', 'vxbench']);
    }
    try {
      return { mode, gbps: await measure(), ...(await sinkDelta()) };
    } finally {
      await inNs(topo.node, 'tc', ['qdisc', 'del', 'dev', p1.hostIf, 'clsact'], { reject: false });
      await inNs(topo.node, 'ip', ['link', 'del', 'vxbench'], { reject: false });
    }
  }
  const file = `/tmp/podtap-bench-${topo.prefix}.pcap`;
  const td = execa('nsenter', [`--net=/run/netns/${topo.node}`, 'tcpdump', '-i', p1.hostIf, '-w', file, '-s', '0', '-B', '131072'], { reject: false });
  await new Promise((r) => setTimeout(r, 800));
  const gbps = await measure();
  td.kill('SIGINT');
  const r = await td;
  await rm(file, { force: true });
  const err = String(r.stderr);
  return {
    mode, gbps,
    captured: Number(/(\d+) packets? captured/.exec(err)?.[1] ?? 0),
    dropped: Number(/(\d+) packets? dropped by kernel/.exec(err)?.[1] ?? 0),
    ...(await sinkDelta()),
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

async function main(): Promise<void> {
  console.error('bench: BPF run time per packet ...');
  const rt = await runTimes();
  const topo = await createTopology({ pods: 2, podMtu: 1500 });
  const runs: ThroughputRun[] = [];
  try {
    await installSink(topo);
    for (let r = 0; r < ROUNDS; r++) {
      for (const mode of ['none', 'podtap', 'mirred', 'tcpdump'] as Mode[]) {
        console.error(`bench: round ${r + 1}/${ROUNDS} ${mode} ...`);
        runs.push(await throughputRound(topo, mode));
      }
    }
  } finally {
    await topo.destroy();
    await rm(SINK_PIN, { recursive: true, force: true });
  }
  const byMode = (m: Mode) => runs.filter((x) => x.mode === m);
  const base = median(byMode('none').map((x) => x.gbps));
  const rows = (['none', 'podtap', 'mirred', 'tcpdump'] as Mode[]).map((m) => {
    const rs = byMode(m);
    const gbps = median(rs.map((x) => x.gbps));
    let delivered = '';
    if (m === 'podtap') {
      const sent = rs.reduce((n, x) => n + (x.piecesSent ?? 0), 0);
      const got = rs.reduce((n, x) => n + x.sinkPackets, 0);
      const lost = rs.reduce((n, x) => n + (x.lost ?? 0), 0);
      const uplink = rs.reduce((n, x) => n + (x.uplinkDropped ?? 0), 0);
      delivered = `${((100 * Math.min(got, sent)) / Math.max(sent, 1)).toFixed(3)}% of pieces; ${lost} counted lost; uplink dropped ${uplink}`;
    } else if (m === 'tcpdump') {
      const c = rs.reduce((n, x) => n + (x.captured ?? 0), 0);
      const d = rs.reduce((n, x) => n + (x.dropped ?? 0), 0);
      delivered = `${((100 * c) / Math.max(c + d, 1)).toFixed(2)}% written (${d} dropped)`;
    } else if (m === 'mirred') {
      delivered = `${rs.reduce((n, x) => n + x.sinkPackets, 0)} packets at sink (GSO re-segmented)`;
    }
    return { mode: m, gbps: Number(gbps.toFixed(3)), ratio: Number((gbps / base).toFixed(3)), delivered };
  });
  const result = {
    date: new Date().toISOString(),
    kernel: (await execa('uname', ['-r'])).stdout,
    cpus: (await execa('nproc')).stdout,
    seconds: SECONDS,
    rounds: ROUNDS,
    bpfRunTimeNsPerPacket: Object.fromEntries(Object.entries(rt).map(([k, v]) => [k, Math.round(v)])),
    throughput: rows,
    runs,
  };
  console.log('\nBPF run time per packet (ns)');
  console.table(result.bpfRunTimeNsPerPacket);
  console.log(`\nPod-to-pod TCP throughput, ${SECONDS}s x ${ROUNDS} rounds (median), ratio to no capture`);
  console.table(rows);
  const dir = join(import.meta.dirname, 'results');
  await mkdir(dir, { recursive: true });
  const file = join(dir, `datapath-${result.date.replace(/[:.]/g, '-')}.json`);
  await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nsaved ${file}`);
}

await main();
