/**
 * The controller end to end against a Kubernetes API — the real kube-apiserver
 * with etcd, and the project's embedded stand-in (packages/devcluster), the same
 * scenarios and expectations for both (a difference is a bug of the stand-in):
 * REST and watch, the generated CRDs, resourceVersions, the status
 * subresource, garbage collection, Events and the leader-election Lease.
 */
import { describe, expect, it, beforeAll, afterAll, afterEach } from 'vitest';
import { ANNOTATION_OBJECT, PodtapResources, type SniffAssignment, type SniffPolicyStatus } from '../../src/api/index.ts';
import { listAssignments } from '../helpers/assignments.ts';
import { startController, type RunningController } from '../../src/controller/controller.ts';
import { isAlreadyExists, KubeClient, Resources, type KubeObject, type ResourceRef } from '../../src/k8s/index.ts';
import { silentLogger } from '../../src/util/log.ts';
import { BACKENDS, startBackend, until, type KubeBackend } from '../helpers/kube.ts';

const NS = 'shop';
const INSTALL_NS = 'podtap-system';
const SERVICE_ACCOUNTS: ResourceRef = { group: '', version: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true };
const CRD_REF: ResourceRef = { group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions', kind: 'CustomResourceDefinition', namespaced: false };

describe.each(BACKENDS)('controller on %s', (backendKind) => {
  let api: KubeBackend;
  let kubeconfig: string;
  let client: KubeClient;
  const running: RunningController[] = [];

  async function createNode(name: string, labels: Record<string, string> = {}): Promise<void> {
    await client.create(Resources.nodes, { metadata: { name, labels: { 'kubernetes.io/hostname': name, ...labels } } });
  }

  async function createPod(name: string, node: string, ip: string, labels: Record<string, string> = { app: 'web' }, extra: { hostNetwork?: boolean } = {}): Promise<void> {
    const created = await client.create<KubeObject & { status?: unknown }>(Resources.pods, {
      metadata: { name, namespace: NS, labels },
      spec: { nodeName: node, containers: [{ name: 'c', image: 'registry.example/app:1' }], ...extra },
    } as KubeObject);
    // The kubelet's part: the pod runs and has an IP (status subresource).
    await client.replaceStatus(Resources.pods, { ...created, status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] } } as KubeObject);
  }

  async function relabelPod(name: string, labels: Record<string, string>): Promise<void> {
    await client.patch(Resources.pods, NS, name, { metadata: { labels } }, 'merge');
  }

  async function createPolicy(name: string, spec: Record<string, unknown>): Promise<void> {
    await client.create(PodtapResources.sniffPolicies, { apiVersion: 'podtap.io/v1alpha1', kind: 'SniffPolicy', metadata: { name, namespace: NS }, spec } as KubeObject);
  }

  async function assignments(policy: string): Promise<SniffAssignment[]> {
    const items = (await listAssignments(client, INSTALL_NS)).filter((a) => a.spec.policy.namespace === NS && a.spec.policy.name === policy);
    return items.sort((a, b) => a.spec.nodeName.localeCompare(b.spec.nodeName));
  }

  async function policyStatus(name: string): Promise<SniffPolicyStatus | undefined> {
    return (await client.get<{ status?: SniffPolicyStatus }>(PodtapResources.sniffPolicies, NS, name)).status;
  }

  const ready = (s: SniffPolicyStatus | undefined) => s?.conditions?.find((c) => c.type === 'Ready');

  async function controller(opts: Parameters<typeof startController>[0] = {}): Promise<RunningController> {
    const c = await startController({
      kubeconfig,
      metricsAddr: '127.0.0.1:0',
      leaderElect: false,
      namespace: INSTALL_NS,
      // the test's collector address and its namespace's collector Service
      destinations: { services: [`${NS}/collector`], cidrs: ['198.18.0.0/15'] },
      logger: silentLogger,
      statusCoalesceMs: 50,
      workers: 2,
      ...opts,
    });
    running.push(c);
    return c;
  }

  async function metric(c: RunningController, name: string): Promise<string> {
    const text = await (await fetch(`http://${c.metricsAddress}/metrics`)).text();
    return text
      .split('\n')
      .filter((l) => l.startsWith(name))
      .join('\n');
  }

  /** Wait until the controller has made no API write for 500 ms. */
  async function quiet(c: RunningController): Promise<void> {
    let last = await metric(c, 'podtap_controller_assignment_writes_total');
    let since = Date.now();
    await until('the controller to stop writing', async () => {
      const now = await metric(c, 'podtap_controller_assignment_writes_total');
      if (now !== last) {
        last = now;
        since = Date.now();
      }
      return Date.now() - since >= 500;
    });
  }

  beforeAll(async () => {
    api = await startBackend(backendKind);
    kubeconfig = api.kubeconfig;
    client = api.client();
    await api.installCrds();
    await until('the CRDs to be served', async () => (await client.list(PodtapResources.sniffPolicies)) && (await client.list(PodtapResources.sniffNodeAssignments)));
    for (const ns of [NS, INSTALL_NS]) await client.create(Resources.namespaces, { metadata: { name: ns } });
    // (a real API server admits a pod only with its ServiceAccount; the controller-manager that makes it does not run here)
    await client.create(SERVICE_ACCOUNTS, { metadata: { name: 'default', namespace: NS } }).catch((err: unknown) => {
      if (!isAlreadyExists(err)) throw err;
    });
    await createNode('node-a', { zone: 'a' });
    await createNode('node-b', { zone: 'b' });
    await createNode('node-c', { zone: 'a' });
    await createPod('web-1', 'node-a', '198.18.0.1');
    await createPod('web-2', 'node-b', '198.18.0.2');
    await createPod('web-3', 'node-b', '198.18.0.3');
    await createPod('db-1', 'node-c', '198.18.0.4', { app: 'db' });
    await createPod('web-host', 'node-c', '198.18.100.3', { app: 'web' }, { hostNetwork: true });
  }, 180_000);

  afterEach(async () => {
    await Promise.all(running.splice(0).map((c) => c.stop()));
  });

  afterAll(async () => {
    await api?.stop();
  });

  describe('scenarios', () => {
    it('turns a policy into assignments, follows pods, aggregates agent reports, and cleans up', async () => {
      const c = await controller();
      await c.waitForSync();
      await createPolicy('web-debug', { podSelector: { matchLabels: { app: 'web' } }, collector: { address: '198.18.9.9' } });

      // Assignments for the nodes with selected pods (not node-c: only a hostNetwork pod there).
      const first = await until('two assignments', async () => {
        const l = await assignments('web-debug');
        return l.length === 2 ? l : undefined;
      });
      expect(first.map((a) => [a.metadata.name, a.spec.nodeName, a.spec.pods.map((p) => p.name)])).toEqual([
        [`${NS}.web-debug.node-a`, 'node-a', ['web-1']],
        [`${NS}.web-debug.node-b`, 'node-b', ['web-2', 'web-3']],
      ]);
      // in podtap's namespace, naming the policy (no owner reference can cross namespaces)
      const policyObj = await client.get<KubeObject>(PodtapResources.sniffPolicies, NS, 'web-debug');
      expect(first[0]!.metadata.namespace).toBe(INSTALL_NS);
      expect(first[0]!.metadata.ownerReferences).toBeUndefined();
      // and its creation time: where a node's --max-sessions leaves policies waiting, the oldest goes first
      expect(policyObj.metadata.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      expect(first[0]!.spec.policy).toEqual({ namespace: NS, name: 'web-debug', uid: policyObj.metadata.uid, generation: 1, creationTimestamp: policyObj.metadata.creationTimestamp });
      expect(first[0]!.spec.config.collector).toEqual({ address: '198.18.9.9', port: 6081 });
      const attaching = await until('status Attaching', async () => {
        const s = await policyStatus('web-debug');
        return ready(s)?.reason === 'Attaching' ? s : undefined;
      });
      expect(attaching).toMatchObject({ selectedPods: 3, nodesTotal: 2, nodesReady: 0, nodeSummary: '0/2', observedGeneration: 1 });
      expect(ready(attaching)!.message).toContain('0/2 nodes ready');

      // The agents report: Attached on the current generation, each on its node's object (all its entries at once).
      for (const a of first) {
        await client.patchStatus(PodtapResources.sniffNodeAssignments, INSTALL_NS, a.metadata.annotations![ANNOTATION_OBJECT]!, {
          status: {
            observedGeneration: a.metadata.generation,
            entries: [
              {
                policyUid: a.spec.policy.uid,
                state: 'Attached',
                attachedInterfaces: a.spec.pods.length,
                collectorReachable: true,
                lastReportTime: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
                counters: { mirrored: 100, bytes: 10_000, pieces: 2, lost: 1, dropped: { rateLimited: 1 } },
              },
            ],
          },
        });
      }
      const attached = await until('Ready True', async () => {
        const s = await policyStatus('web-debug');
        return ready(s)?.status === 'True' ? s : undefined;
      });
      expect(attached).toMatchObject({ nodesReady: 2, nodeSummary: '2/2', packets: 200, bytes: 20_000, fragments: 4, lost: 2, attachedInterfaces: 3, dropped: { rateLimited: 2 } });
      expect(ready(attached)).toMatchObject({ reason: 'Attached' });
      expect(ready(attached)!.message).toContain('1 pod on the host network');

      // What kubectl get sniffpolicies prints (the CRD's printer columns, as a Table from the server).
      const printed = (await api.kubectl(['get', 'sniffpolicies', '-n', NS, 'web-debug'], { reject: true })).stdout.trim().split('\n');
      const [header, line] = printed.map((l) => l.split(/\s+/));
      const row = Object.fromEntries(header!.map((n, i) => [n, line![i]]));
      expect(row).toMatchObject({ NAME: 'web-debug', READY: 'True', PODS: '3', NODES: '2/2', PACKETS: '200', LOST: '2' });

      // An Event on the policy for each change of Ready.
      const events = await until('events', async () => {
        const { items } = await client.list<{ involvedObject: { name: string }; reason: string; type: string }>(Resources.events, { namespace: NS });
        const mine = items.filter((e) => e.involvedObject.name === 'web-debug').map((e) => `${e.type} ${e.reason}`);
        return mine.includes('Normal Attached') ? mine : undefined;
      });
      expect(events).toContain('Normal Attaching');

      // Relabel a pod out: node-a loses its only pod, node-b is updated.
      await relabelPod('web-1', { app: 'other' });
      await relabelPod('web-3', { app: 'other' });
      const after = await until('assignments to follow the labels', async () => {
        const l = await assignments('web-debug');
        return l.length === 1 && l[0]!.spec.pods.length === 1 ? l : undefined;
      });
      expect(after.map((a) => [a.spec.nodeName, a.spec.pods.map((p) => p.name)])).toEqual([['node-b', ['web-2']]]);
      expect(after[0]!.metadata.generation).toBe(2);
      // The agent has not seen generation 2 yet: Attaching again.
      await until('Attaching after the change', async () => ready(await policyStatus('web-debug'))?.reason === 'Attaching');
      await relabelPod('web-1', { app: 'web' });
      await relabelPod('web-3', { app: 'web' });
      await until('assignments back', async () => (await assignments('web-debug')).length === 2);

      // Idempotent: with nothing changing, the controller soon writes nothing more (no write loop).
      await quiet(c);

      // Delete the policy: its assignments go.
      await client.delete(PodtapResources.sniffPolicies, NS, 'web-debug');
      await until('assignments gone', async () => (await assignments('web-debug')).length === 0);

      expect(await metric(c, 'podtap_controller_leader')).toBe('podtap_controller_leader 1');
      expect(await metric(c, 'podtap_controller_reconcile_total{result="success"}')).not.toBe('podtap_controller_reconcile_total{result="success"} 0');
      const readyz = await fetch(`http://${c.metricsAddress}/readyz`);
      expect(readyz.status).toBe(200);
    }, 30_000);

    it('resolves a collector Service to a ready endpoint and never captures the collector', async () => {
      const c = await controller();
      await c.waitForSync();
      await createPod('collector-0', 'node-a', '198.18.7.7', { app: 'web' });
      await createPolicy('via-svc', { podSelector: { matchLabels: { app: 'web' } }, collector: { service: { name: 'collector' } } });
      await until('CollectorNotFound', async () => ready(await policyStatus('via-svc'))?.reason === 'CollectorNotFound');
      expect(await assignments('via-svc')).toEqual([]);
      await client.create(Resources.services, { metadata: { name: 'collector', namespace: NS }, spec: { ports: [{ name: 'geneve', port: 6081, protocol: 'UDP' }] } } as KubeObject);
      await client.create(Resources.endpointSlices, {
        metadata: { name: 'collector-abc', namespace: NS, labels: { 'kubernetes.io/service-name': 'collector' } },
        addressType: 'IPv4',
        endpoints: [{ addresses: ['198.18.7.7'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'collector-0', namespace: NS } }],
        ports: [{ name: 'geneve', port: 16081, protocol: 'UDP' }],
      } as KubeObject);
      const l = await until('assignments via the Service', async () => {
        const a = await assignments('via-svc');
        return a.length === 2 ? a : undefined;
      });
      expect(l[0]!.spec.config.collector).toEqual({ address: '198.18.7.7', port: 16081 });
      expect(l.find((a) => a.spec.nodeName === 'node-a')!.spec.pods.map((p) => p.name)).toEqual(['web-1']); // not collector-0
      await client.delete(PodtapResources.sniffPolicies, NS, 'via-svc');
      await client.delete(Resources.pods, NS, 'collector-0');
      await until('assignments gone', async () => (await assignments('via-svc')).length === 0);
    }, 30_000);

    it('a policy stored before a validation rule existed is InvalidSpec, terminal, and gets no assignments', async () => {
      const c = await controller();
      await c.waitForSync();
      // An older CRD that did not validate the spec lets an invalid policy in.
      const crdName = 'sniffpolicies.podtap.io';
      const original = await client.get<KubeObject & { spec: { versions: { schema: { openAPIV3Schema: { properties: Record<string, unknown> } } }[] } }>(CRD_REF, undefined, crdName);
      const loose = structuredClone(original);
      loose.spec.versions[0]!.schema.openAPIV3Schema.properties.spec = { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
      await client.replace(CRD_REF, loose);
      await until('the loose schema', async () => {
        await createPolicy('bad', { podSelector: { matchLabels: { app: 'web' } }, mtu: 100, collector: { address: '198.18.9.9', port: 0 } });
        return true;
      });
      const restored = await client.get<KubeObject>(CRD_REF, undefined, crdName);
      await client.replace(CRD_REF, { ...original, metadata: { ...original.metadata, resourceVersion: restored.metadata.resourceVersion } });

      const s = await until('InvalidSpec', async () => {
        const st = await policyStatus('bad');
        return ready(st)?.reason === 'InvalidSpec' ? st : undefined;
      });
      expect(ready(s)!.message.split('; ').sort()).toEqual(['spec.collector.port: port must be between 1 and 65535', 'spec.mtu: mtu must be 0 (the route to the collector decides) or 1280..9216']);
      expect(await metric(c, 'podtap_controller_reconcile_total{result="terminal"}')).not.toBe('podtap_controller_reconcile_total{result="terminal"} 0');
      expect(await assignments('bad')).toEqual([]);
      await client.delete(PodtapResources.sniffPolicies, NS, 'bad');
    }, 30_000);

    it('two replicas: one leads, the other stands by and takes over when the leader stops', async () => {
      const timings = { leaseDurationMs: 3000, renewIntervalMs: 500, renewDeadlineMs: 2000, retryPeriodMs: 200 };
      const common = { leaderElect: true, namespace: INSTALL_NS, leaderTimings: timings };
      const one = await controller({ ...common, identity: 'replica-one' });
      await one.leading;
      const two = await controller({ ...common, identity: 'replica-two' });
      await two.waitForSync();
      await createPolicy('ha', { podSelector: { matchLabels: { app: 'web' } }, collector: { address: '198.18.9.9' } });
      await until('assignments from the leader', async () => (await assignments('ha')).length === 2);
      await new Promise((r) => setTimeout(r, 300));
      expect(one.isLeader()).toBe(true);
      expect(two.isLeader()).toBe(false);
      expect(await metric(two, 'podtap_controller_leader')).toBe('podtap_controller_leader 0');
      expect(await metric(two, 'podtap_controller_assignment_writes_total')).toBe('');
      expect((await fetch(`http://${two.metricsAddress}/readyz`)).status).toBe(200); // a warm standby is ready
      const lease = await client.get<{ spec: { holderIdentity: string } }>(Resources.leases, 'podtap-system', 'podtap-controller');
      expect(lease.spec.holderIdentity).toBe('replica-one');

      // The leader stops gracefully and releases the lease: the standby takes over well before it would expire.
      const stoppedAt = Date.now();
      await one.stop();
      await two.leading;
      expect(Date.now() - stoppedAt).toBeLessThan(2000);
      expect(two.isLeader()).toBe(true);
      await relabelPod('web-1', { app: 'other' });
      await until('the new leader reconciles', async () => (await assignments('ha')).length === 1);
      await relabelPod('web-1', { app: 'web' });
      await until('and again', async () => (await assignments('ha')).length === 2);
      await client.delete(PodtapResources.sniffPolicies, NS, 'ha');
      await until('assignments gone', async () => (await assignments('ha')).length === 0);
    }, 30_000);
  });
});
