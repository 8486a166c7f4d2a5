import { describe, expect, it } from 'vitest';
import { LABEL_NODE, LABEL_POLICY, LABEL_POLICY_NAMESPACE, type SniffPolicyStatus } from '../../../src/api/index.ts';
import { RecentWrites, withRecentWrites, type RecentPolicyWrites } from '../../../src/controller/recent.ts';
import { Limiter } from '../../../src/k8s/index.ts';
import { slimPod, slimPolicy, type PolicyObject } from '../../../src/controller/objects.ts';
import { Reconciler, planPolicy, statusPatch, type Plan } from '../../../src/controller/reconcile.ts';
import { worldFrom, type WorldObjects } from '../../../src/controller/world.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { FakeApi, apiError, applyPlan } from './fake-api.ts';
import { DESTINATIONS, INSTALL_NS, NS, POLICY_UID, namespace, node, pod, policy, service, slice } from './fixtures.ts';

const NOW = new Date('2025-01-01T00:00:00Z');
const STALE = 30_000;
const baseObjects = (): WorldObjects => ({
  nodes: [node('node-a', { zone: 'a' }), node('node-b', { zone: 'b' }), node('node-c', { zone: 'a' })],
  namespaces: [namespace(NS)],
  pods: [pod('web-2', { node: 'node-b' }), pod('web-1'), pod('web-0', { node: 'node-b' }), pod('db-1', { labels: { app: 'db' }, node: 'node-c' })],
});

function setup(objects: WorldObjects) {
  const { world, stores } = worldFrom(objects);
  const api = new FakeApi(stores);
  const plan = (now = NOW) => planPolicy({ world, namespace: NS, name: 'web-debug', now, staleMs: STALE, assignmentNamespace: INSTALL_NS, destinations: DESTINATIONS });
  return { world, stores, api, plan };
}

const summary = (p: Plan) => ({
  creates: p.creates.map((a) => a.metadata.name).sort(),
  updates: p.updates.map((a) => a.metadata.name).sort(),
  deletes: p.deletes.map((a) => a.metadata.name).sort(),
});

const ready = (s: SniffPolicyStatus | undefined) => {
  const c = s?.conditions?.find((x) => x.type === 'Ready');
  return c && [c.status, c.reason];
};

describe('planPolicy: desired assignments', () => {
  it('one assignment per node with selected pods, in the install namespace, named, labelled, pods sorted', () => {
    const { plan } = setup({ ...baseObjects(), policies: [policy({})] });
    const p = plan();
    expect(summary(p)).toEqual({ creates: ['shop.web-debug.node-a', 'shop.web-debug.node-b'], updates: [], deletes: [] });
    const b = p.creates.find((a) => a.spec.nodeName === 'node-b')!;
    expect(b.metadata).toEqual({
      name: 'shop.web-debug.node-b',
      namespace: INSTALL_NS,
      labels: { [LABEL_POLICY_NAMESPACE]: NS, [LABEL_POLICY]: 'web-debug', [LABEL_NODE]: 'node-b', 'app.kubernetes.io/managed-by': 'podtap' },
    });
    expect(b.spec).toEqual({
      nodeName: 'node-b',
      policy: { namespace: NS, name: 'web-debug', uid: POLICY_UID, generation: 1 },
      config: {
        hooks: ['ingress', 'egress'],
        filter: { protocols: [], ports: [], cidrs: [], tcpFlags: [] },
        sampling: { oneIn: 1 },
        snapLength: 0,
        rateLimit: { packetsPerSecond: 0, bytesPerSecond: 0 },
        tunnel: { protocol: 'Geneve', vni: 0, largeFrames: 'Segment' },
        mtu: 0,
        collector: { address: '198.18.9.9', port: 6081 },
      },
      pods: [
        { name: 'web-0', uid: 'uid-web-0', ips: [expect.any(String)] },
        { name: 'web-2', uid: 'uid-web-2', ips: [expect.any(String)] },
      ],
      limits: { maxPackets: 0, maxBytes: 0 },
      stopped: false,
    });
    expect(p.outcome).toBe('success');
    expect(ready(p.status)).toEqual(['False', 'Attaching']);
    expect(p.status).toMatchObject({ selectedPods: 3, nodesTotal: 2, nodesReady: 0, nodeSummary: '0/2' });
  });

  it('is idempotent: once the writes are applied, nothing more to write', async () => {
    const { api, plan } = setup({ ...baseObjects(), policies: [policy({ filter: { protocols: ['TCP'], ports: [{ port: 443 }] }, sampling: { oneIn: 2 }, rateLimit: { packetsPerSecond: 10 } })] });
    await applyPlan(api, plan());
    const again = plan();
    expect(summary(again)).toEqual({ creates: [], updates: [], deletes: [] });
    expect(again.status).toEqual(api.stores.policies.get(`${NS}/web-debug`)!.status);
  });

  it('nodeSelector restricts the nodes', () => {
    const { plan } = setup({ ...baseObjects(), policies: [policy({ nodeSelector: { matchLabels: { zone: 'a' } } })] });
    expect(summary(plan()).creates).toEqual(['shop.web-debug.node-a']);
  });

  it('a pod relabelled out: its node is updated, a node left without pods is deleted', async () => {
    const objects = { ...baseObjects(), policies: [policy({})] };
    const { api, stores, plan } = setup(objects);
    await applyPlan(api, plan());
    stores.pods.upsert(slimPod(pod('web-2', { node: 'node-b', labels: { app: 'other' } })));
    stores.pods.upsert(slimPod(pod('web-1', { labels: { app: 'other' } })));
    const p = plan();
    expect(summary(p)).toEqual({ creates: [], updates: ['shop.web-debug.node-b'], deletes: ['shop.web-debug.node-a'] });
    expect(p.updates[0]!.spec.pods.map((x) => x.name)).toEqual(['web-0']);
    expect(p.updates[0]!.metadata.resourceVersion).toBeDefined();
    expect(p.status).toMatchObject({ selectedPods: 1, nodesTotal: 1 });
  });

  it('a policy that no longer exists: its assignments (orphans) are deleted, no status', async () => {
    const { api, stores, plan } = setup({ ...baseObjects(), policies: [policy({})] });
    await applyPlan(api, plan());
    stores.policies.remove(`${NS}/web-debug`);
    const p = plan();
    expect(summary(p)).toEqual({ creates: [], updates: [], deletes: ['shop.web-debug.node-a', 'shop.web-debug.node-b'] });
    expect(p.status).toBeUndefined();
  });

  it('a policy being deleted: its assignments are deleted', async () => {
    const { api, stores, plan } = setup({ ...baseObjects(), policies: [policy({})] });
    await applyPlan(api, plan());
    stores.policies.upsert(slimPolicy(policy({}, { deleting: true })));
    expect(summary(plan()).deletes).toHaveLength(2);
  });

  it('an invalid spec is terminal: InvalidSpec with the field paths, assignments removed', async () => {
    const { api, stores, plan } = setup({ ...baseObjects(), policies: [policy({})] });
    await applyPlan(api, plan());
    stores.policies.upsert(slimPolicy(policy({ mtu: 100, filter: { ports: [{ port: 0 }] } }, { generation: 2 })));
    const p = plan();
    expect(p.outcome).toBe('terminal');
    expect(summary(p).deletes).toHaveLength(2);
    expect(ready(p.status)).toEqual(['False', 'InvalidSpec']);
    const msg = p.status!.conditions!.find((c) => c.type === 'Ready')!.message;
    expect(msg).toContain('spec.filter.ports[0].port: port must be between 1 and 65535');
    expect(msg).toContain('spec.mtu');
    expect(p.status!.observedGeneration).toBe(2);
  });

  it.each([
    { description: 'an address outside the allowed networks (the metadata service)', input: { collector: { address: '169.254.169.254' } }, expected: /spec.collector.address 169.254.169.254 is not an allowed destination \(allowed networks: 198.18.0.0\/15, 2001:db8::\/32/ },
    { description: "another namespace's Service (kube-dns)", input: { collector: { service: { name: 'kube-dns', namespace: 'kube-system' }, port: 53 } }, expected: /spec.collector.service kube-system\/kube-dns is not an allowed destination \(allowed: shop\/collector;/ },
    { description: 'an unlisted Service of its own namespace', input: { collector: { service: { name: 'sink' } } }, expected: /spec.collector.service shop\/sink is not an allowed destination/ },
  ])('a destination the admin did not allow: $description is DestinationNotAllowed and running assignments go', async ({ input, expected }) => {
    const { api, stores, plan } = setup({ ...baseObjects(), policies: [policy({})] });
    await applyPlan(api, plan());
    // the spec changes (or the list did) after assignments run
    stores.policies.upsert(slimPolicy(policy(input, { generation: 2 })));
    const p = plan();
    expect(summary(p)).toEqual({ creates: [], updates: [], deletes: ['shop.web-debug.node-a', 'shop.web-debug.node-b'] });
    expect(p.outcome).toBe('terminal');
    expect(ready(p.status)).toEqual(['False', 'DestinationNotAllowed']);
    expect(p.status!.conditions!.find((c) => c.type === 'Ready')!.message).toMatch(expected);
  });

  it('a stored policy of podtap 0.1 (spec.direction): InvalidSpec naming the conversion, its captures stopped, not run with a guessed meaning', async () => {
    const { api, stores, plan } = setup({ ...baseObjects(), policies: [policy({})] });
    await applyPlan(api, plan());
    stores.policies.upsert(slimPolicy(policy({ direction: 'Ingress' }, { generation: 2 })));
    const p = plan();
    expect(p.outcome).toBe('terminal');
    expect(summary(p).deletes).toHaveLength(2);
    expect(ready(p.status)).toEqual(['False', 'InvalidSpec']);
    expect(p.status!.conditions!.find((c) => c.type === 'Ready')!.message).toBe(
      'spec.direction: removed in 0.2: its Ingress meant sent by the pod; write spec.policyTypes: [Egress]',
    );
  });

  it('a missing collector Service: CollectorNotFound, running assignments are left alone', async () => {
    const svc = { collector: { service: { name: 'collector' } } };
    const { api, stores, plan } = setup({
      ...baseObjects(),
      policies: [policy(svc)],
      services: [service('collector')],
      slices: [slice('collector-1', 'collector', [{ ip: '198.18.5.1', pod: 'collector-0' }], [{ name: 'geneve', port: 16081, protocol: 'UDP' }])],
    });
    const first = plan();
    expect(first.creates[0]!.spec.config.collector).toEqual({ address: '198.18.5.1', port: 16081 });
    // the wide Collector column names the Service and where it led
    expect(first.status!.collector).toBe(`${NS}/collector → 198.18.5.1:16081`);
    await applyPlan(api, first);
    stores.services.remove(`${NS}/collector`);
    const p = plan();
    expect(summary(p)).toEqual({ creates: [], updates: [], deletes: [] });
    expect(ready(p.status)).toEqual(['False', 'CollectorNotFound']);
    expect(p.status!.nodesTotal).toBe(2);
    expect(p.status!.collector).toBe(`${NS}/collector (no endpoint)`);
  });

  it('the collector pods are never captured', () => {
    const { plan } = setup({
      ...baseObjects(),
      pods: [...baseObjects().pods!, pod('collector-0', { node: 'node-c', labels: { app: 'web' }, ips: ['198.18.5.1'] })],
      policies: [policy({ collector: { service: { name: 'collector' } } })],
      services: [service('collector')],
      slices: [slice('collector-1', 'collector', [{ ip: '198.18.5.1', pod: 'collector-0' }])],
    });
    const p = plan();
    expect(summary(p).creates).toEqual(['shop.web-debug.node-a', 'shop.web-debug.node-b']);
    expect(p.status!.conditions!.find((c) => c.type === 'Ready')!.message).toBe('0/2 nodes ready; attaching on node-a, node-b');
  });

  it("another allowed collector's pods are not captured either (a policy sending by address)", () => {
    const { plan } = setup({
      ...baseObjects(),
      pods: [...baseObjects().pods!, pod('collector-0', { node: 'node-c', labels: { app: 'web' }, ips: ['198.18.5.1'] })],
      // this policy sends to an address; shop/collector is another podtap destination
      policies: [policy({})],
      services: [service('collector')],
      slices: [slice('collector-1', 'collector', [{ ip: '198.18.5.1', pod: 'collector-0' }])],
    });
    const p = plan();
    expect(summary(p).creates).toEqual(['shop.web-debug.node-a', 'shop.web-debug.node-b']);
    expect(p.creates.flatMap((a) => a.spec.pods.map((x) => x.name))).not.toContain('collector-0');
  });

  it.each([
    { description: 'a policy without a rate gets the ceiling', input: {}, expected: { packetsPerSecond: 1000, bytesPerSecond: 0 } },
    { description: 'a higher rate is lowered to it', input: { rateLimit: { packetsPerSecond: 50_000, bytesPerSecond: 7 } }, expected: { packetsPerSecond: 1000, bytesPerSecond: 7 } },
    { description: 'a lower rate is kept', input: { rateLimit: { packetsPerSecond: 10 } }, expected: { packetsPerSecond: 10, bytesPerSecond: 0 } },
  ])("the admin's rate ceiling: $description", ({ input, expected }) => {
    const { world } = worldFrom({ ...baseObjects(), policies: [policy(input)] });
    const p = planPolicy({ world, namespace: NS, name: 'web-debug', now: NOW, staleMs: STALE, assignmentNamespace: INSTALL_NS, destinations: DESTINATIONS, rateCeiling: { packetsPerSecond: 1000, bytesPerSecond: 0 } });
    for (const a of p.creates) expect(a.spec.config.rateLimit).toEqual(expected);
    expect(p.creates.length).toBe(2);
  });

  it('a terminating namespace gets no new assignments', () => {
    const { plan } = setup({ ...baseObjects(), namespaces: [namespace(NS, true)], policies: [policy({})] });
    expect(summary(plan()).creates).toEqual([]);
  });

  it('no pod selected: NoPodsSelected, no startTime, nothing written', () => {
    const { plan } = setup({ ...baseObjects(), policies: [policy({ podSelector: { matchLabels: { app: 'none' } }, limits: { duration: '1m' } })] });
    const p = plan();
    expect(summary(p).creates).toEqual([]);
    expect(ready(p.status)).toEqual(['False', 'NoPodsSelected']);
    expect(p.status!.startTime).toBeUndefined();
    expect(p.requeueAfterMs).toBeUndefined();
  });

  it('an assignment left by an earlier policy of the same name is taken over (new policy uid)', async () => {
    const { api, stores, plan } = setup({ ...baseObjects(), policies: [policy({})] });
    await applyPlan(api, plan());
    stores.policies.upsert(slimPolicy(policy({}, { uid: 'uid-policy-2' })));
    const p = plan();
    expect(summary(p).updates).toEqual(['shop.web-debug.node-a', 'shop.web-debug.node-b']);
    expect(p.updates[0]!.spec.policy.uid).toBe('uid-policy-2');
  });
});

describe('planPolicy: limits', () => {
  it('duration: startTime on the first reconcile with pods, a deadline on every assignment, requeue at it', () => {
    const { plan } = setup({ ...baseObjects(), policies: [policy({ limits: { duration: '10m' } })] });
    const p = plan();
    expect(p.status!.startTime).toBe('2025-01-01T00:00:00Z');
    for (const a of p.creates) expect(a.spec.limits.deadline).toBe('2025-01-01T00:10:00Z');
    expect(p.requeueAfterMs).toBe(600_000);
  });

  it('duration elapsed: Completed, assignments stopped and kept, no new ones', async () => {
    const { api, stores, plan } = setup({ ...baseObjects(), policies: [policy({ limits: { duration: '10m' } })] });
    await applyPlan(api, plan());
    stores.pods.upsert(slimPod(pod('web-9', { node: 'node-c' })));
    const later = new Date('2025-01-01T00:10:00Z');
    const p = plan(later);
    expect(summary(p)).toEqual({ creates: [], updates: ['shop.web-debug.node-a', 'shop.web-debug.node-b'], deletes: [] });
    for (const a of p.updates) expect(a.spec.stopped).toBe(true);
    expect(p.status!.completionTime).toBe('2025-01-01T00:10:00Z');
    expect(ready(p.status)).toEqual(['False', 'LimitReached']);
    expect(p.status!.conditions!.find((c) => c.type === 'Completed')).toMatchObject({ status: 'True', reason: 'LimitReached', message: 'spec.limits.duration 10m elapsed' });
    expect(p.requeueAfterMs).toBeUndefined();
  });

  it('maxPackets: each node gets its count plus what is left; reached → stopped', async () => {
    const { api, plan } = setup({ ...baseObjects(), policies: [policy({ limits: { maxPackets: 100 } })] });
    const first = plan();
    for (const a of first.creates) expect(a.spec.limits).toEqual({ maxPackets: 100, maxBytes: 0 });
    await applyPlan(api, first);
    api.report(INSTALL_NS, 'shop.web-debug.node-a', { state: 'Attached', observedGeneration: 1, counters: { mirrored: 30 } });
    const mid = plan();
    expect(summary(mid).updates).toEqual([]); // caps still within twice what is left
    expect(mid.status!.packets).toBe(30);
    api.report(INSTALL_NS, 'shop.web-debug.node-b', { state: 'Attached', observedGeneration: 1, counters: { mirrored: 75 } });
    const done = plan();
    expect(summary(done).updates).toEqual(['shop.web-debug.node-a', 'shop.web-debug.node-b']);
    for (const a of done.updates) expect(a.spec.stopped).toBe(true);
    expect(done.status!.conditions!.find((c) => c.type === 'Completed')!.message).toBe('105 packets mirrored (spec.limits.maxPackets 100)');
  });

  it('Completed sticks for a generation even when counters drop; a new generation resumes', async () => {
    const { api, stores, plan } = setup({ ...baseObjects(), policies: [policy({ limits: { maxPackets: 10 } })] });
    await applyPlan(api, plan());
    api.report(INSTALL_NS, 'shop.web-debug.node-a', { state: 'Attached', observedGeneration: 1, counters: { mirrored: 20 } });
    await applyPlan(api, plan());
    stores.assignments.remove(`${INSTALL_NS}/shop.web-debug.node-a`); // counters gone with it
    const still = plan();
    expect(ready(still.status)).toEqual(['False', 'LimitReached']);
    expect(still.creates).toEqual([]);
    const cur = stores.policies.get(`${NS}/web-debug`)!;
    stores.policies.upsert(slimPolicy(policy({ limits: { maxPackets: 1000 } }, { generation: 2, status: cur.status })));
    const resumed = plan();
    expect(summary(resumed).creates).toEqual(['shop.web-debug.node-a']);
    expect(resumed.updates.every((a) => a.spec.stopped === false)).toBe(true);
    expect(resumed.status!.completionTime).toBeUndefined();
    expect(ready(resumed.status)).toEqual(['False', 'Attaching']);
  });
});

describe('planPolicy: status from agents', () => {
  it('agents attached on every node: Ready True with counts', async () => {
    const { api, plan } = setup({ ...baseObjects(), policies: [policy({})] });
    await applyPlan(api, plan());
    for (const n of ['node-a', 'node-b']) {
      api.report(INSTALL_NS, `shop.web-debug.${n}`, { state: 'Attached', observedGeneration: 1, attachedInterfaces: 2, collectorReachable: true, lastReportTime: '2025-01-01T00:00:05Z', counters: { mirrored: 7, bytes: 700 } });
    }
    const p = plan(new Date('2025-01-01T00:00:10Z'));
    expect(ready(p.status)).toEqual(['True', 'Attached']);
    expect(p.status).toMatchObject({ nodesReady: 2, nodeSummary: '2/2', packets: 14, bytes: 1400, attachedInterfaces: 4 });
    expect(p.requeueAfterMs).toBe(25_001); // when the reports turn stale
  });
});

/** A Reconciler over the fake API and its node writer; Events go to @events as "type reason". */
function reconcilerOn(s: ReturnType<typeof setup>, events: string[], recent?: RecentPolicyWrites): Reconciler {
  return new Reconciler({
    world: recent ? withRecentWrites(s.world, recent) : s.world,
    ...(recent ? { recent } : {}),
    api: s.api,
    assignments: s.api.nodes,
    limiter: new Limiter(4),
    staleMs: STALE,
    assignmentNamespace: INSTALL_NS,
    destinations: DESTINATIONS,
    now: () => NOW,
    events: (_p, type, reason) => events.push(`${type} ${reason}`),
  });
}

describe('Reconciler', () => {
  function reconciler(objects: WorldObjects) {
    const s = setup(objects);
    const events: string[] = [];
    const r = reconcilerOn(s, events);
    return { ...s, r, events, run: (name = 'web-debug') => r.reconcile(`${NS}/${name}`, silentLogger) };
  }

  it('hands its assignments to the nodes, writes the status, records an Event; a second run writes nothing', async () => {
    const t = reconciler({ ...baseObjects(), policies: [policy({})] });
    await expect(t.run()).resolves.toMatchObject({ result: 'success', writes: 3 });
    expect(t.events).toEqual(['Normal Attaching']);
    expect(t.api.calls).toEqual(['status web-debug']);
    expect([...t.api.nodeQueue].sort()).toEqual(['node-a', 'node-b']);
    await t.api.flush();
    expect(t.api.calls.slice(1).sort()).toEqual(['create node-a', 'create node-b']);
    t.api.calls.length = 0;
    // Now the assignments exist: check again when they would turn stale without a report.
    await expect(t.run()).resolves.toMatchObject({ result: 'requeue', writes: 0, requeueAfterMs: STALE + 1 });
    await t.api.flush();
    expect(t.api.calls).toEqual([]);
    expect(t.events).toHaveLength(1);
  });

  it("the policies on one node go out in one write: the node's object holds an entry for each, their config once", async () => {
    const t = reconciler({ ...baseObjects(), policies: [policy({}), policy({ podSelector: {} }, { name: 'all', uid: 'uid-all' })] });
    await t.run('web-debug');
    await t.run('all');
    await t.api.flush();
    expect(t.api.calls.filter((c) => !c.startsWith('status')).sort()).toEqual(['create node-a', 'create node-b', 'create node-c']);
    const b = t.api.server.get(`${INSTALL_NS}/node-b`)!;
    expect(b.spec.entries.map((e) => `${e.policy.name}:${e.pods.map((p) => p.name).join(',')}`)).toEqual(['all:web-0,web-2', 'web-debug:web-0,web-2']);
    expect(b.spec.configs).toHaveLength(1);
    // one policy gone: its entries leave, the other's stay, the object with nothing left goes
    t.stores.policies.remove(`${NS}/all`);
    t.api.calls.length = 0;
    await t.run('all');
    await t.api.flush();
    expect(t.api.calls.sort()).toEqual(['delete node-c', 'update node-a', 'update node-b']);
    expect(t.api.server.get(`${INSTALL_NS}/node-b`)!.spec.entries.map((e) => e.policy.name)).toEqual(['web-debug']);
  });

  it('a failed node write keeps its change and is retried (the queue backs off); the other nodes are written', async () => {
    const t = reconciler({ ...baseObjects(), policies: [policy({})] });
    t.api.failures.set('create node-a', apiError(409, 'AlreadyExists'));
    await t.run();
    await expect(t.api.flush()).rejects.toThrow("1 of 1 writes of node node-a's assignments failed");
    expect(t.api.server.has(`${INSTALL_NS}/node-b`)).toBe(true);
    t.api.nodeQueue.add('node-a');
    await t.api.flush();
    expect(t.api.calls.filter((c) => c === 'create node-a')).toHaveLength(2);
    expect(t.api.server.get(`${INSTALL_NS}/node-a`)!.spec.entries).toHaveLength(1);
    expect(t.api.nodes.pendingNodes).toBe(0);
  });

  it('a delete of what is already gone is fine', async () => {
    const t = reconciler({ ...baseObjects(), policies: [policy({})] });
    await t.run();
    await t.api.flush();
    t.stores.policies.remove(`${NS}/web-debug`);
    t.api.failures.set('delete node-a', apiError(404, 'NotFound'));
    await expect(t.run()).resolves.toMatchObject({ result: 'success' });
    await expect(t.api.flush()).resolves.toBeUndefined();
    expect(t.api.nodes.pendingNodes).toBe(0);
  });

  it('an invalid spec is terminal, with a Warning event', async () => {
    const t = reconciler({ ...baseObjects(), policies: [policy({ direction: 'Sideways' })] });
    await expect(t.run()).resolves.toMatchObject({ result: 'terminal' });
    expect(t.events).toEqual(['Warning InvalidSpec']);
  });

  it('a limit deadline is a requeue', async () => {
    const t = reconciler({ ...baseObjects(), policies: [policy({ limits: { duration: '1h' } })] });
    await expect(t.run()).resolves.toMatchObject({ result: 'requeue', requeueAfterMs: 3_600_000 });
  });

  it('a failing status write is transient', async () => {
    const t = reconciler({ ...baseObjects(), policies: [policy({})] });
    t.api.failures.set('status', apiError(500, 'InternalError'));
    await expect(t.run()).rejects.toThrow('writing the status failed');
    expect(t.events).toEqual([]);
  });
});

describe('Reconciler with a lagging cache', () => {
  it('remembers its writes until the cache shows them: no double create, no double status, no double Event', async () => {
    const s = setup({ ...baseObjects(), policies: [policy({})] });
    const recent: RecentPolicyWrites = { policies: new RecentWrites<PolicyObject>((k) => s.stores.policies.get(k)) };
    const events: string[] = [];
    const r = reconcilerOn(s, events, recent);
    const run = async () => {
      const res = await r.reconcile(`${NS}/web-debug`, silentLogger);
      await s.api.flush();
      return res;
    };
    s.api.lagging = true;
    await expect(run()).resolves.toMatchObject({ writes: 3 });
    expect(s.api.nodes.rememberedWrites).toBe(2);
    s.api.calls.length = 0;
    // the planner sees no assignment yet and hands them in again: the node writer knows they are written
    await run();
    expect(s.api.calls).toEqual([]);
    expect(events).toEqual(['Normal Attaching']);

    // A relabel while the cache still lags: the node's object is patched from the remembered write.
    s.stores.pods.upsert(slimPod(pod('web-2', { node: 'node-b', labels: { app: 'other' } })));
    await run();
    expect(s.api.calls).toEqual(['status web-debug', 'update node-b']);
    expect(s.api.server.get(`${INSTALL_NS}/node-b`)!.spec.entries[0]!.pods.map((p) => p.name)).toEqual(['web-0']);

    // The watch catches up: every remembered write is seen and forgotten; nothing more to write.
    s.api.lagging = false;
    s.api.catchUp();
    for (const p of s.stores.policies.list()) recent.policies.observe(p);
    expect(s.api.nodes.rememberedWrites + recent.policies.size).toBe(0);
    s.api.calls.length = 0;
    await run();
    expect(s.api.calls).toEqual([]);
  });
});

describe('statusPatch', () => {
  it('sets every field and nulls what went away, nested maps included', () => {
    const prev = { packets: 5, completionTime: 'x', dropped: { busy: 1, rateLimited: 2 } };
    const next = { packets: 6, dropped: { rateLimited: 3 } } as SniffPolicyStatus;
    expect(statusPatch(prev, next)).toEqual({ status: { packets: 6, completionTime: null, dropped: { rateLimited: 3, busy: null } } });
  });
});
