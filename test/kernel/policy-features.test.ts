/**
 * Sampling, snap length and rate limits end to end: each changes what reaches
 * the collector in the way the policy says, and the counters add up to what
 * was sent. Each expectation would fail if the feature were missing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diffMultiset, digestCounts, readFrames, startTcpdump } from '../helpers/capture.ts';
import { startCapture } from '../helpers/harness.ts';
import { createTopology, inNs, type Topology } from '../helpers/netns.ts';

interface Outcome {
  counters: Record<string, number>;
  frames: { len: number; capLen: number }[];
  seconds: number;
}

/** Run @spec on pod1's veth while pod1 sends @count pings of @size (every @interval s). */
async function capture(topo: Topology, spec: Record<string, unknown>, count: number, size: number, interval: number): Promise<Outcome> {
  const [pod1, pod2] = topo.pods as [Topology['pods'][0], Topology['pods'][0]];
  const run = await startCapture(topo, { collector: { address: topo.collector.ip4 }, filter: { protocols: ['ICMP'] }, ...spec }, [pod1.hostIf], {
    name: `${topo.prefix}-${Math.random().toString(36).slice(2, 8)}`,
  });
  const t0 = performance.now();
  await inNs(pod1.ns, 'ping', ['-q', '-c', String(count), '-i', String(interval), '-s', String(size), pod2.ip4]);
  const seconds = (performance.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, 300));
  const stopped = await run.stop();
  const line = stopped.sniffOutput.split('\n').find((l) => /^podtap: matched/.test(l));
  if (!line) throw new Error(`no counters in the sniffer output (exit ${stopped.sniffExit}):\n${stopped.sniffOutput}`);
  const counters: Record<string, number> = {};
  for (const m of line.matchAll(/([a-z-]+) (\d+)/g)) counters[m[1]!] = Number(m[2]);
  const lostLine = stopped.sniffOutput.split('\n').find((l) => /^podtap: lost/.test(l)) ?? '';
  for (const m of lostLine.matchAll(/(\w+) (\d+)/g)) counters[m[1]!] = Number(m[2]);
  const frames = (await readFrames(stopped.files[0]!)).map((f) => ({ len: f.len, capLen: f.capLen }));
  return { counters, frames, seconds };
}

describe('policy features, end to end', () => {
  let topo: Topology;
  beforeAll(async () => {
    topo = await createTopology({ pods: 2 });
  });
  afterAll(() => topo?.destroy());

  it('samples one matching packet in N, exactly', async () => {
    const o = await capture(topo, { sampling: { oneIn: 10 } }, 200, 56, 0.002);
    expect(o.counters.matched).toBe(400); // 200 requests out, 200 replies in
    expect(o.counters['sampled-out']).toBe(400 - Math.ceil(400 / 10));
    expect(o.counters.mirrored).toBe(40);
    expect(o.frames).toHaveLength(40);
  });

  it('cuts packets to the snap length and keeps their original length', async () => {
    const o = await capture(topo, { snapLength: 100 }, 20, 1000, 0.01);
    expect(o.counters.matched).toBe(40);
    expect(o.counters.truncated).toBe(40);
    expect(o.frames).toHaveLength(40);
    for (const f of o.frames) expect(f).toEqual({ len: 1042, capLen: 100 });
  });

  it('caps packets per second with a one-second bucket and counts the rest', async () => {
    const o = await capture(topo, { rateLimit: { packetsPerSecond: 50 } }, 300, 56, 0.002);
    const mirrored = o.counters.mirrored!;
    expect(o.counters.matched).toBe(600);
    expect(o.counters['rate-limited']! + mirrored).toBe(600);
    // a full bucket (50) plus 50/s for the time the pings took
    expect(mirrored).toBeGreaterThanOrEqual(50);
    expect(mirrored).toBeLessThanOrEqual(50 + Math.ceil(50 * o.seconds) + 2);
    expect(o.frames).toHaveLength(mirrored);
  });

  it('caps bytes per second the same way', async () => {
    // 1042-byte frames, 10,420 B/s: a full bucket holds 10 of them
    const o = await capture(topo, { rateLimit: { bytesPerSecond: 10_420 } }, 100, 1000, 0.002);
    const mirrored = o.counters.mirrored!;
    expect(o.counters.matched).toBe(200);
    expect(o.counters['rate-limited']! + mirrored).toBe(200);
    expect(mirrored).toBeGreaterThanOrEqual(10);
    expect(mirrored).toBeLessThanOrEqual(10 + Math.ceil(10 * o.seconds) + 2);
    expect(o.frames).toHaveLength(mirrored);
  });

  it('mirrors only the chosen direction', async () => {
    const o = await capture(topo, { policyTypes: ['Egress'] }, 20, 56, 0.01);
    expect(o.counters.matched).toBe(20); // the requests the pod sent, not the replies
    expect(o.frames).toHaveLength(20);
  });
});

/**
 * spec.policyTypes names directions from the pod's side, as NetworkPolicy
 * does. tcpdump on the pod's host-side veth is the judge, with the words the
 * other way round there: what the pod receives leaves the host side (-Q out),
 * what it sends arrives at it (-Q in). The collector's frames must be exactly
 * tcpdump's for the chosen side, and carry the pcapng flag for it.
 */
describe('policyTypes, judged by tcpdump on the host-side veth', () => {
  let topo: Topology;
  beforeAll(async () => {
    topo = await createTopology({ pods: 2 });
  });
  afterAll(() => topo?.destroy());

  it.each([
    { description: 'Ingress: what the pod receives (the echo replies)', input: ['Ingress'], expected: { tcpdump: 'out', icmpType: 0, flag: 1 } },
    { description: 'Egress: what the pod sends (the echo requests)', input: ['Egress'], expected: { tcpdump: 'in', icmpType: 8, flag: 2 } },
  ] as const)('$description', async ({ input, expected }) => {
    const [pod1, pod2] = topo.pods as [Topology['pods'][0], Topology['pods'][0]];
    const run = await startCapture(topo, { collector: { address: topo.collector.ip4 }, filter: { protocols: ['ICMP'] }, policyTypes: input }, [pod1.hostIf], {
      name: `${topo.prefix}-${expected.tcpdump}`,
    });
    const truthFile = `${run.dir}/truth-${expected.tcpdump}.pcap`;
    const truth = await startTcpdump(topo.node, pod1.hostIf, truthFile, ['-Q', expected.tcpdump, 'icmp']);
    await inNs(pod1.ns, 'ping', ['-q', '-c', '10', '-i', '0.01', pod2.ip4]);
    await new Promise((r) => setTimeout(r, 300));
    const t = await truth.stop();
    const stopped = await run.stop();
    expect(t.dropped, 'tcpdump dropped packets: the ground truth is incomplete').toBe(0);
    const want = await readFrames(truthFile, `icmp.type == ${expected.icmpType}`);
    expect(want, 'tcpdump saw the pings on that side').toHaveLength(10);
    // nothing of the other side reached tcpdump's -Q either: the truth is one-sided
    expect(await readFrames(truthFile)).toHaveLength(10);
    const got = await readFrames(stopped.files[0]!);
    expect(diffMultiset(digestCounts(want), digestCounts(got))).toEqual({ missing: 0, extra: 0, examples: [] });
    expect(new Set(got.map((f) => f.dir))).toEqual(new Set([expected.flag]));
  });
});
