/**
 * Every matched packet delivered whole or counted, whatever the uplink's
 * offload settings. A veth uplink never completes a checksum and passes GSO
 * packets on; with its offloads turned off (ethtool -K) the kernel does the
 * work in software before the packet leaves, as it does for a NIC without
 * them: checksums written at csum_start + csum_offset, super-packets cut
 * into segments. Pod traffic of every kind — TCP bulk (GSO super-packets with
 * offloaded checksums, sent for the kernel to segment), small TCP, UDP up to
 * 65507 bytes (one skb with an offloaded checksum, cut into pieces), pings of
 * every size, IPv6 — must reach the collector byte-identical to what tcpdump
 * saw on the veth, with nothing counted lost.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { compareCapture, diffMultiset, digestCounts, podtap, readFrames, startTcpdump, waitForLine } from '../helpers/capture.ts';
import { policyYaml, startCapture } from '../helpers/harness.ts';
import { createTopology, inNs, type Topology } from '../helpers/netns.ts';
import { ping, udpSend } from '../helpers/traffic.ts';

let topo: Topology | undefined;
afterEach(async () => {
  await topo?.destroy();
  topo = undefined;
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const SETTINGS: { description: string; features: string[] }[] = [
  { description: 'all offloads on (a veth passes checksums and GSO on)', features: [] },
  { description: 'tx off: checksums completed in software', features: ['tx', 'off'] },
  { description: 'UDP tunnel segmentation off: GSO in software', features: ['tx-udp_tnl-segmentation', 'off', 'tx-udp_tnl-csum-segmentation', 'off'] },
  { description: 'tso, gso and sg off', features: ['tso', 'off', 'gso', 'off', 'sg', 'off'] },
];

describe('uplink offload settings', () => {
  it.each(SETTINGS)('$description', async ({ features }) => {
    topo = await createTopology({ pods: 2, podMtu: 9000 });
    const [p1, p2] = topo.pods as [Topology['pods'][0], Topology['pods'][0]];
    if (features.length) await inNs(topo.node, 'ethtool', ['-K', 'up0', ...features]);
    const run = await startCapture(topo, { collector: { address: topo.collector.ip4 } }, [p1.hostIf], { name: topo.prefix });
    const truthIn = await startTcpdump(topo.node, p1.hostIf, `${run.dir}/in.pcap`, ['-Q', 'in']);
    const truthOut = await startTcpdump(topo.node, p1.hostIf, `${run.dir}/out.pcap`, ['-Q', 'out']);
    for (const size of [56, 1400, 8000, 30000]) expect((await ping(p1.ns, p2.ip4, { size, count: 2 })).received).toBe(2);
    for (const size of [56, 1400, 20000]) expect((await ping(p1.ns, p2.ip6, { size, count: 2, v6: true })).received).toBe(2);
    await udpSend(p1.ns, p2.ip4, 9, [100, 1473, 8973, 30000, 65507]);
    await udpSend(p1.ns, p2.ip6, 9, [100, 1453, 30000]);
    // TCP both ways: GSO super-packets from the pod, ACKs and small
    // segments to it; paced so that tcpdump and the collector keep up
    for (const [from, to, port] of [[p1, p2, 5303], [p2, p1, 5304]] as const) {
      const server = execa('nsenter', [`--net=/run/netns/${to.ns}`, 'iperf3', '-s', '-1', '-p', String(port)], { reject: false });
      await sleep(300);
      await execa('nsenter', [`--net=/run/netns/${from.ns}`, 'iperf3', '-c', to.ip4, '-p', String(port), '-t', '2', '-b', '20M']);
      await server;
    }
    await sleep(500);
    expect((await truthIn.stop()).dropped).toBe(0);
    expect((await truthOut.stop()).dropped).toBe(0);
    const s = await run.stop();
    expect(s.sniffOutput).toMatch(/lost 0/);
    expect(s.collectorOutput, 'the collector could not keep up (its socket overflowed)').toMatch(/kernel dropped 0\b/);
    // the super-packets took the kernel-segmented path
    expect(Number(/segmented (\d+)/.exec(s.sniffOutput)?.[1] ?? 0), s.sniffOutput).toBeGreaterThan(0);
    for (const dir of ['in', 'out'] as const) {
      const c = await compareCapture(s.files[0]!, `${run.dir}/${dir}.pcap`, p1.hostIf, dir);
      expect(c.truth).toBeGreaterThan(50);
      expect(c.diff, `${dir}: tcpdump ${c.truth} frames, collector ${c.got}\n${s.collectorOutput}`).toEqual({ missing: 0, extra: 0, examples: [] });
    }
  });
});

describe('VXLAN to a Linux VXLAN device, the uplink computing checksums in software', () => {
  let running: ReturnType<typeof podtap> | undefined;
  for (const family of ['IPv4', 'IPv6'] as const) {
    it(`${family} outer: the device decodes every tunnel packet, whose reserved fields are zero`, async () => {
      topo = await createTopology({ pods: 2, podMtu: 9000 });
      const [p1, p2] = topo.pods as [Topology['pods'][0], Topology['pods'][0]];
      const local = family === 'IPv4' ? topo.collector.ip4 : topo.collector.ip6;
      // the receiver: the kernel's own VXLAN device, no podtap collector
      await inNs(topo.collector.ns, 'ip', ['link', 'add', 'vx0', 'type', 'vxlan', 'id', '4242', 'dstport', '4789', 'local', local, 'nolearning']);
      // GRO off: the device would merge the segments of a super-packet back
      await inNs(topo.collector.ns, 'ethtool', ['-K', 'vx0', 'gro', 'off']);
      await inNs(topo.collector.ns, 'ip', ['link', 'set', 'vx0', 'up']);
      await inNs(topo.node, 'ethtool', ['-K', 'up0', 'tx', 'off']);
      const dir = await mkdtemp(join(tmpdir(), 'podtap-vx-'));
      try {
        const decoded = await startTcpdump(topo.collector.ns, 'vx0', `${dir}/decoded.pcap`, ['-Q', 'in']);
        const wire = await startTcpdump(topo.collector.ns, 'eth0', `${dir}/wire.pcap`, ['udp', 'port', '4789']);
        const truth = await startTcpdump(topo.node, p1.hostIf, `${dir}/truth.pcap`, ['-Q', 'in']);
        await writeFile(`${dir}/policy.yaml`, policyYaml({ collector: { address: local, port: 4789 }, tunnel: { protocol: 'VXLAN', vni: 4242 }, policyTypes: ['Egress'] }, topo.prefix));
        const sniff = podtap(topo.node, ['sniff', '--policy', `${dir}/policy.yaml`, '--iface', p1.hostIf, '--quiet']);
        running = sniff;
        await waitForLine(sniff, /podtap: tapping/, 60_000);
        for (const size of [56, 1400, 8000]) expect((await ping(p1.ns, p2.ip4, { size, count: 2 })).received).toBe(2);
        const server = execa('nsenter', [`--net=/run/netns/${p2.ns}`, 'iperf3', '-s', '-1', '-p', '5307'], { reject: false });
        await sleep(300);
        await execa('nsenter', [`--net=/run/netns/${p1.ns}`, 'iperf3', '-c', p2.ip4, '-p', '5307', '-t', '1', '-b', '30M']);
        await server;
        await sleep(300);
        sniff.kill('SIGINT');
        const out = String((await sniff).all ?? '');
        running = undefined;
        for (const t of [decoded, wire, truth]) expect((await t.stop()).dropped).toBe(0);
        expect(out).toMatch(/lost 0/);
        // data packets (I flag; announcements also reach the port)
        const payloads = (await execa('tshark', ['-r', `${dir}/wire.pcap`, '-Y', 'vxlan.flag_i == 1', '-T', 'fields', '-e', 'udp.payload'])).stdout.split('\n').filter(Boolean);
        expect(payloads.length).toBeGreaterThan(50);
        const bad = payloads.filter((h) => h.slice(2, 8) !== '000000' || h.slice(14, 16) !== '00');
        expect(bad.slice(0, 3), `${bad.length} VXLAN headers with reserved bits set`).toEqual([]);
        const got = (await readFrames(`${dir}/decoded.pcap`)).length;
        expect(got, 'frames the VXLAN device decoded').toBe(payloads.length);
        // the pings that fit whole (no offloaded checksum), byte for byte
        const pings = 'icmp && eth.dst.ig == 0 && ip.flags.mf == 0 && ip.frag_offset == 0 && frame.len <= 1464';
        const d = diffMultiset(digestCounts(await readFrames(`${dir}/truth.pcap`, pings)), digestCounts(await readFrames(`${dir}/decoded.pcap`, pings)));
        expect(d).toEqual({ missing: 0, extra: 0, examples: [] });
      } finally {
        running?.kill('SIGINT');
        await running;
        running = undefined;
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});
