/**
 * Nothing lost silently. A black-box run found frames the pod's own kernel
 * sends (an IPv6 Router Solicitation to ff02::2) in tcpdump on the host veth
 * but not in the capture, during a TCP bulk transfer, with no counter
 * recording it. The cause: a frame that fits one piece — and the last piece of
 * every larger one — left with bpf_redirect(), whose outcome the program never
 * learns, and was counted `mirrored`; when the uplink refused it (a full
 * queue, a veth peer's full backlog: what a bulk transfer's pieces cause) no
 * counter moved, and the collector cannot see a missing frame at the end of a
 * sequence stream either. Here the uplink refuses everything for a while
 * during a bulk transfer in which the pod's kernel solicits a router every
 * second: every frame the data plane calls mirrored must reach the collector,
 * and every one that did not must be counted.
 */
import { readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import type { SniffPolicy } from '../../src/api/index.ts';
import { readCounters } from '../../src/datapath/bpftool.ts';
import { lost } from '../../src/datapath/counters.ts';
import { PIN_ROOT } from '../../src/datapath/session.ts';
import { sessionIdFor } from '../../src/sniff/sniff.ts';
import { readFrames, startTcpdump } from '../helpers/capture.ts';
import { startCapture } from '../helpers/harness.ts';
import { createTopology, inNs, type Topology } from '../helpers/netns.ts';

let topo: Topology | undefined;
let truthFile: string | undefined;
afterEach(async () => {
  await topo?.destroy();
  topo = undefined;
  if (truthFile) await rm(truthFile, { force: true });
  truthFile = undefined;
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `rebuilt N packets` and `kernel dropped N` of the collector's summary line. */
function collectorSummary(out: string): { rebuilt: number; kernelDropped: number } {
  const n = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
  return { rebuilt: n(/rebuilt (\d+) packets/), kernelDropped: n(/kernel dropped (\d+)/) };
}

describe('loss accounting', () => {
  it("counts the pod kernel's router solicitations an uplink refuses during a bulk transfer", async () => {
    topo = await createTopology({ pods: 2, podMtu: 1500 });
    const [p1, p2] = topo.pods as [Topology['pods'][0], Topology['pods'][0]];
    // tcpdump, the truth, sees every solicitation the capture can: it starts
    // before the capture and stops after the solicitations do (below)
    truthFile = join(tmpdir(), `${topo.prefix}-truth.pcap`);
    const truth = await startTcpdump(topo.node, p1.hostIf, truthFile, ['-Q', 'in', 'icmp6']);
    const run = await startCapture(topo, { collector: { address: topo.collector.ip4 } }, [p1.hostIf], { name: topo.prefix });
    // the pod solicits a router every second (none answers), like a pod that
    // just started; fresh link-local address below restarts the solicitations
    for (const [k, v] of [['router_solicitations', '-1'], ['router_solicitation_interval', '1'], ['router_solicitation_max_interval', '1']]) {
      await inNs(p1.ns, 'sysctl', ['-qw', `net.ipv6.conf.eth0.${k}=${v}`]);
    }
    const server = execa('nsenter', [`--net=/run/netns/${p2.ns}`, 'iperf3', '-s', '-1', '-p', '5302'], { reject: false });
    await sleep(300);
    // paced so that the collector, sharing the machine, keeps up: what is
    // measured is the data plane's accounting, not the collector's speed
    const client = execa('nsenter', [`--net=/run/netns/${p1.ns}`, 'iperf3', '-c', p2.ip4, '-p', '5302', '-t', '8', '-b', '50M'], { reject: false });
    await sleep(500);
    await inNs(p1.ns, 'ip', ['-6', 'addr', 'flush', 'dev', 'eth0', 'scope', 'link']);
    await inNs(p1.ns, 'ip', ['-6', 'addr', 'add', 'fe80::99/64', 'dev', 'eth0']);
    await sleep(2000);
    // the uplink refuses every packet for 3.5 s (a queue that holds none:
    // NET_XMIT_DROP for each), link and neighbour up. [t0, t1] lies inside
    // the refusal: t0 once tc has put the queue in place, t1 before tc
    // starts to take it away (a solicitation while tc starts may or may not
    // pass, and tc starts slower on a busy machine)
    await inNs(topo.node, 'tc', ['qdisc', 'replace', 'dev', 'up0', 'root', 'pfifo', 'limit', '0']);
    const t0 = Date.now();
    await sleep(3500);
    const t1 = Date.now();
    await inNs(topo.node, 'tc', ['qdisc', 'del', 'dev', 'up0', 'root']);
    expect((await client).exitCode, 'iperf3 client').toBe(0);
    await server;
    // no more solicitations: the timer armed fires once more and stops
    // (a solicitation after tcpdump stopped would be in the capture only)
    await inNs(p1.ns, 'sysctl', ['-qw', 'net.ipv6.conf.eth0.router_solicitations=0']);
    await sleep(1500);
    expect((await truth.stop()).dropped).toBe(0);

    const dir = `${PIN_ROOT}/${sessionIdFor({ metadata: { name: topo.prefix, namespace: 'default' } } as SniffPolicy)}`;
    const [key] = await readdir(dir);
    const c = await readCounters(`${dir}/${key}/maps`);
    const s = await run.stop();
    const col = collectorSummary(s.collectorOutput);
    expect(col.kernelDropped, `the collector could not keep up (its socket overflowed):\n${s.collectorOutput}`).toBe(0);

    // the window did refuse frames, among them router solicitations
    const rs = await readFrames(truthFile!, 'icmpv6.type == 133');
    const rsTimes = (await execa('tshark', ['-r', truthFile!, '-Y', 'icmpv6.type == 133', '-T', 'fields', '-e', 'frame.time_epoch'])).stdout
      .split('\n').filter(Boolean).map((x) => Number(x) * 1000);
    expect(rs.length).toBe(rsTimes.length);
    const refused = rsTimes.filter((t) => t > t0 + 50 && t < t1 - 50).length;
    expect(refused, 'router solicitations while the uplink refused').toBeGreaterThanOrEqual(2);
    expect(c.xmitDrop.packets, `counters: ${JSON.stringify(c)}`).toBeGreaterThan(0);

    // whatever the data plane calls mirrored reached the collector, whole
    expect(c.mirrored.packets, `data plane: mirrored ${c.mirrored.packets}, lost ${c.xmitDrop.packets} (xmitDrop); collector: ${s.collectorOutput}`).toBe(col.rebuilt);
    // and the solicitations that were refused are in the count of the lost
    const got = await readFrames(s.files[0]!, `icmpv6.type == 133 && frame.interface_name == "${p1.hostIf}"`);
    expect(rs.length - got.length, 'router solicitations refused by the uplink (in tcpdump, not in the capture)').toBeGreaterThanOrEqual(refused);
    expect(c.matched.packets).toBe(c.mirrored.packets + lost(c));
  });
});
