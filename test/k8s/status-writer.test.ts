/**
 * The agent's status writes per stored SniffNodeAssignment
 * (src/agent/status-writer.ts), against the real kube-apiserver: the
 * statuses of a node's entries recorded together go out in one write of the
 * object's status subresource, writes are coalesced while one is in flight,
 * entries gone from the spec are left out, and status.observedGeneration is
 * written only once every entry was synced with its current spec — also when
 * the generation moves without touching an entry the agent synced.
 *
 * Writes are counted at the client: each PATCH of a status subresource.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AssignmentView, captureConfig, LABEL_NODE, labelValue, sniffNodeAssignments, SniffPolicySpecSchema,
  type SniffAssignment, type SniffAssignmentSpec, type SniffNodeAssignment,
} from '../../src/api/index.ts';
import { StatusWriter, type ReportedStatus } from '../../src/agent/status-writer.ts';
import type { KubeClient } from '../../src/k8s/index.ts';
import { startApiServer, type TestApiServer } from '../helpers/apiserver.ts';
import { nodeAssignmentObjects } from '../helpers/assignments.ts';
import { until } from '../helpers/kube.ts';

const NS = 'podtap-system';
const CONFIG = captureConfig(SniffPolicySpecSchema.parse({ podSelector: {}, collector: { address: '198.18.0.10' } }), { address: '198.18.0.10', port: 6081 });

let api: TestApiServer;
let client: KubeClient;
/** status PATCHes sent, by object name */
const writes = new Map<string, number>();
/** status PATCHes in flight, and the most at once, by object name */
const inFlight = new Map<string, number>();
const mostInFlight = new Map<string, number>();
/** while set, status PATCHes wait for it (a write held in flight) */
let gate: Promise<void> | undefined;
/** the next status PATCH fails with this (once) */
let failNext: Error | undefined;
let nodes = 0;

beforeAll(async () => {
  api = await startApiServer();
  await api.installCrds();
  await api.kubectl(['create', 'namespace', NS], { reject: true });
  client = api.client();
  const request = client.request.bind(client);
  client.request = (async (method, path, opts) => {
    const m = /\/sniffnodeassignments\/([^/]+)\/status$/.exec(path);
    if (method === 'PATCH' && m) {
      const name = m[1]!;
      writes.set(name, (writes.get(name) ?? 0) + 1);
      inFlight.set(name, (inFlight.get(name) ?? 0) + 1);
      mostInFlight.set(name, Math.max(mostInFlight.get(name) ?? 0, inFlight.get(name)!));
      try {
        await gate;
        const err = failNext;
        failNext = undefined;
        if (err) throw err;
        return await request(method, path, opts);
      } finally {
        inFlight.set(name, inFlight.get(name)! - 1);
      }
    }
    return request(method, path, opts);
  }) as KubeClient['request'];
}, 180_000);

afterAll(async () => {
  await api?.stop();
});

function spec(node: string, policy: string, pods = 0): SniffAssignmentSpec {
  return {
    nodeName: node,
    policy: { namespace: 'team-a', name: policy, uid: `uid-${policy}`, generation: 1 },
    config: CONFIG,
    pods: Array.from({ length: pods }, (_, i) => ({ name: `${policy}-${i}`, uid: `pod-${policy}-${i}`, ips: [`10.0.0.${i + 1}`] })),
    limits: { maxPackets: 0, maxBytes: 0 },
    stopped: false,
  };
}

const attached = (n: number): ReportedStatus => ({ state: 'Attached', reason: 'Attached', attachedInterfaces: n, lastReportTime: '2026-12-06T00:00:00Z' });

interface Node {
  name: string;
  view: AssignmentView;
  writer: StatusWriter;
  /** the node's stored object (one: every case stays under the size bound) */
  get(): Promise<SniffNodeAssignment>;
  /** the controller's write: the object's spec with @specs */
  put(specs: SniffAssignmentSpec[]): Promise<void>;
  /** the virtual assignment of @policy, once the view has it with @pods pods */
  assignment(policy: string, pods?: number): Promise<SniffAssignment>;
  writes(): number;
  stop(): Promise<void>;
}

/** A node with an object holding @policies, and an agent's view and status writer of it. */
async function node(policies: string[]): Promise<Node> {
  const name = `node-${++nodes}`;
  const [obj] = nodeAssignmentObjects(NS, name, policies.map((p) => spec(name, p)));
  await sniffNodeAssignments(client).create(obj!);
  const view = new AssignmentView({ client, namespace: NS, labelSelector: `${LABEL_NODE}=${labelValue(name)}` });
  const writer = new StatusWriter({ client, view, retryMs: 100 });
  view.start();
  await view.waitForSync();
  const get = () => sniffNodeAssignments(client).get(NS, name) as Promise<SniffNodeAssignment>;
  return {
    name, view, writer, get,
    async put(specs) {
      const cur = await get();
      const [next] = nodeAssignmentObjects(NS, name, specs);
      await sniffNodeAssignments(client).replace({ ...cur, spec: next!.spec });
    },
    assignment: (policy, pods = 0) =>
      until(`${policy} with ${pods} pod(s) in the view`, () => [...view.store.list()].find((a) => a.spec.policy.name === policy && a.spec.pods.length === pods)),
    writes: () => writes.get(name) ?? 0,
    stop: () => view.stop(),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('status writes per SniffNodeAssignment', () => {
  it.each([
    {
      description: 'five statuses recorded at once: one write with all five, no observedGeneration (nothing synced)',
      input: { policies: ['p1', 'p2', 'p3', 'p4', 'p5'], synced: [], written: ['p1', 'p2', 'p3', 'p4', 'p5'] },
      expected: { writes: 1, entries: ['uid-p1', 'uid-p2', 'uid-p3', 'uid-p4', 'uid-p5'], observed: false },
    },
    {
      description: 'every entry synced: the same write carries the generation',
      input: { policies: ['p1', 'p2', 'p3'], synced: ['p1', 'p2', 'p3'], written: ['p1', 'p2', 'p3'] },
      expected: { writes: 1, entries: ['uid-p1', 'uid-p2', 'uid-p3'], observed: true },
    },
    {
      description: 'one entry of three not synced: the generation is withheld',
      input: { policies: ['p1', 'p2', 'p3'], synced: ['p1', 'p2'], written: ['p1', 'p2'] },
      expected: { writes: 1, entries: ['uid-p1', 'uid-p2'], observed: false },
    },
  ])('$description', async ({ input, expected }) => {
    const n = await node(input.policies);
    try {
      for (const p of input.synced) n.writer.synced(await n.assignment(p));
      const as = await Promise.all(input.written.map((p) => n.assignment(p)));
      await Promise.all(as.map((a, i) => n.writer.write(a, attached(i))));
      // anything the writer would add on its own has had its chance
      await sleep(300);
      const obj = await n.get();
      expect(n.writes()).toBe(expected.writes);
      expect(obj.status?.entries?.map((e) => e.policyUid)).toEqual(expected.entries);
      expect(obj.status?.observedGeneration).toBe(expected.observed ? obj.metadata.generation : undefined);
    } finally {
      await n.stop();
    }
  });

  it('writes the generation once the last entry is synced, without another status', async () => {
    const n = await node(['p1', 'p2']);
    try {
      const [a1, a2] = [await n.assignment('p1'), await n.assignment('p2')];
      n.writer.synced(a1);
      await Promise.all([n.writer.write(a1, attached(1)), n.writer.write(a2, attached(2))]);
      expect((await n.get()).status?.observedGeneration).toBeUndefined();
      n.writer.synced(a2);
      const obj = await until('observedGeneration written', async () => {
        const o = await n.get();
        return o.status?.observedGeneration === o.metadata.generation && o;
      });
      expect(n.writes()).toBe(2);
      expect(obj.status?.entries?.map((e) => [e.policyUid, e.attachedInterfaces])).toEqual([['uid-p1', 1], ['uid-p2', 2]]);
    } finally {
      await n.stop();
    }
  });

  it.each([
    {
      description: 'an entry removed: the others are caught up without a sync, the removed one is left out',
      input: { after: [{ policy: 'p1', pods: 0 }, { policy: 'p3', pods: 0 }], resync: [] as string[] },
      expected: { writesBeforeResync: 1, entries: ['uid-p1', 'uid-p3'] },
    },
    {
      description: 'one entry changed: the generation waits for its sync, then is written',
      input: { after: [{ policy: 'p1', pods: 0 }, { policy: 'p2', pods: 2 }, { policy: 'p3', pods: 0 }], resync: ['p2'] },
      expected: { writesBeforeResync: 0, entries: ['uid-p1', 'uid-p2', 'uid-p3'] },
    },
  ])('after a new generation, $description', async ({ input, expected }) => {
    const n = await node(['p1', 'p2', 'p3']);
    try {
      const as = await Promise.all(['p1', 'p2', 'p3'].map((p) => n.assignment(p)));
      for (const a of as) n.writer.synced(a);
      await Promise.all(as.map((a, i) => n.writer.write(a, attached(i))));
      const first = await n.get();
      expect(first.status?.observedGeneration).toBe(first.metadata.generation);
      const before = n.writes();
      await n.put(input.after.map((e) => spec(n.name, e.policy, e.pods)));
      // the view sees the new generation, and the writer has its chance
      await until('the new generation in the cache', () => n.view.objects.store.get(`${NS}/${n.name}`)!.metadata.generation! > first.metadata.generation!);
      await sleep(300);
      expect(n.writes() - before).toBe(expected.writesBeforeResync);
      for (const p of input.resync) {
        const e = input.after.find((x) => x.policy === p)!;
        n.writer.synced(await n.assignment(p, e.pods));
      }
      const obj = await until('the new generation observed', async () => {
        const o = await n.get();
        return o.status?.observedGeneration === o.metadata.generation && o;
      });
      expect(obj.metadata.generation).toBeGreaterThan(first.metadata.generation!);
      expect(n.writes() - before).toBe(1);
      expect(obj.status?.entries?.map((e) => e.policyUid)).toEqual(expected.entries);
    } finally {
      await n.stop();
    }
  });

  it('statuses recorded while a write is in flight, spread over longer than the batching window, go out together in the next one', async () => {
    const n = await node(['p1', 'p2', 'p3', 'p4']);
    try {
      const as = await Promise.all(['p1', 'p2', 'p3', 'p4'].map((p) => n.assignment(p)));
      let open!: () => void;
      gate = new Promise((r) => (open = r));
      const first = n.writer.write(as[0]!, attached(0));
      await until('the first write in flight', () => n.writes() === 1);
      const rest: Promise<void>[] = [];
      for (const [i, a] of as.slice(1).entries()) {
        rest.push(n.writer.write(a, attached(i + 1)));
        await sleep(150);
      }
      gate = undefined;
      open();
      await Promise.all([first, ...rest]);
      expect(n.writes()).toBe(2);
      expect(mostInFlight.get(n.name)).toBe(1);
      expect((await n.get()).status?.entries?.map((e) => e.policyUid)).toEqual(['uid-p1', 'uid-p2', 'uid-p3', 'uid-p4']);
    } finally {
      gate = undefined;
      await n.stop();
    }
  });

  it('a field a status leaves out keeps its value; a failed write rejects its callers and is retried', async () => {
    const n = await node(['p1']);
    try {
      const a = await n.assignment('p1');
      await n.writer.write(a, { ...attached(1), counters: { seen: 7 } });
      failNext = new Error('injected');
      const failed = n.writer.write(a, { state: 'Completed', reason: 'LimitReached', interfaces: [], attachedInterfaces: 0 });
      await expect(failed).rejects.toThrow('writing assignment status failed');
      const obj = await until('the retried write', async () => {
        const o = await n.get();
        return o.status?.entries?.[0]?.state === 'Completed' && o;
      });
      expect(obj.status?.entries?.[0]).toMatchObject({ policyUid: 'uid-p1', state: 'Completed', counters: { seen: 7 }, attachedInterfaces: 0 });
      expect(n.writes()).toBe(3);
    } finally {
      failNext = undefined;
      await n.stop();
    }
  });

  it('a status of an object deleted meanwhile is dropped, not an error', async () => {
    const n = await node(['p1']);
    try {
      const a = await n.assignment('p1');
      await sniffNodeAssignments(client).delete(NS, n.name);
      await expect(n.writer.write(a, attached(1))).resolves.toBeUndefined();
    } finally {
      await n.stop();
    }
  });

  it('drain writes what is recorded and waits for it', async () => {
    const n = await node(['p1', 'p2']);
    try {
      const as = await Promise.all(['p1', 'p2'].map((p) => n.assignment(p)));
      for (const [i, a] of as.entries()) void n.writer.write(a, attached(i));
      await n.writer.drain();
      expect(n.writes()).toBe(1);
      expect((await n.get()).status?.entries?.map((e) => e.policyUid)).toEqual(['uid-p1', 'uid-p2']);
    } finally {
      await n.stop();
    }
  });
});
