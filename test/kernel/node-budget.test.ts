/**
 * The node's mirror budget: one token bucket (pt_node) that every capture on
 * the node shares, after each policy's own. Two policies tapping one pod, each
 * well under its own rate limit, are capped together at the node's rate, and
 * what the node refused is counted as nodeRate, nothing else; tcpdump on the
 * collector's link counts what really left. Without the shared bucket each
 * policy mirrors all it matched and the rows with a budget fail. (The bucket
 * shared and a stale clock reading, deterministically and on every kernel of
 * the matrix: test/kernel/kernels.test.ts, "the node's mirror budget".)
 */
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lost, type Counters } from '../../src/datapath/counters.ts';
import { createRunner } from '../../src/datapath/exec.ts';
import { nodeBudgetPin, readNodeBudget, type NodeBudget } from '../../src/datapath/node-budget.ts';
import { Session } from '../../src/datapath/session.ts';
import { removePins, TEST_CACHE, testConfig, testPinRoot } from '../helpers/bpf.ts';
import { startTcpdump } from '../helpers/capture.ts';
import { tempDir } from '../helpers/harness.ts';
import { createTopology, inNs, type Topology } from '../helpers/netns.ts';

/** Pings pod1 sends; each policy matches the request and the reply on pod1's veth. */
const PINGS = 60;
const MATCHED = 2 * PINGS;
/** Bytes of one echo frame on the veth as the tap counts it (-s 56: 14 + 20 + 8 + 56). */
const FRAME = 98;
/** Each policy's own bucket: far above what it matches, so alone it never limits. */
const POLICY_PPS = 1000;
/** The node's: above one policy's copies, below two policies'. */
const NODE_PPS = 150;

async function mapId(pin: string): Promise<number> {
  return (JSON.parse((await execa('bpftool', ['-j', 'map', 'show', 'pinned', pin])).stdout) as { id: number }).id;
}

describe("the node's mirror budget, two policies on one pod, real packets", () => {
  let topo: Topology;
  const pinRoot = testPinRoot();
  beforeAll(async () => {
    topo = await createTopology({ pods: 2 });
  });
  afterAll(async () => {
    await topo?.destroy();
    await removePins(pinRoot);
  });

  function open(name: string, nodeBudget: NodeBudget | undefined): Promise<Session> {
    return Session.open({ id: `nb-${name}-${randomBytes(3).toString('hex')}`, runner: createRunner(topo.node), pinRoot, cacheDir: TEST_CACHE, nodeBudget });
  }

  const config = () => testConfig({
    filter: { protocols: ['ICMP'] },
    rateLimit: { packetsPerSecond: POLICY_PPS },
    collector: { address: topo.collector.ip4, port: 6081 },
  });

  it.each([
    {
      description: 'no node budget: each policy mirrors every packet it matched',
      input: { policies: 2, node: { packetsPerSecond: 0, bytesPerSecond: 0 } },
      expected: { perSecond: undefined },
    },
    {
      description: `one policy alone (${MATCHED} copies) within the node's ${NODE_PPS} packets/s: nothing refused`,
      input: { policies: 1, node: { packetsPerSecond: NODE_PPS, bytesPerSecond: 0 } },
      expected: { perSecond: undefined },
    },
    {
      description: `two policies (${2 * MATCHED} copies) over the node's ${NODE_PPS} packets/s: capped together, the rest counted nodeRate`,
      input: { policies: 2, node: { packetsPerSecond: NODE_PPS, bytesPerSecond: 0 } },
      expected: { perSecond: NODE_PPS },
    },
    {
      description: `the same in bytes (${NODE_PPS} frames' worth per second)`,
      input: { policies: 2, node: { packetsPerSecond: 0, bytesPerSecond: NODE_PPS * FRAME } },
      expected: { perSecond: NODE_PPS },
    },
  ])('$description', async ({ input, expected }) => {
    const [pod1, pod2] = topo.pods as [Topology['pods'][0], Topology['pods'][0]];
    const sessions: Session[] = [];
    for (let i = 0; i < input.policies; i++) sessions.push(await open(String.fromCharCode(97 + i), input.node));
    try {
      for (const s of sessions) {
        await s.apply(config());
        await s.attach(pod1.hostIf, ['ingress', 'egress']);
      }
      // one bucket: every object's pt_node is the map pinned for the node
      const shared = await mapId(nodeBudgetPin(pinRoot));
      for (const s of sessions) expect(await mapId(`${s.pinned!.maps}/pt_node`)).toBe(shared);
      expect(await readNodeBudget(pinRoot)).toEqual(input.node);

      const dir = await tempDir('podtap-nb-');
      const wire = await startTcpdump(topo.collector.ns, 'eth0', join(dir, 'tunnel.pcap'), ['udp', 'dst', 'port', '6081']);
      const t0 = performance.now();
      await inNs(pod1.ns, 'ping', ['-q', '-c', String(PINGS), '-i', '0.002', '-s', '56', pod2.ip4]);
      const seconds = (performance.now() - t0) / 1000;
      await new Promise((r) => setTimeout(r, 300));
      const counters: Counters[] = [];
      for (const s of sessions) counters.push(await s.counters());
      const dump = await wire.stop();

      const sum = (f: (c: Counters) => number) => counters.reduce((n, c) => n + f(c), 0);
      const mirrored = sum((c) => c.mirrored.packets);
      const nodeRate = sum((c) => c.nodeRate.packets);
      for (const c of counters) {
        expect(c.matched.packets).toBe(MATCHED);
        expect(c.rateLimited.packets, "under its own bucket, each policy's copies are never rateLimited").toBe(0);
        expect(lost(c), 'nodeRate is the only loss').toBe(c.nodeRate.packets);
        expect(c.mirrored.packets + c.nodeRate.packets).toBe(MATCHED);
      }
      if (expected.perSecond === undefined) {
        expect(nodeRate).toBe(0);
        expect(mirrored).toBe(input.policies * MATCHED);
      } else {
        // a full bucket (one second) plus the refill for the time the pings took
        expect(mirrored).toBeGreaterThanOrEqual(expected.perSecond);
        expect(mirrored).toBeLessThanOrEqual(expected.perSecond + Math.ceil(expected.perSecond * seconds) + 2);
        expect(nodeRate).toBe(input.policies * MATCHED - mirrored);
      }
      // what left the node: one outer packet per small copy
      expect(dump.dropped).toBe(0);
      expect(dump.captured).toBe(mirrored);
    } finally {
      for (const s of sessions) await s.destroy();
    }
    // the last session took the node's map with it
    expect(await readdir(pinRoot)).toEqual([]);
  });

  it("a restarted agent adopts the pinned bucket: the same map, its rates rewritten only when they change", async () => {
    const [pod1] = topo.pods as [Topology['pods'][0]];
    const budget = { packetsPerSecond: NODE_PPS, bytesPerSecond: 0 };
    const first = await open('r', budget);
    await first.apply(config());
    await first.attach(pod1.hostIf, ['ingress']);
    const id = await mapId(nodeBudgetPin(pinRoot));
    // a new process: the session adopted, then applied with the same and then another budget
    const again = await Session.open({ id: first.id, runner: createRunner(topo.node), pinRoot, cacheDir: TEST_CACHE, nodeBudget: { ...budget, packetsPerSecond: 2 * NODE_PPS } });
    try {
      expect(again.interfaces().map((a) => a.dev)).toEqual([pod1.hostIf]);
      await again.apply(config());
      expect(await mapId(nodeBudgetPin(pinRoot))).toBe(id);
      expect(await readNodeBudget(pinRoot)).toEqual({ packetsPerSecond: 2 * NODE_PPS, bytesPerSecond: 0 });
    } finally {
      await again.destroy();
    }
    expect(await readdir(pinRoot)).toEqual([]);
  });
});
