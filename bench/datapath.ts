/**
 * Data-plane benchmark (root; inside network namespaces it creates). Run it
 * under the machine's benchmark lock, and mind the load it records:
 *   flock /run/lock/podtap-bench.lock npm run bench:datapath
 *
 * For each uplink MTU (1500 and 9000 bytes; the pods' MTU is 1500):
 *
 *  1. BPF run time per frame (kernel.bpf_stats_enabled: run_time_ns /
 *     run_cnt) of the tap on non-matching and matching pings (a matching
 *     tap's time includes the tunnel program it runs synchronously through
 *     the clone); of the tunnel on 1400-byte frames, without an offloaded
 *     checksum (pings) and with one (TCP segments of a pod with TSO off); on
 *     TCP super-packets, sent for the kernel to segment (largeFrames Segment)
 *     and cut into fragments here (Fragment: the tunnel's stash stage plus
 *     the emit stage); and on 64 KB pings (always cut: stash plus emit).
 *     The baseline, side by side: an empty tc program (bench/bpf/empty.bpf.c)
 *     on the same packets, whose run time is what the measurement itself
 *     adds to every run (the clock reads around it); the per-frame goals are
 *     read net of it (…NetNs).
 *  2. Pod-to-pod TCP throughput through the node with: no capture; podtap
 *     (Segment, the default); podtap with Fragment; the kernel's `tc ...
 *     action mirred` to a VXLAN device; `tcpdump -w` on the veth — each run
 *     side by side, interleaved, as a ratio to no capture, with what podtap
 *     counted lost, what the uplink dropped, and the tunnel packets that
 *     reached a collector-side sink (which only counts).
 *
 * Prints tables and writes bench/results/datapath-<time>.json, with the
 * machine's load before and after.
 *   npm exec -- node bench/datapath.ts [--seconds 5] [--rounds 3] [--mtus 1500,9000] [--times-only]
 */
import { loadavg } from 'node:os';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { captureConfig, collectorPort, SniffPolicySpecSchema } from '../src/api/index.ts';
import { LOSS_REASONS, type Counters } from '../src/datapath/counters.ts';
import { createRunner } from '../src/datapath/exec.ts';
import { Session } from '../src/datapath/session.ts';
import { createTopology, inNs, sh, type Topology } from '../test/helpers/netns.ts';
import { iperf } from '../test/helpers/traffic.ts';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    mtus: { type: 'string', default: '1500,9000' },
    'times-only': { type: 'boolean', default: false },
  },
});
const SECONDS = Number(args.seconds);
const ROUNDS = Number(args.rounds);
const MTUS = args.mtus.split(',').map(Number);

type Pod = Topology['pods'][0];

interface ProgStats {
  runTimeNs: number;
  runCnt: number;
}

async function progStats(id: number): Promise<ProgStats> {
  const j = JSON.parse((await execa('bpftool', ['-j', 'prog', 'show', 'id', String(id)])).stdout) as { run_time_ns?: number; run_cnt?: number };
  return { runTimeNs: j.run_time_ns ?? 0, runCnt: j.run_cnt ?? 0 };
}

function perRun(a: ProgStats, b: ProgStats): number {
  const n = b.runCnt - a.runCnt;
  return n > 0 ? (b.runTimeNs - a.runTimeNs) / n : NaN;
}

/** Run time of each program over @fn, per run of the first one named. */
async function timed(s: Session, names: string[], fn: () => Promise<unknown>): Promise<{ ns: Record<string, number>; frames: number; counters: Counters }> {
  const progs = s.pinned!.progs as Record<string, { id: number }>;
  const before = await Promise.all(names.map((n) => progStats(progs[n]!.id)));
  const c0 = await s.counters();
  await fn();
  const after = await Promise.all(names.map((n) => progStats(progs[n]!.id)));
  const c1 = await s.counters();
  const frames = after[0]!.runCnt - before[0]!.runCnt;
  const ns: Record<string, number> = {};
  names.forEach((n, i) => {
    // per frame of the first program: a stage that runs for some frames only
    // (the emit stage) counts its time against all of them
    ns[n] = frames > 0 ? (after[i]!.runTimeNs - before[i]!.runTimeNs) / frames : NaN;
  });
  const counters = Object.fromEntries(Object.keys(c1).map((k) => [k, { packets: c1[k as keyof Counters].packets - c0[k as keyof Counters].packets, bytes: c1[k as keyof Counters].bytes - c0[k as keyof Counters].bytes }])) as Counters;
  return { ns, frames, counters };
}

const SINK_PIN = '/sys/fs/bpf/podtap-bench-sink';
const EMPTY_PIN = '/sys/fs/bpf/podtap-bench-empty';

/** Compile bench/bpf/@name.bpf.c and pin its programs (and maps) under @pin. */
async function loadBenchObject(name: string, pin: string, tag: string): Promise<void> {
  const obj = `/tmp/podtap-bench-${name}-${tag}.o`;
  await execa('clang', ['-O2', '-g', '-target', 'bpf', ...(process.arch === 'x64' ? ['-I/usr/include/x86_64-linux-gnu'] : []), '-c', join(import.meta.dirname, 'bpf', `${name}.bpf.c`), '-o', obj]);
  await rm(pin, { recursive: true, force: true });
  await execa('bpftool', ['prog', 'loadall', obj, pin, 'pinmaps', `${pin}/maps`]);
  await rm(obj, { force: true });
}

/** Count-and-drop at tc ingress of the collector's interface (bench/bpf/sink.bpf.c). */
async function installSink(topo: Topology): Promise<void> {
  await loadBenchObject('sink', SINK_PIN, topo.prefix);
  await inNs(topo.collector.ns, 'tc', ['qdisc', 'add', 'dev', 'eth0', 'clsact']);
  await inNs(topo.collector.ns, 'tc', ['filter', 'add', 'dev', 'eth0', 'ingress', 'bpf', 'da', 'object-pinned', `${SINK_PIN}/sink`]);
}

/**
 * The baseline of the run times: the empty program (bench/bpf/empty.bpf.c) at
 * egress of @pod's own eth0, so that it runs once for every packet the tap
 * sees at the host side, beside podtap's filters rather than among them.
 * Returns its id.
 */
async function installEmpty(topo: Topology, pod: Pod): Promise<number> {
  await loadBenchObject('empty', EMPTY_PIN, topo.prefix);
  await inNs(pod.ns, 'tc', ['qdisc', 'add', 'dev', 'eth0', 'clsact']);
  await inNs(pod.ns, 'tc', ['filter', 'add', 'dev', 'eth0', 'egress', 'bpf', 'da', 'object-pinned', `${EMPTY_PIN}/empty`]);
  return (JSON.parse((await execa('bpftool', ['-j', 'prog', 'show', 'pinned', `${EMPTY_PIN}/empty`])).stdout) as { id: number }).id;
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
    // policyTypes [Egress]: what the pod sends, which the host-side veth receives
    const egressOnly = JSON.stringify(spec.policyTypes) === JSON.stringify(['Egress']);
    for (const i of ifaces) await session.attach(i, egressOnly ? ['ingress'] : ['ingress', 'egress']);
    return await fn(session);
  } finally {
    await session.destroy();
  }
}

/** BPF run times, ns per frame. */
async function runTimes(uplinkMtu: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  await sh('sysctl', ['-qw', 'kernel.bpf_stats_enabled=1']);
  try {
    const topo = await createTopology({ pods: 2, podMtu: 1500, uplinkMtu });
    try {
      const [p1, p2] = topo.pods as [Pod, Pod];
      const flood = (size: number, count: number) => inNs(p1.ns, 'ping', ['-q', '-f', '-c', String(count), '-s', String(size), p2.ip4]);
      const emptyId = await installEmpty(topo, p1);
      try {
        await withSession(topo, 'bench-nomatch', { filter: { ports: [{ port: 1 }] } }, [p1.hostIf], async (s) => {
          const e0 = await progStats(emptyId);
          out.tapNonMatchingNs = (await timed(s, ['pt_tap_ingress'], () => flood(56, 20_000))).ns.pt_tap_ingress!;
          out.emptyProgramNs = perRun(e0, await progStats(emptyId));
        });
      } finally {
        await inNs(p1.ns, 'tc', ['qdisc', 'del', 'dev', 'eth0', 'clsact']);
        await rm(EMPTY_PIN, { recursive: true, force: true });
      }
      // what the tap itself costs: its run time less the measurement's own
      out.tapNonMatchingNetNs = out.tapNonMatchingNs! - out.emptyProgramNs!;
      await withSession(topo, 'bench-match', { policyTypes: ['Egress'] }, [p1.hostIf], async (s) => {
        const small = await timed(s, ['pt_tap_ingress', 'pt_tunnel'], () => flood(56, 20_000));
        out.tapMatchingNs = small.ns.pt_tap_ingress!;
        out.tunnelSmallNs = small.ns.pt_tunnel!;
        // a 1400-byte frame: 14 Ethernet + 20 IPv4 + 8 ICMP + 1358
        out.tunnel1400Ns = (await timed(s, ['pt_tunnel'], () => flood(1358, 20_000))).ns.pt_tunnel!;
      });
      out.tunnel1400NetNs = out.tunnel1400Ns! - out.emptyProgramNs!;
      // TCP: super-packets (the pods' default), and 1448-byte segments with
      // their checksum offloaded (a pod with TSO and GSO off)
      const tcp = (secs: number) => iperf(p2.ns, p2.ip4, p1.ns, secs, ['-b', '2G']);
      for (const mode of ['Segment', 'Fragment'] as const) {
        await withSession(topo, `bench-tcp-${mode.toLowerCase()}`, { policyTypes: ['Egress'], filter: { protocols: ['TCP'] }, tunnel: { largeFrames: mode } }, [p1.hostIf], async (s) => {
          const t = await timed(s, ['pt_tunnel', 'pt_emit'], () => tcp(3));
          out[`tcp${mode}FrameBytes`] = t.counters.tunnelIn.bytes / Math.max(1, t.counters.tunnelIn.packets);
          out[`tunnelTcp${mode}Ns`] = t.ns.pt_tunnel! + (t.ns.pt_emit || 0);
          // per super-packet: the frames over 8 KB are the super-packets
          if (mode === 'Segment') out.tunnelTcpSegmentedShare = t.counters.segmented.packets / Math.max(1, t.counters.tunnelIn.packets);
        });
      }
      await inNs(p1.ns, 'ethtool', ['-K', 'eth0', 'tso', 'off', 'gso', 'off']);
      await withSession(topo, 'bench-tcp-small', { policyTypes: ['Egress'], filter: { protocols: ['TCP'] } }, [p1.hostIf], async (s) => {
        const t = await timed(s, ['pt_tunnel'], () => tcp(2));
        out.tcpSmallFrameBytes = t.counters.tunnelIn.bytes / Math.max(1, t.counters.tunnelIn.packets);
        out.tunnelTcp1448PartialNs = t.ns.pt_tunnel!;
      });
      await inNs(p1.ns, 'ethtool', ['-K', 'eth0', 'tso', 'on', 'gso', 'on']);
    } finally {
      await topo.destroy();
    }
    // 64 KB pings: always cut into fragments (stash + emit stages)
    const big = await createTopology({ pods: 2, podMtu: 65535, uplinkMtu });
    try {
      const [p1, p2] = big.pods as [Pod, Pod];
      await withSession(big, 'bench-big', { policyTypes: ['Egress'] }, [p1.hostIf], async (s) => {
        const t = await timed(s, ['pt_tunnel', 'pt_emit'], () => inNs(p1.ns, 'ping', ['-q', '-c', '500', '-i', '0.002', '-s', '65000', p2.ip4]));
        out.tunnel64kStashNs = t.ns.pt_tunnel!;
        out.tunnel64kEmitNs = t.ns.pt_emit!;
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

const MODES = ['none', 'podtap', 'podtap-fragment', 'mirred', 'tcpdump'] as const;
type Mode = (typeof MODES)[number];

interface ThroughputRun {
  mode: Mode;
  gbps: number;
  sinkPackets: number;
  sinkBytes: number;
  /** podtap: frames sent, tunnel packets (pieces or segments), frames counted lost, segmented */
  mirrored?: number;
  piecesSent?: number;
  lost?: number;
  segmented?: number;
  /** packets the uplink veth pair dropped (the node's tx drops: each also counted by the collector side) */
  uplinkDropped?: number;
  captured?: number;
  dropped?: number;
}

/** Drops of the uplink veth: its own count of the packets its peer refused. */
async function uplinkDrops(topo: Topology): Promise<number> {
  const [l] = JSON.parse(await inNs(topo.node, 'ip', ['-s', '-j', 'link', 'show', 'up0'])) as { stats64: Record<'tx', { dropped: number }> }[];
  return l!.stats64.tx.dropped;
}

async function throughputRound(topo: Topology, mode: Mode): Promise<ThroughputRun> {
  const [p1, p2] = topo.pods as [Pod, Pod];
  const sink0 = await sinkStats();
  const measure = async () => (await iperf(p2.ns, p2.ip4, p1.ns, SECONDS)).bps / 1e9;
  const sinkDelta = async () => {
    const s = await sinkStats();
    return { sinkPackets: s.packets - sink0.packets, sinkBytes: s.bytes - sink0.bytes };
  };
  if (mode === 'none') return { mode, gbps: await measure(), ...(await sinkDelta()) };
  if (mode === 'podtap' || mode === 'podtap-fragment') {
    const spec = mode === 'podtap' ? {} : { tunnel: { largeFrames: 'Fragment' } };
    return withSession(topo, 'bench-tput', spec, [p1.hostIf], async (s) => {
      const c0 = await s.counters();
      const u0 = await uplinkDrops(topo);
      const gbps = await measure();
      await new Promise((r) => setTimeout(r, 300));
      const c = await s.counters();
      const lost = LOSS_REASONS.reduce((n, k) => n + (c[k].packets - c0[k].packets), 0);
      return {
        mode, gbps, mirrored: c.mirrored.packets - c0.mirrored.packets, piecesSent: c.pieces.packets - c0.pieces.packets, lost,
        segmented: c.segmented.packets - c0.segmented.packets, uplinkDropped: (await uplinkDrops(topo)) - u0, ...(await sinkDelta()),
      };
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

async function throughput(uplinkMtu: number) {
  const topo = await createTopology({ pods: 2, podMtu: 1500, uplinkMtu });
  const runs: ThroughputRun[] = [];
  try {
    await installSink(topo);
    for (let r = 0; r < ROUNDS; r++) {
      for (const mode of MODES) {
        console.error(`bench: uplink MTU ${uplinkMtu}, round ${r + 1}/${ROUNDS} ${mode} ...`);
        runs.push(await throughputRound(topo, mode));
      }
    }
  } finally {
    await topo.destroy();
    await rm(SINK_PIN, { recursive: true, force: true });
  }
  const byMode = (m: Mode) => runs.filter((x) => x.mode === m);
  const base = median(byMode('none').map((x) => x.gbps));
  const rows = MODES.map((m) => {
    const rs = byMode(m);
    const gbps = median(rs.map((x) => x.gbps));
    const sum = (f: (x: ThroughputRun) => number | undefined) => rs.reduce((n, x) => n + (f(x) ?? 0), 0);
    let delivered = '';
    if (m.startsWith('podtap')) {
      const sent = sum((x) => x.piecesSent);
      delivered = `${sum((x) => x.mirrored)} frames (${sum((x) => x.segmented)} segmented) in ${sent} tunnel packets, ${sum((x) => x.sinkPackets)} at the sink; ${sum((x) => x.lost)} counted lost; uplink dropped ${sum((x) => x.uplinkDropped)}`;
    } else if (m === 'tcpdump') {
      const c = sum((x) => x.captured);
      const d = sum((x) => x.dropped);
      delivered = `${((100 * c) / Math.max(c + d, 1)).toFixed(2)}% written (${d} dropped)`;
    } else if (m === 'mirred') {
      delivered = `${sum((x) => x.sinkPackets)} packets at the sink`;
    }
    return { mode: m, gbps: Number(gbps.toFixed(3)), ratio: Number((gbps / base).toFixed(3)), delivered };
  });
  return { rows, runs };
}

async function main(): Promise<void> {
  const load = () => ({ at: new Date().toISOString(), loadavg: loadavg().map((x) => Number(x.toFixed(2))) });
  const loadBefore = load();
  const byMtu: Record<string, unknown> = {};
  for (const mtu of MTUS) {
    console.error(`bench: uplink MTU ${mtu}: BPF run time per frame ...`);
    const rt = await runTimes(mtu);
    const tp = args['times-only'] ? { rows: [], runs: [] } : await throughput(mtu);
    byMtu[String(mtu)] = { bpfRunTimeNsPerFrame: Object.fromEntries(Object.entries(rt).map(([k, v]) => [k, Number(v.toFixed(k.endsWith('Share') ? 3 : 0))])), throughput: tp.rows, runs: tp.runs };
    console.log(`\nUplink MTU ${mtu}: BPF run time per frame (ns; frame sizes in bytes)`);
    console.table((byMtu[String(mtu)] as { bpfRunTimeNsPerFrame: Record<string, number> }).bpfRunTimeNsPerFrame);
    console.log(`Uplink MTU ${mtu}: pod-to-pod TCP throughput, ${SECONDS}s x ${ROUNDS} rounds (median), ratio to no capture`);
    console.table(tp.rows);
  }
  const result = {
    date: new Date().toISOString(),
    kernel: (await execa('uname', ['-r'])).stdout,
    cpus: (await execa('nproc')).stdout,
    seconds: SECONDS,
    rounds: ROUNDS,
    load: { before: loadBefore, after: load() },
    byUplinkMtu: byMtu,
  };
  console.log(`\nload average before ${loadBefore.loadavg.join(' ')}, after ${result.load.after.loadavg.join(' ')}`);
  const dir = join(import.meta.dirname, 'results');
  await mkdir(dir, { recursive: true });
  const file = join(dir, `datapath-${result.date.replace(/[:.]/g, '-')}.json`);
  await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`saved ${file}`);
}

await main();
