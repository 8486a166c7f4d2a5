/**
 * The agent finds each pod's host-side veth for point-to-point CNIs (route),
 * bridge CNIs (FDB) and, as a fallback, through the pod's network namespace.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolvePodInterface, type ResolveMethod } from '../../src/agent/resolve.ts';
import { createRunner } from '../../src/datapath/exec.ts';
import { createTopology, ifindex, inNs, sh, type Topology } from '../helpers/netns.ts';

describe('pod interface resolution', () => {
  let p2p: Topology;
  const bridged = { node: '', pods: [] as { ns: string; ip: string; hostIf: string }[], all: [] as string[] };

  beforeAll(async () => {
    p2p = await createTopology({ pods: 2 });
    // a bridge CNI: pods share 198.18.100.0/24 behind br0 on the node
    const prefix = `${p2p.prefix}b`;
    bridged.node = `${prefix}-node`;
    bridged.all.push(bridged.node);
    await sh('ip', ['netns', 'add', bridged.node]);
    await sh('ip', ['-n', bridged.node, 'link', 'add', 'br0', 'type', 'bridge']);
    await sh('ip', ['-n', bridged.node, 'addr', 'add', '198.18.100.1/24', 'dev', 'br0']);
    await sh('ip', ['-n', bridged.node, 'link', 'set', 'br0', 'up']);
    for (let i = 1; i <= 2; i++) {
      const ns = `${prefix}-pod${i}`;
      bridged.all.push(ns);
      await sh('ip', ['netns', 'add', ns]);
      const hostIf = `vbr${i}`;
      await sh('ip', ['link', 'add', hostIf, 'netns', bridged.node, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      await sh('ip', ['-n', bridged.node, 'link', 'set', hostIf, 'master', 'br0', 'up']);
      const ip = `198.18.100.${10 + i}`;
      await sh('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
      await sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
      await inNs(ns, 'ping', ['-c1', '-W2', '198.18.100.1']);
      bridged.pods.push({ ns, ip, hostIf });
    }
  });
  afterAll(async () => {
    await p2p?.destroy();
    for (const ns of bridged.all) await sh('ip', ['netns', 'del', ns], { reject: false });
  });

  const table: { description: string; setup: 'p2p' | 'bridge'; methods?: ResolveMethod[]; expected: ResolveMethod | undefined }[] = [
    { description: 'point-to-point CNI: route to the pod IP', setup: 'p2p', expected: 'route' },
    { description: 'bridge CNI: FDB entry of the pod MAC', setup: 'bridge', expected: 'bridge' },
    { description: 'fallback: the pod network namespace (p2p)', setup: 'p2p', methods: ['netns'], expected: 'netns' },
    { description: 'fallback: the pod network namespace (bridge)', setup: 'bridge', methods: ['netns'], expected: 'netns' },
    { description: 'route only cannot see through a bridge', setup: 'bridge', methods: ['route'], expected: undefined },
  ];

  it.each(table)('$description', async ({ setup, methods, expected }) => {
    const node = setup === 'p2p' ? p2p.node : bridged.node;
    const pods = setup === 'p2p' ? p2p.pods.map((p) => ({ ns: p.ns, ip: p.ip4, hostIf: p.hostIf })) : bridged.pods;
    const runner = createRunner(node);
    // a bridge resolves a pod by its neighbour entry: the pod has talked lately
    // (adding bridge ports changes the bridge MAC, which flushes neighbours)
    if (setup === 'bridge') for (const pod of pods) await inNs(pod.ns, 'ping', ['-c1', '-W2', '198.18.100.1']);
    for (const pod of pods) {
      const r = await resolvePodInterface(runner, [pod.ip], methods ? { methods } : {});
      if (expected === undefined) {
        expect(r).toBeUndefined();
        continue;
      }
      expect(r, JSON.stringify(r)).toEqual({ ifname: pod.hostIf, ifindex: await ifindex(node, pod.hostIf), method: expected });
    }
  });

  it('an IP no pod holds resolves to nothing', async () => {
    expect(await resolvePodInterface(createRunner(p2p.node), ['198.18.99.99'])).toBeUndefined();
  });
});
