/**
 * The node capture service's order (src/capture/service.ts), seen from the
 * collector's wire by tcpdump while a pod sends all the time, through
 * `podtap sniff` (which uses the service as the agent does):
 *   - the interfaces are announced before the first copy can arrive;
 *   - a caller that needs the collector (sniff) is stopped by an unreachable
 *     one before anything is attached: not one copy leaves the node.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/util/errors.ts';
import { decodeAnnouncement } from '../../src/wire/announce.ts';
import { parseTunnelDatagram } from '../../src/wire/format.ts';
import { podtap, startTcpdump, waitForLine } from '../helpers/capture.ts';
import { policyYaml, startCollector, tempDir } from '../helpers/harness.ts';
import { createTopology, NODE_BIN, type Topology } from '../helpers/netns.ts';

let topo: Topology | undefined;
afterEach(async () => {
  if (topo) {
    await execa('nsenter', [`--net=/run/netns/${topo.node}`, NODE_BIN, 'src/cli/main.ts', 'cleanup'], { reject: false });
    await topo.destroy();
  }
  topo = undefined;
});

/** The UDP payloads of an IPv4 Ethernet pcap file, in order. */
async function udpPayloads(file: string): Promise<Buffer[]> {
  const b = await readFile(file);
  const out: Buffer[] = [];
  for (let off = 24; off + 16 <= b.length; ) {
    const len = b.readUInt32LE(off + 8);
    const frame = b.subarray(off + 16, off + 16 + len);
    off += 16 + len;
    if (frame.readUInt16BE(12) !== 0x0800 || frame[14 + 9] !== 17) continue;
    const udp = 14 + (frame[14]! & 0x0f) * 4;
    out.push(frame.subarray(udp + 8));
  }
  return out;
}

/** What reached the collector: its announcements of @ifname and podtap's data pieces, in order. */
function classify(payloads: Buffer[], ifname: string): ('announcement' | 'piece' | 'other')[] {
  return payloads.map((p) => {
    if (parseTunnelDatagram(p, 'geneve').type === 'piece') return 'piece';
    const a = decodeAnnouncement(p);
    return a.ok && a.announcement.interfaces.some((i) => i.name === ifname) ? 'announcement' : 'other';
  });
}

async function setup(): Promise<{ topo: Topology; dir: string; file: string; pings: ReturnType<typeof execa> }> {
  topo = await createTopology({ pods: 2 });
  const [p1, p2] = topo.pods as [Topology['pods'][0], Topology['pods'][0]];
  const dir = await tempDir('podtap-order-');
  const file = join(dir, 'p.yaml');
  await writeFile(file, policyYaml({ collector: { address: topo.collector.ip4 }, filter: { protocols: ['ICMP'] } }, topo.prefix));
  // the pod sends all along: an attach before the announcement would show
  const pings = execa('nsenter', [`--net=/run/netns/${p1.ns}`, 'ping', '-q', '-c', '600', '-i', '0.01', p2.ip4], { reject: false });
  return { topo, dir, file, pings };
}

describe('the capture service', () => {
  it('announces the interfaces before the first copy reaches the collector', async () => {
    const { topo: t, dir, file, pings } = await setup();
    const p1 = t.pods[0]!;
    await mkdir(join(dir, 'out'));
    const collector = await startCollector(t, { dir: join(dir, 'out') });
    const wire = await startTcpdump(t.collector.ns, 'eth0', join(dir, 'wire.pcap'), ['udp', 'port', '6081']);
    const sniff = podtap(t.node, ['sniff', '--policy', file, '--iface', p1.hostIf, '--quiet']);
    await waitForLine(sniff, /podtap: tapping/, 60_000);
    await new Promise((r) => setTimeout(r, 500));
    sniff.kill('SIGINT');
    expect((await sniff).exitCode).toBe(0);
    pings.kill('SIGINT');
    await pings;
    await wire.stop();
    collector.proc.kill('SIGTERM');
    await collector.proc;
    const seen = classify(await udpPayloads(join(dir, 'wire.pcap')), p1.hostIf);
    expect(seen.filter((s) => s === 'piece').length, 'copies of the pings reached the collector').toBeGreaterThan(10);
    expect(seen.indexOf('announcement'), 'an announcement of the interface').toBeGreaterThanOrEqual(0);
    expect(seen.indexOf('announcement'), 'the announcement came before the first copy').toBeLessThan(seen.indexOf('piece'));
  });

  it('attaches nothing when the collector does not answer (sniff needs it)', async () => {
    const { topo: t, dir, file, pings } = await setup();
    const p1 = t.pods[0]!;
    // nothing listens on the collector's port: it answers port unreachable
    const wire = await startTcpdump(t.collector.ns, 'eth0', join(dir, 'wire.pcap'), ['udp', 'port', '6081']);
    const sniff = podtap(t.node, ['sniff', '--policy', file, '--iface', p1.hostIf, '--quiet']);
    // a sniff that attached first may never see the port unreachable: the
    // copies' own ICMP errors use up the kernel's ICMP rate limit
    const stuck = setTimeout(() => sniff.kill('SIGKILL'), 30_000);
    const r = await sniff;
    clearTimeout(stuck);
    expect(r.exitCode, `sniff exits at once, refusing the collector:\n${String(r.all)}`).toBe(ExitCode.unreachable);
    expect(String(r.all)).toMatch(/is unreachable/);
    await new Promise((res) => setTimeout(res, 300));
    pings.kill('SIGINT');
    await pings;
    await wire.stop();
    const seen = classify(await udpPayloads(join(dir, 'wire.pcap')), p1.hostIf);
    expect(seen.length, 'the probes reached the collector').toBeGreaterThan(0);
    expect(seen.filter((s) => s !== 'other'), 'no announcement and no copy').toEqual([]);
  });
});
