/**
 * The collector takes a stream only for a (policy namespace, policy, node)
 * the controller assigned (issue 9 part 2, Kubernetes half), against the real
 * kube-apiserver: the allow-set is fed by a watch of the SniffNodeAssignments
 * in the install namespace (src/collector/assignments.ts), as the account the
 * chart gives the collector (its RBAC rendered and applied here). The objects
 * are written as the controller folds them, one per node with an entry per
 * policy; what counts is the entry, not the object. Each announcement is
 * signed with its node's key, as an agent's: what is refused here is refused
 * for want of an assignment, not of a key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureConfig, nodeAssignmentName, SniffPolicySpecSchema, type SniffAssignmentSpec } from '../../src/api/index.ts';
import { AssignmentSet } from '../../src/collector/admission.ts';
import { startAssignmentFeed, type AssignmentFeed } from '../../src/collector/assignments.ts';
import { KubeClient, loadKubeConfig } from '../../src/k8s/index.ts';
import { silentLogger } from '../../src/util/log.ts';
import { stringify } from 'yaml';
import { startApiServer, type TestApiServer } from '../helpers/apiserver.ts';
import { nodeAssignmentObjects } from '../helpers/assignments.ts';
import { render } from '../unit/packaging/lib/render.ts';
import { announcement, startRunning, until, type Running } from '../unit/collector/running.ts';

const SECRET = 'assignments-install-secret';
const INSTALL_NS = 'podtap-system';
const POLICY_NS = 'team-a';
/** this collector's address, as the controller resolves a policy's collector to it */
const OWN = '198.18.0.10';

let api: TestApiServer;
let running: Running;
let feed: AssignmentFeed;
let client: KubeClient;
const set = new AssignmentSet();
let instance = 0;

/** The assignment of @policy on @node, as the controller computes it before folding. */
function spec(policy: string, node: string, address = OWN, stopped = false): SniffAssignmentSpec {
  return {
    nodeName: node,
    policy: { name: policy, namespace: POLICY_NS, uid: `uid-${policy}`, generation: 1 },
    config: captureConfig(SniffPolicySpecSchema.parse({ podSelector: {}, collector: { address } }), { address, port: 6081 }),
    pods: [],
    limits: { maxPackets: 0, maxBytes: 0 },
    stopped,
  };
}

/** Write @node's objects holding exactly @specs (folded as the controller does); parts no longer needed are deleted. Returns the objects' names. */
async function assign(node: string, specs: SniffAssignmentSpec[]): Promise<string[]> {
  const objects = nodeAssignmentObjects(INSTALL_NS, node, specs);
  if (objects.length > 0) await api.kubectl(['apply', '-f', '-'], { input: objects.map((o) => stringify(o)).join('---\n'), reject: true });
  for (let part = objects.length; part < 4; part++) {
    await api.kubectl(['-n', INSTALL_NS, 'delete', 'sniffnodeassignment', nodeAssignmentName(node, part), '--ignore-not-found'], { reject: true });
  }
  return objects.map((o) => o.metadata.name!);
}

/** Announce `policy` as `node` (signed with its key) and tell what the collector did with it. */
async function announce(policy: string, node: string): Promise<'admitted' | 'not-assigned'> {
  const refused = () => running.c.stats().malformedByReason['not-assigned'] ?? 0;
  const before = refused();
  const inst = ++instance;
  const pod = `${policy}-pod-${inst}`;
  await running.send([announcement({ namespace: POLICY_NS, name: policy }, [{ ifindex: 100 + inst, namespace: POLICY_NS, pod }], { secret: SECRET, node, instance: inst })]);
  let outcome: 'admitted' | 'not-assigned' | undefined;
  await until(() => {
    if (refused() > before) outcome = 'not-assigned';
    else if (running.c.router.interfaces().some((i) => i.pod?.name === pod && i.policy?.name === policy)) outcome = 'admitted';
    return outcome !== undefined;
  }, `the collector's answer to ${policy} from ${node}`);
  return outcome!;
}

const has = (policy: string, node: string) => set.has({ namespace: POLICY_NS, policy, node });

beforeAll(async () => {
  api = await startApiServer();
  await api.installCrds();
  await api.kubectl(['create', 'namespace', INSTALL_NS], { reject: true });
  await api.kubectl(['create', 'namespace', POLICY_NS], { reject: true });
  const rendered = await render({});
  const rbac = rendered.objects.filter((o) => ['ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'ServiceAccount'].includes(o.kind));
  await api.kubectl(['apply', '-f', '-'], { input: rbac.map((o) => stringify(o)).join('---\n'), reject: true });

  running = await startRunning({ ingest: { secret: SECRET, workers: 0 }, admission: { allow: set } });
  client = new KubeClient(loadKubeConfig(await api.kubeconfigFor(INSTALL_NS, 'podtap-collector')));
  feed = startAssignmentFeed({ client, namespace: INSTALL_NS, set, addresses: [OWN], logger: silentLogger });
  await feed.synced;
}, 300_000);

afterAll(async () => {
  await feed?.stop();
  client?.close();
  await running?.stop();
  await api?.stop();
});

describe('streams only for what the controller assigned', () => {
  it('the chart gives the collector read access to the assignments of its own namespace only', async () => {
    const as = `--as=system:serviceaccount:${INSTALL_NS}:podtap-collector`;
    const can = async (verb: string, ns: string) => (await api.kubectl(['auth', 'can-i', verb, 'sniffnodeassignments.podtap.io', '-n', ns, as])).stdout.trim();
    expect(await can('watch', INSTALL_NS)).toBe('yes');
    expect(await can('list', POLICY_NS)).toBe('no');
    expect(await can('update', INSTALL_NS)).toBe('no');
  });

  it('no assignment: a signed announcement is refused', async () => {
    expect(await announce('web', 'node-a')).toBe('not-assigned');
  });

  it('assigned to node-a towards this collector: admitted from node-a, refused from node-b', async () => {
    await assign('node-a', [spec('web', 'node-a')]);
    await until(() => has('web', 'node-a'), 'the assignment in the allow-set');
    expect(await announce('web', 'node-a')).toBe('admitted');
    expect(await announce('web', 'node-b')).toBe('not-assigned');
  });

  it('an entry towards another collector admits nothing here, beside one that does', async () => {
    await assign('node-a', [spec('web', 'node-a'), spec('elsewhere', 'node-a', '198.18.0.99'), spec('marker', 'node-a')]);
    await until(() => has('marker', 'node-a'), 'a later entry in the allow-set');
    expect(has('elsewhere', 'node-a')).toBe(false);
    expect(await announce('elsewhere', 'node-a')).toBe('not-assigned');
  });

  it("an entry removed from a node's object is revoked while the object's other entries stay", async () => {
    await assign('node-a', [spec('web', 'node-a'), spec('api', 'node-a')]);
    await until(() => has('api', 'node-a'), 'the second entry in the allow-set');
    expect(await announce('api', 'node-a')).toBe('admitted');
    await assign('node-a', [spec('web', 'node-a')]);
    await until(() => !has('api', 'node-a'), 'the removed entry out of the allow-set');
    expect(await announce('api', 'node-a')).toBe('not-assigned');
    expect(has('web', 'node-a')).toBe(true);
    expect(await announce('web', 'node-a')).toBe('admitted');
  });

  it('stopped, then its object deleted: refused again', async () => {
    await assign('node-a', [spec('web', 'node-a', OWN, true), spec('api', 'node-a')]);
    await until(() => !has('web', 'node-a'), 'the stopped entry out of the allow-set');
    expect(has('api', 'node-a')).toBe(true);
    expect(await announce('web', 'node-a')).toBe('not-assigned');
    await assign('node-a', [spec('web', 'node-a'), spec('api', 'node-a')]);
    await until(() => has('web', 'node-a'), 'the entry back');
    expect(await announce('web', 'node-a')).toBe('admitted');
    await assign('node-a', []);
    await until(() => !has('web', 'node-a') && !has('api', 'node-a'), "the deleted object's entries out of the allow-set");
    expect(await announce('web', 'node-a')).toBe('not-assigned');
  });

  it("a node's second object (past the entries bound) admits like its first; deleting it revokes only its own entries", async () => {
    const specs = Array.from({ length: 70 }, (_, i) => spec(`p${String(i).padStart(2, '0')}`, 'node-d'));
    expect(await assign('node-d', specs)).toEqual(['node-d', nodeAssignmentName('node-d', 1)]);
    await until(() => has('p00', 'node-d') && has('p69', 'node-d'), 'the entries of both objects in the allow-set');
    expect(await announce('p69', 'node-d')).toBe('admitted');
    await api.kubectl(['-n', INSTALL_NS, 'delete', 'sniffnodeassignment', nodeAssignmentName('node-d', 1)], { reject: true });
    await until(() => !has('p69', 'node-d'), "the second object's entries out of the allow-set");
    expect(has('p00', 'node-d')).toBe(true);
    expect(await announce('p69', 'node-d')).toBe('not-assigned');
    expect(await announce('p00', 'node-d')).toBe('admitted');
  });

  it('the feed survives the API server restarting (a relist replaces the set)', async () => {
    await api.restart();
    await assign('node-c', [spec('after-restart', 'node-c')]);
    await until(() => has('after-restart', 'node-c'), 'an assignment made after the restart', 60_000);
    expect(await announce('after-restart', 'node-c')).toBe('admitted');
  });
});
