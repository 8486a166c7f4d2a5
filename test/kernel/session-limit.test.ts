/**
 * The cap on capture sessions per node (agent --max-sessions): the real
 * kube-apiserver and etcd (test/helpers/apiserver.ts), the agent, the
 * controller and the collector as real processes, the real data plane. With
 * a cap of one, a second and a third policy are refused on the node as
 * NodeSessionLimit — the condition `kubectl describe` shows — while the
 * running capture is never displaced; each freed slot goes to the oldest
 * waiting policy (creation time before name), which the agent then attaches
 * by itself. The steps run in order, each judged by the policies' Ready
 * conditions and by the tc filters on the pods' veths.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sniffPolicies, type SniffPolicy } from '../../src/api/index.ts';
import { Lab } from '../lab/cluster.ts';
import { startBackend, until } from '../helpers/kube.ts';

/** Each policy selects one pod of its own. */
const POD_OF: Record<string, string> = { 'b-first': 'pod-1', 'z-second': 'pod-2', 'a-third': 'pod-3' };

type Want = Record<string, { reason: 'Attached' | 'NodeSessionLimit'; message?: RegExp }>;

const REFUSED = /node-a \(NodeSessionLimit: node node-a runs 1 of the 1 capture sessions it may \(agent --max-sessions\)/;

const steps: { description: string; input: { create: string } | { delete: string }; expected: Want }[] = [
  {
    description: 'the first policy takes the only slot',
    input: { create: 'b-first' },
    expected: { 'b-first': { reason: 'Attached' } },
  },
  {
    description: 'a newer policy is refused on the node as NodeSessionLimit, and the running capture is not displaced',
    input: { create: 'z-second' },
    expected: { 'b-first': { reason: 'Attached' }, 'z-second': { reason: 'NodeSessionLimit', message: REFUSED } },
  },
  {
    description: 'a third, newer still though first by name, waits behind the second',
    input: { create: 'a-third' },
    expected: {
      'b-first': { reason: 'Attached' },
      'z-second': { reason: 'NodeSessionLimit', message: REFUSED },
      'a-third': { reason: 'NodeSessionLimit', message: /1 older policy waits before this one/ },
    },
  },
  {
    description: 'the freed slot goes to the oldest waiting policy, which is attached by itself',
    input: { delete: 'b-first' },
    expected: { 'z-second': { reason: 'Attached' }, 'a-third': { reason: 'NodeSessionLimit', message: REFUSED } },
  },
  {
    description: 'and the next one to the last',
    input: { delete: 'z-second' },
    expected: { 'a-third': { reason: 'Attached' } },
  },
];

describe('agent --max-sessions 1: refused as NodeSessionLimit, attached when a slot frees, oldest first', () => {
  let lab: Lab;
  let out = '';
  const policies = () => sniffPolicies(lab.client);

  /** Whether a podtap tap runs on the pod's veth (ingress and egress). */
  async function tapped(pod: string): Promise<boolean> {
    const dev = lab.pods.find((p) => p.name === pod)!.hostIf;
    let n = 0;
    for (const hook of ['ingress', 'egress']) {
      const r = await execa('nsenter', [`--net=/run/netns/${lab.topo.node}`, 'tc', '-j', 'filter', 'show', 'dev', dev, hook], { reject: false });
      const rows = (r.exitCode === 0 ? JSON.parse(r.stdout || '[]') : []) as { options?: { prog?: { name: string } } }[];
      n += rows.filter((x) => x.options?.prog?.name.startsWith('pt_tap')).length;
    }
    return n === 2;
  }

  beforeAll(async () => {
    lab = await Lab.start({
      pods: Object.values(POD_OF).map((name) => ({ namespace: 'demo', name, labels: { app: name } })),
      api: async (host) => {
        const b = await startBackend('kube-apiserver', { address: host });
        return { url: b.url, kubeconfig: b.kubeconfig, close: () => b.stop() };
      },
    });
    out = await mkdtemp(join(tmpdir(), 'podtap-sessions-'));
    lab.startCollector(out);
    lab.startController();
    lab.startAgent(['--max-sessions', '1']);
  }, 180_000);

  afterAll(async () => {
    await lab?.stop();
    if (out) await rm(out, { recursive: true, force: true });
  });

  it.each(steps)('$description', async ({ input, expected }) => {
    if ('create' in input) {
      // creation times have second precision: each policy is a second younger than the one before
      await new Promise((r) => setTimeout(r, 1100));
      await policies().create({
        apiVersion: 'podtap.io/v1alpha1', kind: 'SniffPolicy', metadata: { name: input.create, namespace: 'demo' },
        spec: { podSelector: { matchLabels: { app: POD_OF[input.create]! } }, collector: { address: lab.topo.collector.ip4 } },
      } as unknown as SniffPolicy);
    } else {
      await policies().delete('demo', input.delete);
    }
    const reasons = async () => {
      const got: Record<string, { reason?: string; message?: string }> = {};
      for (const name of Object.keys(expected)) {
        const ready = (await policies().get('demo', name)).status?.conditions?.find((c) => c.type === 'Ready');
        got[name] = { reason: ready?.reason, message: ready?.message };
      }
      return got;
    };
    const want = (got: Awaited<ReturnType<typeof reasons>>) =>
      Object.entries(expected).every(([name, w]) => got[name]?.reason === w.reason && (!w.message || w.message.test(got[name]?.message ?? '')));
    let seen: Awaited<ReturnType<typeof reasons>> = {};
    await until('the Ready reasons expected', async () => want((seen = await reasons())), 30_000).catch((err: unknown) => {
      throw new Error(`${String(err)}; last seen ${JSON.stringify(seen)}`, { cause: err });
    });
    // the data plane agrees: a pod is tapped exactly when its policy is attached
    for (const [name, w] of Object.entries(expected)) {
      expect(await tapped(POD_OF[name]!), `${POD_OF[name]} of ${name}`).toBe(w.reason === 'Attached');
    }
    // and the refused policy's condition says why, for kubectl describe
    for (const [name, w] of Object.entries(expected)) {
      if (w.reason !== 'NodeSessionLimit') continue;
      const ready = (await policies().get('demo', name)).status?.conditions?.find((c) => c.type === 'Ready');
      expect(ready).toMatchObject({ status: 'False', reason: 'NodeSessionLimit' });
    }
  });
});
