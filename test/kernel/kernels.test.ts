/**
 * The data plane on the running kernel, feature by feature: what
 * scripts/kernel-matrix.sh runs on every kernel it boots (the README's kernel
 * table names these tests), and the default suite on this machine's. One
 * capture per tunnel configuration, each with ICMP, UDP and TCP up to 65535
 * bytes inside IPv4 and IPv6, checked against tcpdump and by tshark: compact
 * because under qemu's TCG every process start costs seconds (so the
 * captures and the restart share one topology, and each capture's UDP comes
 * from one process).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sniffPolicies, type SniffPolicy } from '../../src/api/index.ts';
import { readCounters, writeConfig } from '../../src/datapath/bpftool.ts';
import { compileObject } from '../../src/datapath/compile.ts';
import { createRunner } from '../../src/datapath/exec.ts';
import { loadSharingNodeBudget, nodeBudgetPin } from '../../src/datapath/node-budget.ts';
import { kernelVariant } from '../../src/datapath/features.ts';
import { Lab } from '../lab/cluster.ts';
import { ExitCode } from '../../src/util/errors.ts';
import { definesFor, kernelDefines, loadTestObject, progRun, removePins, sniffLeftovers, TEST_CACHE, testConfig, testPinRoot } from '../helpers/bpf.ts';
import { buildFrame } from '../helpers/packets.ts';
import { diffMultiset, digestCounts, podtap, readFrames, startTcpdump, WAIT_SCALE, waitForLine, type Tcpdump } from '../helpers/capture.ts';
import { startCapture } from '../helpers/harness.ts';
import { createTopology, inNs, type Topology } from '../helpers/netns.ts';
import { ping, udpSendMany } from '../helpers/traffic.ts';

const root = testPinRoot();
afterAll(() => removePins(root));

// the captures' and the restart's topology (pod MTU 65535: 65507-byte pings
// leave the pod as single 65535-byte packets), made when first needed; each
// user leaves it as it found it (the restart test checks that)
let shared: Promise<Topology> | undefined;
// The uplink cuts UDP-tunnel GSO packets itself before they leave (as a NIC
// without UDP-tunnel segmentation would): a veth otherwise passes the TCP
// super-packets podtap sends whole (largeFrames: Segment) on to the
// collector's side uncut, and tcpdump there would see 64 KB outer packets
// that no wire carries.
const sharedTopology = () =>
  (shared ??= createTopology({ pods: 2, podMtu: 65535 }).then(async (t) => {
    await inNs(t.node, 'ethtool', ['-K', 'up0', 'tx-udp_tnl-segmentation', 'off', 'tx-udp_tnl-csum-segmentation', 'off']);
    return t;
  }));
afterAll(async () => (await shared?.catch(() => undefined))?.destroy());

describe('the variant podtap builds for this kernel', () => {
  it.each([
    { description: 'Geneve, outer IPv4', cfg: {} },
    { description: 'Geneve, outer IPv6', cfg: { collector: { address: '2001:db8:200::2', port: 6081 } } },
    { description: 'VXLAN, outer IPv4', cfg: { tunnel: { protocol: 'VXLAN' as const }, collector: { address: '198.18.200.2', port: 4789 } } },
  ])('loads: $description', async ({ cfg }) => {
    const obj = await loadTestObject(definesFor(testConfig(cfg)), root);
    for (const p of Object.values(obj.progs)) expect(p.id).toBeGreaterThan(0);
  });
});

describe("the node's mirror budget", () => {
  it('two objects share one bucket, and a clock reading older than its last refill adds nothing to it', async () => {
    // two policies' objects, loaded as sessions load them
    const built = await compileObject([...definesFor(testConfig()), ...(await kernelDefines())], { cacheDir: TEST_CACHE });
    const load = (session: string) => loadSharingNodeBudget(built.path, join(root, session, built.key), { logDir: join(tmpdir(), 'podtap-test-logs'), key: built.key, pinRoot: root });
    const objs = [await load('nb-a'), await load('nb-b')];
    for (const o of objs) await writeConfig(o.maps, { enabled: true, captureIfindex: 0, instance: 1, routeIfindex: 0, src: '198.18.200.1', dst: '198.18.200.2' });
    // two tokens (a full bucket at 2 packets/s), and a last refill far ahead of any clock
    // reading here (as another CPU that took the lock later would leave it):
    // whatever this kernel's speed, nothing refills while the test runs
    const v = Buffer.alloc(48); // struct pt_node: lock, pad, pps, bps, last_ns, pkt_tokens, byte_tokens
    v.writeBigUInt64LE(2n, 8);
    v.writeBigUInt64LE(process.hrtime.bigint() + 3_600_000_000_000n, 24); // CLOCK_MONOTONIC, as bpf_ktime_get_ns()
    v.writeBigUInt64LE(2n * 1_000_000_000n, 32);
    await execa('bpftool', ['map', 'update', 'pinned', nodeBudgetPin(root), 'key', '0', '0', '0', '0', 'value', ...[...v].map(String)]);
    const frame = buildFrame({ src: '198.18.1.2', dst: '198.18.2.2', proto: 'UDP' });
    for (const o of [...objs, ...objs]) await progRun(o.progs.pt_tap_ingress.path, frame);
    const counts = await Promise.all(objs.map((o) => readCounters(o.maps)));
    expect(counts.map((c) => c.matched.packets)).toEqual([2, 2]);
    expect(counts.reduce((n, c) => n + c.nodeRate.packets, 0), 'two of the four over the two tokens both objects share').toBe(2);
  });
});

/** tshark's fields of a capture file, one row per packet. */
async function fields(file: string, filter: string, names: string[]): Promise<string[][]> {
  // occurrence=f: the first (outer) header's field in a tunnelled packet
  const r = await execa('tshark', ['-r', file, '-o', 'ip.defragment:TRUE', '-Y', filter, '-T', 'fields', '-E', 'separator=\t', '-E', 'occurrence=f', ...names.flatMap((n) => ['-e', n])], { maxBuffer: 1 << 30 });
  return r.stdout.split('\n').filter(Boolean).map((l) => l.split('\t'));
}

const CAPTURES = [
  { name: 'Geneve over IPv4', tunnel: 'Geneve', outer: 'ip4', exact: true },
  { name: 'VXLAN over IPv4', tunnel: 'VXLAN', outer: 'ip4', exact: false },
  { name: 'Geneve over IPv6', tunnel: 'Geneve', outer: 'ip6', exact: true },
] as const;

for (const c of CAPTURES) {
  describe(c.name, () => {
    let topo: Topology;
    let dir = '';
    let sniff = '';
    let collector = '';
    const port = c.tunnel === 'Geneve' ? 6081 : 4789;

    beforeAll(async () => {
      topo = await sharedTopology();
      const [p1, p2] = topo.pods as [Topology['pods'][0], Topology['pods'][0]];
      const address = c.outer === 'ip6' ? topo.collector.ip6 : topo.collector.ip4;
      const run = await startCapture(topo, { collector: { address, port }, tunnel: { protocol: c.tunnel, vni: 4242 } }, [p1.hostIf], {
        tunnel: c.tunnel === 'Geneve' ? 'geneve' : 'vxlan',
        listen: c.outer === 'ip6' ? `[${address}]:${port}` : `${address}:${port}`,
        name: `${topo.prefix}-${c.tunnel.toLowerCase()}-${c.outer}`,
      });
      dir = run.dir;
      const dumps: Tcpdump[] = [
        await startTcpdump(topo.node, p1.hostIf, `${dir}/veth.pcap`),
        await startTcpdump(topo.collector.ns, 'eth0', `${dir}/tunnel.pcap`, ['udp', 'port', String(port)]),
      ];
      for (const size of [56, 1473, 65507]) expect(await ping(p1.ns, p2.ip4, { size, count: 1 })).toEqual({ sent: 1, received: 1 });
      for (const size of [56, 65000]) expect(await ping(p1.ns, p2.ip6, { size, count: 1, v6: true })).toEqual({ sent: 1, received: 1 });
      await udpSendMany(p1.ns, 9, [{ dst: p2.ip4, sizes: [100, 9000, 65507] }, { dst: p2.ip6, sizes: [65000] }]);
      // TCP: GSO super-packets on the veth, cut by the tunnel program
      const server = execa('nsenter', [`--net=/run/netns/${p2.ns}`, 'iperf3', '-s', '-1', '-p', '5299'], { reject: false });
      await new Promise((r) => setTimeout(r, 500));
      await execa('nsenter', [`--net=/run/netns/${p1.ns}`, 'iperf3', '-c', p2.ip4, '-p', '5299', '-n', '1M']);
      await server;
      await new Promise((r) => setTimeout(r, 500));
      for (const d of dumps) expect((await d.stop()).dropped, 'tcpdump dropped packets: the ground truth is incomplete').toBe(0);
      const s = await run.stop();
      expect(s.sniffExit, s.sniffOutput).toBe(0);
      sniff = s.sniffOutput;
      collector = s.collectorOutput;
      if (c.exact) expect(s.files).toHaveLength(1);
    }, 600_000);

    if (c.exact) {
      it('mirrors every frame of ICMP, UDP and TCP, in IPv4 and IPv6, byte-identical', async () => {
        // the pods' traffic: not ARP, not neighbour discovery (the kernel's
        // chatter, at times of its own, also outside tcpdump's window)
        const unicast = 'eth.dst.ig == 0 && !arp && !(icmpv6.type >= 133 && icmpv6.type <= 137)';
        const truth = await readFrames(`${dir}/veth.pcap`, unicast);
        const files = (await execa('find', [dir, '-name', '*.pcapng'])).stdout.split('\n').filter(Boolean);
        const got = await readFrames(files[0]!, unicast);
        expect(truth.length).toBeGreaterThan(20);
        // the 65535-byte packets travelled whole through the veth and came back whole
        expect(Math.max(...got.map((f) => f.len))).toBe(65535 + 14);
        const d = diffMultiset(digestCounts(truth), digestCounts(got));
        expect(d, `${JSON.stringify(d)}\n${collector}`).toEqual({ missing: 0, extra: 0, examples: [] });
      });
    }

    it(`a standard receiver decodes ${c.tunnel} and reassembles the 65535-byte packets from their pieces`, async () => {
      const proto = c.tunnel === 'Geneve' ? 'geneve' : 'vxlan';
      // the pieces of the pods' traffic (not the sniffer's announcements);
      // tshark shows Geneve's VNI in hex, VXLAN's in decimal
      const vnis = await fields(`${dir}/tunnel.pcap`, `${proto} && (icmp || icmpv6 || tcp || udp.port == 9)`, [`${proto}.vni`]);
      expect(vnis.length).toBeGreaterThan(10);
      expect(new Set(vnis.map((r) => Number(r[0])))).toEqual(new Set([4242]));
      // the outer packets: never fragmented, never above the 1500-byte MTU
      const outer = await fields(`${dir}/tunnel.pcap`, 'udp', c.outer === 'ip6' ? ['ipv6.plen', 'ipv6.nxt'] : ['ip.len', 'ip.flags.df', 'ip.flags.mf', 'ip.frag_offset']);
      expect(outer.length).toBeGreaterThan(100);
      for (const r of outer) {
        if (c.outer === 'ip6') expect([Number(r[0]) + 40 <= 1500, r[1]]).toEqual([true, '17']);
        else expect([Number(r[0]) <= 1500, ...r.slice(1)]).toEqual([true, '1', '0', '0']);
      }
      const rebuilt = await fields(`${dir}/tunnel.pcap`, 'icmp.type == 8 && ip.reassembled.length', ['ip.reassembled.length']);
      expect(rebuilt.map((r) => r[0])).toContain('65515'); // the 65507-byte ping's IP payload
    });

    it('counts every copy: all matched mirrored, big ones cut into pieces, nothing lost', () => {
      const n = (name: string) => Number(new RegExp(`\\b${name} (\\d+)`).exec(sniff)?.[1] ?? NaN);
      expect(n('matched'), sniff).toBeGreaterThan(20);
      expect(n('mirrored'), sniff).toBe(n('matched'));
      expect(n('fragmented'), sniff).toBeGreaterThanOrEqual(6);
      expect(n('pieces'), sniff).toBeGreaterThan(n('mirrored') + 6 * 40);
      expect(sniff).toMatch(/lost 0/);
      if (c.exact) expect(collector).toMatch(/lost 0,.* incomplete 0, kernel dropped 0\b/);
    });
  });
}

/**
 * SCTP: whether this kernel has it (this machine's is built without; the
 * matrix's Debian kernels load it as a module), and why not if not.
 */
async function sctpSupport(): Promise<{ ok: true } | { ok: false; why: string }> {
  const r = await execa('python3', ['-c', 'import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)'], { reject: false });
  return r.exitCode === 0 ? { ok: true } : { ok: false, why: r.stderr.trim().split('\n').pop() ?? `exit ${r.exitCode}` };
}
const SCTP = await sctpSupport();
// one association per address family; messages up to 60000 bytes (one
// packet each at the pods' 65535-byte MTU, or a GSO packet of several)
const SCTP_SIZES = [100, 1400, 9000, 60000];
const SCTP_PORT = 9899;

describe('SCTP, its CRC32c offloaded', () => {
  if (!SCTP.ok) {
    // the matrix's table says "no SCTP" for this kernel (report.ts), and
    // the only reason allowed is the kernel's (not, say, a missing python3)
    it(`this kernel has no SCTP: ${SCTP.why}`, () => {
      expect(SCTP.why).toMatch(/Errno 93\b|Protocol not supported/);
    });
    return;
  }
  it('mirrors every SCTP packet byte-identical through an uplink that cannot compute CRC32c, and a standard receiver reassembles them', async () => {
    const topo = await sharedTopology();
    const [p1, p2] = topo.pods as [Topology['pods'][0], Topology['pods'][0]];
    // a device without SCTP CRC offload: were a piece still to carry the
    // copy's offloaded CRC32c, the kernel would write it into the piece here
    await inNs(topo.node, 'ethtool', ['-K', 'up0', 'tx-checksum-sctp', 'off']);
    try {
      const run = await startCapture(topo, { collector: { address: topo.collector.ip4 }, tunnel: { protocol: 'Geneve' } }, [p1.hostIf], { name: `${topo.prefix}-sctp` });
      const dumps = [
        await startTcpdump(topo.node, p1.hostIf, `${run.dir}/veth.pcap`, ['sctp']),
        await startTcpdump(topo.collector.ns, 'eth0', `${run.dir}/tunnel.pcap`, ['udp', 'port', '6081']),
      ];
      const server = execa('nsenter', [`--net=/run/netns/${p2.ns}`, 'python3', '-c', `
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(('::', ${SCTP_PORT}))
s.listen(2)
print('ready', flush=True)
for _ in range(2):
    c, _ = s.accept()
    n = 0
    while True:
        d = c.recv(1 << 17)
        if not d:
            break
        n += len(d)
    c.close()
    print(n, flush=True)
`]);
      await waitForLine(server, /ready/, 30_000 * WAIT_SCALE);
      await execa('nsenter', [`--net=/run/netns/${p1.ns}`, 'python3', '-c', `
import socket, time
for fam, dst in ((socket.AF_INET, '${p2.ip4}'), (socket.AF_INET6, '${p2.ip6}')):
    s = socket.socket(fam, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    s.connect((dst, ${SCTP_PORT}))
    for n in ${JSON.stringify(SCTP_SIZES)}:
        s.sendall(bytes([n & 0xff]) * n)
        time.sleep(0.02)
    s.close()
`]);
      const got = await server;
      const sum = SCTP_SIZES.reduce((a, b) => a + b, 0);
      expect(got.stdout.split('\n').slice(1).map(Number), 'bytes the server received per association').toEqual([sum, sum]);
      await new Promise((r) => setTimeout(r, 500));
      for (const d of dumps) expect((await d.stop()).dropped, 'tcpdump dropped packets: the ground truth is incomplete').toBe(0);
      const s = await run.stop();
      expect(s.sniffExit, s.sniffOutput).toBe(0);
      expect(s.sniffOutput).toMatch(/lost 0/);
      const truth = await readFrames(`${run.dir}/veth.pcap`, 'sctp');
      const files = (await execa('find', [run.dir, '-name', '*.pcapng'])).stdout.split('\n').filter(Boolean);
      expect(files).toHaveLength(1);
      const mine = await readFrames(files[0]!, 'sctp');
      // both associations: INIT … DATA … SHUTDOWN, and the 60000-byte message whole
      expect(truth.length).toBeGreaterThan(16);
      expect(Math.max(...truth.map((f) => f.len))).toBeGreaterThan(60000);
      const d = diffMultiset(digestCounts(truth), digestCounts(mine));
      expect(d, `${JSON.stringify(d)}\n${s.collectorOutput}`).toEqual({ missing: 0, extra: 0, examples: [] });
      // a standard receiver: the big SCTP packets rebuilt from their pieces
      const rebuilt = await fields(`${run.dir}/tunnel.pcap`, 'sctp && (ip.reassembled.length || ipv6.reassembled.length)', ['frame.number']);
      expect(rebuilt.length, 'SCTP packets tshark reassembled from the tunnel').toBeGreaterThanOrEqual(2);
    } finally {
      await inNs(topo.node, 'ethtool', ['-K', 'up0', 'tx-checksum-sctp', 'on']);
    }
  }, 600_000);
});

describe('restart and cleanup', () => {
  it('a sniffer killed with -9 leaves the capture running; the next adopts it without a second filter and removes everything', async () => {
    const topo = await sharedTopology();
    const [p1, p2] = topo.pods as [Topology['pods'][0], Topology['pods'][0]];
    // what others left on this host is not ours to judge
    const before = await sniffLeftovers(createRunner(topo.node));
    const run = await startCapture(topo, { collector: { address: topo.collector.ip4 }, filter: { protocols: ['ICMP'] } }, [p1.hostIf], { name: `${topo.prefix}-restart` });
    run.sniff.kill('SIGKILL');
    await run.sniff;
    const filters = async () => JSON.parse(await inNs(topo.node, 'tc', ['-j', 'filter', 'show', 'dev', p1.hostIf, 'ingress'])) as { options?: { prog?: { name: string } } }[];
    expect((await filters()).filter((f) => f.options?.prog?.name === 'pt_tap_ingress')).toHaveLength(1);
    // still mirroring without its process
    expect(await ping(p1.ns, p2.ip4, { count: 2 })).toEqual({ sent: 2, received: 2 });
    const again = podtap(topo.node, ['sniff', '--policy', `${run.dir}/policy.yaml`, '--iface', p1.hostIf, '--quiet']);
    await waitForLine(again, /podtap: tapping/, 60_000 * WAIT_SCALE);
    expect((await filters()).filter((f) => f.options?.prog?.name === 'pt_tap_ingress')).toHaveLength(1);
    expect(await ping(p1.ns, p2.ip4, { count: 2 })).toEqual({ sent: 2, received: 2 });
    again.kill('SIGINT');
    expect((await again).exitCode).toBe(0);
    run.collector.kill('SIGTERM');
    await run.collector;
    const files = (await execa('find', [run.dir, '-name', '*.pcapng'])).stdout.split('\n').filter(Boolean);
    // two pings before the restart, two after, each request and reply once
    expect(await readFrames(files[0]!, 'icmp')).toHaveLength(8);
    expect(await sniffLeftovers(createRunner(topo.node))).toEqual(before);
  });
});

describe('what this kernel cannot do', () => {
  let topo: Topology | undefined;
  afterAll(() => topo?.destroy());

  it('a 9000-byte uplink: served where veth has multi-buffer XDP, else refused naming the kernel and the feature', async () => {
    const frags = (await kernelVariant(createRunner(), { pinRoot: root })).xdpFrags;
    topo = await createTopology({ pods: 1, uplinkMtu: 9000 });
    const before = await sniffLeftovers(createRunner(topo.node));
    const run = await startCapture(topo, { collector: { address: topo.collector.ip4 } }, [topo.pods[0]!.hostIf], { name: topo.prefix }).catch((err: unknown) => err as Error);
    if (frags) {
      expect(run).not.toBeInstanceOf(Error);
      const s = await (run as Awaited<ReturnType<typeof startCapture>>).stop();
      expect(s.sniffExit, s.sniffOutput).toBe(0);
      return;
    }
    // startCapture waits for "tapping": the sniffer exited first
    expect(run).toBeInstanceOf(Error);
    const out = (run as Error).message;
    expect(out).toMatch(new RegExp(`kernel ${release().replace(/[.+]/g, '\\$&')} lacks multi-buffer XDP \\(xdp\\.frags\\) \\(5\\.18\\), needed for an uplink MTU of 9000`));
    expect(out).toMatch(new RegExp(`process exited \\(${ExitCode.kernelUnsupported}\\)`));
    expect(await sniffLeftovers(createRunner(topo.node))).toEqual(before);
  });

  it('the agent: a policy with a 9000-byte MTU is Ready where the kernel serves it, else refused on the node as KernelUnsupported', async () => {
    const frags = (await kernelVariant(createRunner(), { pinRoot: root })).xdpFrags;
    const lab = await Lab.start({ pods: [{ namespace: 'demo', name: 'web-1', labels: { app: 'web' } }], uplinkMtu: 9000 });
    const out = await mkdtemp(join(tmpdir(), 'podtap-kernels-'));
    try {
      lab.startCollector(out);
      lab.startController();
      const agent = lab.startAgent();
      const policies = sniffPolicies(lab.client);
      await policies.create({
        apiVersion: 'podtap.io/v1alpha1', kind: 'SniffPolicy', metadata: { name: 'jumbo', namespace: 'demo' },
        spec: { podSelector: { matchLabels: { app: 'web' } }, collector: { address: lab.topo.collector.ip4 }, mtu: 9000 },
      } as unknown as SniffPolicy);
      const want = frags ? { status: 'True', reason: 'Attached' } : { status: 'False', reason: 'KernelUnsupported' };
      const deadline = performance.now() + 60_000 * WAIT_SCALE;
      let ready: { status?: string; reason?: string; message?: string } | undefined;
      while (performance.now() < deadline) {
        ready = (await policies.get('demo', 'jumbo')).status?.conditions?.find((c) => c.type === 'Ready');
        if (ready?.reason === want.reason) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      expect(ready, agent.output().slice(-3000)).toMatchObject(want);
      if (!frags) {
        expect(ready?.message).toMatch(new RegExp(`node-a \\(KernelUnsupported: kernel ${release().replace(/[.+]/g, '\\$&')} lacks multi-buffer XDP`));
      }
    } finally {
      await lab.stop();
      await rm(out, { recursive: true, force: true });
    }
  });
});
