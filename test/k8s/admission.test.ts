/**
 * The chart's Kubernetes-side defences, judged by the real kube-apiserver
 * (test/helpers/apiserver.ts) with the chart's own objects (rendered by
 * scripts/helm-render) applied to it:
 *
 *  - destinations (issue 9 part 1): a SniffPolicy naming a collector the
 *    admin did not allow is refused at admission, with the same words as the
 *    controller's DestinationNotAllowed condition;
 *  - agents confined to their node (part 5): the agent's RBAC reaches the
 *    install namespace only, and the admission policy lets an agent write the
 *    status of its own node's SniffNodeAssignment only (the node claim of its
 *    pod-bound token against the object's spec.nodeName).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureConfig, SniffPolicySpecSchema } from '../../src/api/index.ts';
import { destinationRefusal } from '../../src/controller/destinations.ts';
import { startApiServer, type TestApiServer } from '../helpers/apiserver.ts';
import { nodeAssignmentObjects } from '../helpers/assignments.ts';
import { render, type K8sObject } from '../unit/packaging/lib/render.ts';

const INSTALL_NS = 'podtap-system';
const TENANT_NS = 'shop';
/** Values for the install under test: one network allowed by address besides the install's collector. */
const VALUES = { destinations: { cidrs: ['198.18.0.0/15'] } };
const ALLOWED = { services: [`${INSTALL_NS}/podtap-collector`], cidrs: VALUES.destinations.cidrs };

let api: TestApiServer;
let objects: K8sObject[];

async function until<T>(what: string, f: () => Promise<T | undefined | false>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const apply = (objs: unknown[], kubeconfig?: string) => api.kubectl(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objs }), reject: true, ...(kubeconfig ? { kubeconfig } : {}) });

function policy(name: string, collector: Record<string, unknown>) {
  return { apiVersion: 'podtap.io/v1alpha1', kind: 'SniffPolicy', metadata: { name, namespace: TENANT_NS }, spec: { podSelector: { matchLabels: { app: 'web' } }, collector } };
}

const POLICY_UID = '6b1f0c5e-0000-4000-8000-000000000001';

/** The SniffNodeAssignment of @node, with one entry: policy web of the tenant, as the controller writes it. */
function nodeObject(node: string) {
  const [obj] = nodeAssignmentObjects(INSTALL_NS, node, [
    {
      nodeName: node,
      policy: { namespace: TENANT_NS, name: 'web', uid: POLICY_UID, generation: 1 },
      // what the controller writes for a policy of defaults
      config: captureConfig(SniffPolicySpecSchema.parse({ podSelector: {}, collector: { address: '198.18.9.2' } }), { address: '198.18.9.2', port: 6081 }),
      pods: [{ name: 'web-0', uid: 'u-1', ips: ['198.18.5.10'] }],
      limits: { maxPackets: 0, maxBytes: 0 },
      stopped: false,
    },
  ]);
  return obj!;
}

/** What an agent writes: the status of every entry of the object at once. */
const statusPatch = (state: string) =>
  JSON.stringify({ status: { observedGeneration: 1, entries: [{ policyUid: POLICY_UID, state, attachedInterfaces: 0, lastReportTime: '2025-01-02T03:04:05Z' }] } });

beforeAll(async () => {
  api = await startApiServer();
  await api.installCrds();
  objects = (await render({ values: VALUES })).objects;
  for (const ns of [INSTALL_NS, TENANT_NS]) await api.kubectl(['create', 'namespace', ns], { reject: true });
  // the chart's objects these tests judge: accounts, roles, admission policies
  const kinds = ['ServiceAccount', 'Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding'];
  await apply(objects.filter((o) => kinds.includes(o.kind)));
  // an admission policy is enforced once the server has compiled it: wait for a refusal
  await until('the destinations policy to be enforced', async () => {
    const r = await api.kubectl(['create', '--dry-run=server', '-f', '-'], { input: JSON.stringify(policy('probe', { address: '169.254.169.254' })) });
    return r.exitCode !== 0 && r.stderr.includes('is not an allowed destination');
  });
}, 180_000);

afterAll(async () => {
  await api?.stop();
});

describe('destinations: refused by the API server unless the admin allowed them', () => {
  it.each([
    { description: "the install's collector Service", input: { service: { name: 'podtap-collector', namespace: INSTALL_NS } }, expected: 'admitted' },
    { description: 'an address in the allowed network', input: { address: '198.18.9.9' }, expected: 'admitted' },
    { description: 'the cloud metadata address', input: { address: '169.254.169.254' }, expected: 'refused' },
    { description: 'an IPv6 address (no IPv6 network allowed)', input: { address: '2001:db8::1' }, expected: 'refused' },
    { description: 'kube-dns on UDP 53', input: { service: { name: 'kube-dns', namespace: 'kube-system' }, port: 53 }, expected: 'refused' },
    { description: "a Service of the tenant's own namespace", input: { service: { name: 'sink' } }, expected: 'refused' },
    { description: "the collector's name in the tenant's namespace", input: { service: { name: 'podtap-collector' } }, expected: 'refused' },
  ])('$description: $expected', async ({ input, expected }) => {
    const r = await api.kubectl(['create', '--dry-run=server', '-f', '-'], { input: JSON.stringify(policy('p', input)) });
    if (expected === 'admitted') {
      expect(r.stderr).toBe('');
      expect(r.exitCode).toBe(0);
      return;
    }
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('podtap-destinations');
    // the server's words are the controller's (DestinationNotAllowed)
    expect(r.stderr).toContain(destinationRefusal({ collector: input }, TENANT_NS, ALLOWED));
  });

  it('an update that points an admitted policy elsewhere is refused; other edits of it are not', async () => {
    await apply([policy('moving', { address: '198.18.9.9' })]);
    const r = await api.kubectl(['-n', TENANT_NS, 'patch', 'sniffpolicy', 'moving', '--type=merge', '-p', JSON.stringify({ spec: { collector: { address: '10.0.0.1' } } })]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('spec.collector.address 10.0.0.1 is not an allowed destination');
    const label = await api.kubectl(['-n', TENANT_NS, 'label', 'sniffpolicy', 'moving', 'team=a']);
    expect(label.stderr).toBe('');
  });
});

describe('agents: the install namespace only, and status of their own node only', () => {
  const agentSa = () => objects.find((o) => o.kind === 'ServiceAccount' && o.metadata.name.endsWith('-agent'))!.metadata.name;
  let agentA: string;

  beforeAll(async () => {
    for (const node of ['node-a', 'node-b']) await api.kubectl(['create', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: node } }), reject: true });
    // the agent pod of node-a (never runs: no kubelet; its token is what matters)
    await apply([
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'agent-a', namespace: INSTALL_NS },
        spec: { nodeName: 'node-a', serviceAccountName: agentSa(), automountServiceAccountToken: false, containers: [{ name: 'agent', image: 'podtap:test' }] },
      },
      nodeObject('node-a'),
      nodeObject('node-b'),
    ]);
    agentA = await api.kubeconfigForPod(INSTALL_NS, agentSa(), 'agent-a');
  }, 60_000);

  const patchStatus = (name: string, kubeconfig: string) =>
    api.kubectl(['-n', INSTALL_NS, 'patch', 'sniffnodeassignment', name, '--subresource=status', '--type=merge', '-p', statusPatch('Attached')], { kubeconfig });
  const stateOf = async (name: string) =>
    (await api.kubectl(['-n', INSTALL_NS, 'get', 'sniffnodeassignment', name, '-o', 'jsonpath={.status.entries[*].state}'], { reject: true })).stdout;

  it("writes its own node's object's status", async () => {
    const r = await patchStatus('node-a', agentA);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(await stateOf('node-a')).toBe('Attached');
  });

  it("is refused another node's, naming both", async () => {
    const r = await patchStatus('node-b', agentA);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('the podtap agent of node node-a may not write the status of node-b, the assignments of node node-b');
    expect(await stateOf('node-b')).toBe('');
  });

  it('is refused with a token that names no node (not bound to its pod)', async () => {
    const r = await api.kubectl(['-n', INSTALL_NS, 'create', 'token', agentSa()], { reject: true });
    const kc = agentA.replace(/\.kubeconfig$/, '-unbound.kubeconfig');
    const { readFile, writeFile } = await import('node:fs/promises');
    await writeFile(kc, (await readFile(agentA, 'utf8')).replace(/token: "[^"]*"/, `token: "${r.stdout.trim()}"`), { mode: 0o600 });
    const w = await patchStatus('node-a', kc);
    expect(w.exitCode).not.toBe(0);
    expect(w.stderr).toContain('names no node');
  });

  it.each([
    { description: "edit the spec of its own node's object", args: ['-n', INSTALL_NS, 'patch', 'sniffnodeassignment', 'node-a', '--type=merge', '-p', '{"spec":{"entries":[]}}'] },
    { description: 'create a node object', args: ['-n', INSTALL_NS, 'create', '-f', '-'], input: JSON.stringify({ ...nodeObject('node-a'), metadata: { name: 'node-a.1', namespace: INSTALL_NS } }) },
    { description: "delete its own node's object", args: ['-n', INSTALL_NS, 'delete', 'sniffnodeassignment', 'node-a'] },
    { description: "read assignments in a tenant's namespace", args: ['-n', TENANT_NS, 'get', 'sniffnodeassignments'] },
    { description: 'read assignments cluster-wide', args: ['get', 'sniffnodeassignments', '--all-namespaces'] },
    { description: 'read policies', args: ['-n', TENANT_NS, 'get', 'sniffpolicies'] },
  ])('may not $description (RBAC)', async ({ args, input }) => {
    const r = await api.kubectl(args, { kubeconfig: agentA, ...(input ? { input } : {}) });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('forbidden');
  });

  it('may read the assignments of the install namespace (its watch)', async () => {
    const r = await api.kubectl(['-n', INSTALL_NS, 'get', 'sniffnodeassignments', '-o', 'name'], { kubeconfig: agentA });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n').sort()).toEqual(['sniffnodeassignment.podtap.io/node-a', 'sniffnodeassignment.podtap.io/node-b']);
  });
});

describe('a ResourceQuota caps the policies of a namespace (count/sniffpolicies.podtap.io)', () => {
  const QUOTA_NS = 'quota-team';
  const create = (name: string) => api.kubectl(['create', '-f', '-'], { input: JSON.stringify({ ...policy(name, { address: '198.18.9.9' }), metadata: { name, namespace: QUOTA_NS } }) });

  it('admits up to the quota and refuses the next, naming the quota', async () => {
    await api.kubectl(['create', 'namespace', QUOTA_NS], { reject: true });
    // the example of docs/security.md
    await apply([{ apiVersion: 'v1', kind: 'ResourceQuota', metadata: { name: 'sniffpolicies', namespace: QUOTA_NS }, spec: { hard: { 'count/sniffpolicies.podtap.io': '2' } } }]);
    // kube-controller-manager's quota controller would fill status (there is
    // none here); the API server's quota admission counts from it
    const status = { status: { hard: { 'count/sniffpolicies.podtap.io': '2' }, used: { 'count/sniffpolicies.podtap.io': '0' } } };
    await api.kubectl(['-n', QUOTA_NS, 'patch', 'resourcequota', 'sniffpolicies', '--subresource=status', '--type=merge', '-p', JSON.stringify(status)], { reject: true });
    for (const name of ['one', 'two']) expect((await create(name)).stderr).toBe('');
    const third = await create('three');
    expect(third.exitCode).not.toBe(0);
    expect(third.stderr).toContain('exceeded quota: sniffpolicies');
    expect(third.stderr).toContain('count/sniffpolicies.podtap.io=2');
  });
});
