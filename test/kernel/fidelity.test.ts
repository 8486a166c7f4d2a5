/**
 * Data-plane fidelity: what the node, the network and a standard receiver see
 * of the tunnel, and what the capture keeps of each frame.
 */
import { readdir } from 'node:fs/promises';
import { execa } from 'execa';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { SniffPolicy } from '../../src/api/index.ts';
import { PIN_ROOT } from '../../src/datapath/session.ts';
import { sessionIdFor } from '../../src/sniff/sniff.ts';
import { readCounterRows, readCounters } from '../../src/datapath/bpftool.ts';
import { TUNNELS } from '../../src/wire/sizes.ts';
import { loadMarks, loadVlanTagger, removePins, testPinRoot } from '../helpers/bpf.ts';
import { compareCapture, startTcpdump } from '../helpers/capture.ts';
import { startCapture } from '../helpers/harness.ts';
import { createTopology, inNs, type Topology } from '../helpers/netns.ts';
import { ping } from '../helpers/traffic.ts';

let topo: Topology | undefined;
afterEach(async () => {
  await topo?.destroy();
  topo = undefined;
});
const pins: string[] = [];
afterAll(async () => {
  for (const p of pins) await removePins(p);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
type Pod = Topology['pods'][0];

/** tshark fields of a capture, one array per packet. */
async function fields(file: string, filter: string, names: string[], extra: string[] = []): Promise<string[][]> {
  const r = await execa('tshark', ['-r', file, '-Y', filter, '-T', 'fields', '-E', 'separator=\t', ...extra, ...names.flatMap((n) => ['-e', n])], { maxBuffer: 1 << 30 });
  return r.stdout.split('\n').filter(Boolean).map((l) => l.split('\t'));
}

/** The maps of the sniffer's session for policy @name. */
async function sessionMaps(name: string): Promise<string> {
  const dir = `${PIN_ROOT}/${sessionIdFor({ metadata: { name, namespace: 'default' } } as SniffPolicy)}`;
  const [key] = await readdir(dir);
  return `${dir}/${key}/maps`;
}

/** Per-CPU packet counts of counter @reason (enum pt_reason). */
async function perCpu(maps: string, reason: number): Promise<number[]> {
  return ((await readCounterRows(maps)).find((r) => r.key === reason)?.perCpu ?? []).map((v) => v.packets);
}

describe('data-plane fidelity', () => {
  it('keeps a hardware-offloaded VLAN tag in the captured frame, not on the tunnel', async () => {
    topo = await createTopology({ pods: 2, podMtu: 9000 });
    const [p1, p2] = topo.pods as [Pod, Pod];
    // towards the pod: a program before podtap's tap tags each packet as a
    // VLAN device on a link with transmit VLAN offload does (skb->vlan_tci);
    // tcpdump, after the egress programs, shows the tag in the frame
    const root = testPinRoot();
    pins.push(root);
    const tagger = await loadVlanTagger(root);
    await inNs(topo.node, 'tc', ['qdisc', 'add', 'dev', p1.hostIf, 'clsact']);
    await inNs(topo.node, 'tc', ['filter', 'add', 'dev', p1.hostIf, 'egress', 'pref', '1', 'bpf', 'da', 'object-pinned', tagger]);
    const run = await startCapture(topo, { collector: { address: topo.collector.ip4 } }, [p1.hostIf], { name: topo.prefix });
    const truthIn = await startTcpdump(topo.node, p1.hostIf, `${run.dir}/in.pcap`, ['-Q', 'in']);
    const truthOut = await startTcpdump(topo.node, p1.hostIf, `${run.dir}/out.pcap`, ['-Q', 'out']);
    // to the pod: tagged in skb->vlan_tci (the pod, with no VLAN device, drops
    // them, its neighbour answers too: a permanent entry for it)
    const mac = (JSON.parse(await inNs(p1.ns, 'ip', ['-j', 'link', 'show', 'eth0'])) as { address: string }[])[0]!.address;
    await inNs(topo.node, 'ip', ['neigh', 'replace', p1.ip4, 'lladdr', mac, 'dev', p1.hostIf, 'nud', 'permanent']);
    for (const size of [56, 1400, 8000]) await ping(p2.ns, p1.ip4, { size, count: 2 });
    // from the pod: frames tagged in their bytes, which the host's receive
    // path moves into skb->vlan_tci before any tap sees them
    await execa('nsenter', [`--net=/run/netns/${p1.ns}`, 'python3', '-c', `
import socket, struct
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('eth0', 0))
for n in (64, 1400, 8000):
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + n, 7, 0, 64, 253, 0, bytes([198, 18, 11, 2]), bytes([198, 18, 12, 2]))
    s.send(b'\\x02' * 6 + b'\\x04' * 6 + struct.pack('!HHH', 0x8100, 100, 0x0800) + ip + bytes(n))
`]);
    await sleep(300);
    await truthIn.stop();
    await truthOut.stop();
    const s = await run.stop();
    expect(s.sniffOutput).toMatch(/lost 0/);
    for (const dir of ['in', 'out'] as const) {
      const c = await compareCapture(s.files[0]!, `${run.dir}/${dir}.pcap`, p1.hostIf, dir, 'vlan');
      expect(c.truth, `${dir}: tagged frames`).toBeGreaterThanOrEqual(dir === 'in' ? 3 : 6);
      expect(c.diff, `${dir}: tcpdump ${c.truth}, collector ${c.got}`).toEqual({ missing: 0, extra: 0, examples: [] });
    }
  });

  it('gives frames cut on different CPUs different IPv4 identifications', async () => {
    topo = await createTopology({ pods: 2, podMtu: 65535 });
    const [p1, p2] = topo.pods as [Pod, Pod];
    const run = await startCapture(topo, { collector: { address: topo.collector.ip4 }, policyTypes: ['Egress'], filter: { protocols: ['ICMP'] } }, [p1.hostIf], { name: topo.prefix });
    const wire = await startTcpdump(topo.collector.ns, 'eth0', `${run.dir}/wire.pcap`, ['udp', 'port', '6081']);
    // the tap runs on the sending CPU: 4200 frames cut on CPU 0, 300 on CPU 1
    // (numbered per CPU, so the old seq ^ (cpu << 12) collided here)
    const flood = (cpu: number, count: number) =>
      execa('nsenter', [`--net=/run/netns/${p1.ns}`, 'taskset', '-c', String(cpu), 'ping', '-q', '-f', '-c', String(count), '-s', '3000', p2.ip4], { reject: false });
    await flood(0, 4200);
    await flood(1, 300);
    await sleep(500);
    expect((await wire.stop()).dropped).toBe(0);
    const s = await run.stop();
    expect(s.sniffOutput).toMatch(/lost 0/);
    // first piece of each frame: inner IPv4 identification (inner = last
    // occurrence) and the ICMP sequence number and CPU that tell frames apart
    const rows = await fields(`${run.dir}/wire.pcap`, 'icmp.type == 8', ['ip.id', 'icmp.seq', 'geneve.option.unknown.data'], ['-E', 'occurrence=l', '-d', 'udp.port==6081,geneve']);
    expect(rows.length).toBeGreaterThanOrEqual(4000);
    const owner = new Map<string, string>();
    const clashes: string[] = [];
    for (const [id, icmpSeq, opt] of rows) {
      const frame = `${icmpSeq}/${opt!.slice(12, 16)}`; // ICMP sequence + pt_meta.cpu
      const had = owner.get(id!);
      if (had !== undefined && had !== frame) clashes.push(`${id}: ${had} and ${frame}`);
      owner.set(id!, frame);
    }
    expect(clashes.slice(0, 5), `${clashes.length} identifications given to two frames`).toEqual([]);
  });

  it('spreads flows over outer source ports (entropy), each flow on one', async () => {
    topo = await createTopology({ pods: 2 });
    const [p1, p2] = topo.pods as [Pod, Pod];
    const run = await startCapture(topo, { collector: { address: topo.collector.ip4 }, policyTypes: ['Egress'], filter: { protocols: ['TCP'] } }, [p1.hostIf], { name: topo.prefix });
    const wire = await startTcpdump(topo.collector.ns, 'eth0', `${run.dir}/wire.pcap`, ['udp', 'port', '6081']);
    const server = execa('nsenter', [`--net=/run/netns/${p2.ns}`, 'iperf3', '-s', '-1', '-p', '5305'], { reject: false });
    await sleep(300);
    // eight flows from one CPU
    await execa('nsenter', [`--net=/run/netns/${p1.ns}`, 'taskset', '-c', '0', 'iperf3', '-c', p2.ip4, '-p', '5305', '-t', '1', '-P', '8', '-b', '5M']);
    await server;
    await sleep(300);
    await wire.stop();
    await run.stop();
    const rows = await fields(`${run.dir}/wire.pcap`, 'tcp', ['udp.srcport', 'tcp.srcport', 'geneve.option.unknown.data'], ['-E', 'occurrence=f', '-d', 'udp.port==6081,geneve']);
    const byFlow = new Map<string, Set<string>>();
    for (const [sport, tcpSport, opt] of rows) {
      const key = `${tcpSport}/${opt!.slice(12, 16)}`; // inner flow, CPU
      byFlow.set(key, (byFlow.get(key) ?? new Set()).add(sport!));
    }
    const ports = new Set(rows.map((r) => r[0]));
    expect(ports.size, `outer source ports of 8 flows: ${[...ports].join(' ')}`).toBeGreaterThanOrEqual(4);
    for (const [flow, sports] of byFlow) expect([...sports], `flow ${flow}`).toHaveLength(1);
  });

  it("sends pieces with no mark and leaves the pod's packets' marks as a CNI set them", async () => {
    topo = await createTopology({ pods: 2, podMtu: 9000 });
    const [p1, p2] = topo.pods as [Pod, Pod];
    const root = testPinRoot();
    pins.push(root);
    const marks = await loadMarks(root);
    // a CNI marks the pod's packets before podtap's tap (Cilium's identity
    // bits, 0x0f00 magic) and reads them after it
    const cni = 0xabcd0f00;
    await marks.want(cni);
    await inNs(topo.node, 'tc', ['qdisc', 'add', 'dev', p1.hostIf, 'clsact']);
    await inNs(topo.node, 'tc', ['filter', 'add', 'dev', p1.hostIf, 'ingress', 'pref', '1', 'bpf', 'da', 'object-pinned', marks.set]);
    const run = await startCapture(topo, { collector: { address: topo.collector.ip4 } }, [p1.hostIf], { name: topo.prefix });
    const after = testPinRoot();
    pins.push(after);
    const witness = await loadMarks(after);
    await witness.want(cni);
    await inNs(topo.node, 'tc', ['filter', 'add', 'dev', p1.hostIf, 'ingress', 'pref', '60000', 'bpf', 'da', 'object-pinned', witness.count]);
    // what leaves through the uplink
    await inNs(topo.node, 'tc', ['qdisc', 'add', 'dev', 'up0', 'clsact']);
    const uplink = testPinRoot();
    pins.push(uplink);
    const out = await loadMarks(uplink);
    // the tunnel's packets, not the node's own (its MLD reports read 0xd4)
    await out.onlyUdpTo(TUNNELS.Geneve.port);
    await inNs(topo.node, 'tc', ['filter', 'add', 'dev', 'up0', 'egress', 'pref', '1', 'bpf', 'da', 'object-pinned', out.count]);
    for (const size of [56, 8000]) expect((await ping(p1.ns, p2.ip4, { size, count: 3 })).received).toBe(3);
    await sleep(300);
    const s = await run.stop();
    expect(s.sniffOutput).toMatch(/lost 0/);
    const w = await witness.read();
    expect(w.zero + w.other, 'packets the CNI filter after the tap saw').toBeGreaterThan(0);
    expect(w.changed, "pod packets whose mark the tap changed").toBe(0);
    const o = await out.read();
    expect(o.zero, 'tunnel packets').toBeGreaterThan(6);
    expect({ marked: o.other, bits: o.bits.toString(16) }).toEqual({ marked: 0, bits: '0' });
  });

  it("cuts each CPU's large frames on that CPU (a capture-device queue per CPU)", async () => {
    topo = await createTopology({ pods: 2, podMtu: 65535 });
    const [p1, p2] = topo.pods as [Pod, Pod];
    const run = await startCapture(topo, { collector: { address: topo.collector.ip4 }, policyTypes: ['Egress'], filter: { protocols: ['UDP'] } }, [p1.hostIf], { name: topo.prefix });
    const maps = await sessionMaps(topo.prefix);
    const send = (cpu: number) =>
      execa('nsenter', [`--net=/run/netns/${p1.ns}`, 'taskset', '-c', String(cpu), `${process.cwd()}/node_modules/.bin/node`, '--input-type=module', '-e', `
        import { createSocket } from 'node:dgram';
        const s = createSocket('udp4');
        for (let i = 0; i < 200; i++) {
          await new Promise((r) => s.send(Buffer.alloc(30000, i), 9, '${p2.ip4}', () => r()));
          if (i % 10 === 9) await new Promise((r) => setTimeout(r, 20));
        }
        s.close();`]);
    await Promise.all([send(0), send(1)]);
    await sleep(500);
    // frames taken on each CPU (tunnelIn, 7) and frames cut into pieces on
    // each CPU (fragmented, 9): every 30 KB frame goes through a carrier
    const taken = await perCpu(maps, 7);
    const cut = await perCpu(maps, 9);
    const s = await run.stop();
    expect(s.sniffOutput).toMatch(/lost 0/);
    expect(taken.slice(0, 2).every((n) => n >= 200), `taken per CPU: ${taken}`).toBe(true);
    expect(cut.slice(0, 2), `cut per CPU (taken: ${taken})`).toEqual(taken.slice(0, 2));
  });

  it('never lets a late carrier cut the frame that took over its slot', async () => {
    topo = await createTopology({ pods: 2, podMtu: 65535 });
    const [p1, p2] = topo.pods as [Pod, Pod];
    const run = await startCapture(topo, { collector: { address: topo.collector.ip4 }, policyTypes: ['Egress'], filter: { protocols: ['ICMP'] } }, [p1.hostIf], { name: topo.prefix });
    const maps = await sessionMaps(topo.prefix);
    const cap = (await inNs(topo.node, 'ip', ['-o', 'link', 'show'])).split('\n').map((l) => /^\d+: (ptc[a-z0-9]+)@/.exec(l)?.[1]).find(Boolean)!;
    // carriers now queue at 20 kbit/s (~100 ms each) to cross the capture
    // veth: a slot is reclaimed after 100 ms while its carrier still waits
    await inNs(topo.node, 'tc', ['qdisc', 'add', 'dev', cap, 'root', 'tbf', 'rate', '20kbit', 'burst', '600', 'latency', '20s']);
    const burst = () => execa('nsenter', [`--net=/run/netns/${p1.ns}`, 'taskset', '-c', '0', 'ping', '-q', '-c', '15', '-i', '0.002', '-W', '1', '-s', '20000', p2.ip4], { reject: false });
    await burst(); // fills the 15 stash slots of CPU 0
    await sleep(150);
    await burst(); // each one stashed > 100 ms ago is reclaimed: its frame counted lost
    // the 30 carriers drain (the first burst's late)
    const maxWait = Date.now() + 15_000;
    let c = await readCounters(maps);
    while (c.mirrored.packets + c.carrierStale.packets < 30 && Date.now() < maxWait) {
      await sleep(250);
      c = await readCounters(maps);
    }
    const s = await run.stop();
    expect(c.tunnelIn.packets).toBe(30);
    expect(c.carrierLost.packets, JSON.stringify(c)).toBeGreaterThan(0);
    // every reclaimed slot's carrier came late, and was refused: it would
    // have cut the frame that took over its slot
    expect(c.carrierStale.packets).toBe(c.carrierLost.packets);
    expect(c.foreign.packets).toBe(0);
    expect(c.mirrored.packets + c.carrierLost.packets).toBe(30);
    expect(s.collectorOutput).toMatch(new RegExp(`rebuilt ${c.mirrored.packets} packets`));
  });
});
