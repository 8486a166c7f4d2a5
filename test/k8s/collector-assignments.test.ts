/**
 * The collector takes a stream only for a (policy namespace, policy, node)
 * the controller assigned (issue 9 part 2, Kubernetes half), against the real
 * kube-apiserver: the allow-set is fed by a watch of the SniffAssignments in
 * the install namespace (src/collector/assignments.ts), as the account the
 * chart gives the collector (its RBAC rendered and applied here). Each
 * announcement is signed with its node's key, as an agent's: what is refused
 * here is refused for want of an assignment, not of a key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureConfig, SniffPolicySpecSchema } from '../../src/api/index.ts';
import { AssignmentSet } from '../../src/collector/admission.ts';
import { startAssignmentFeed, type AssignmentFeed } from '../../src/collector/assignments.ts';
import { KubeClient, loadKubeConfig } from '../../src/k8s/index.ts';
import { silentLogger } from '../../src/util/log.ts';
import { stringify } from 'yaml';
import { startApiServer, type TestApiServer } from '../helpers/apiserver.ts';
import { render } from '../unit/packaging/lib/render.ts';
import { announcement, startRunning, until, type Running } from '../unit/collector/running.ts';

const SECRET = 'assignments-install-secret';
const INSTALL_NS = 'podtap-system';
/** this collector's address, as the controller resolves a policy's collector to it */
const OWN = '198.18.0.10';

let api: TestApiServer;
let running: Running;
let feed: AssignmentFeed;
let client: KubeClient;
const set = new AssignmentSet();
/** the policies' namespace as the API server stores the assignments (spec.policy.namespace, else the assignment's own) */
let policyNs: string;
let instance = 0;

function assignment(policy: string, node: string, address = OWN, stopped = false): object {
  return {
    apiVersion: 'podtap.io/v1alpha1',
    kind: 'SniffAssignment',
    metadata: { name: `team-a.${policy}.${node}`, namespace: INSTALL_NS },
    spec: {
      nodeName: node,
      policy: { name: policy, namespace: 'team-a', uid: `uid-${policy}`, generation: 1 },
      config: captureConfig(SniffPolicySpecSchema.parse({ podSelector: {}, collector: { address } }), { address, port: 6081 }),
      pods: [],
      limits: { maxPackets: 0, maxBytes: 0 },
      stopped,
    },
  };
}

async function apply(obj: object): Promise<void> {
  // (--validate=false: before assignments moved to the install namespace the CRD had no spec.policy.namespace, and the server drops it)
  await api.kubectl(['apply', '--validate=false', '-f', '-'], { input: stringify(obj), reject: true });
}

/** Announce `policy` as `node` (signed with its key) and tell what the collector did with it. */
async function announce(policy: string, node: string): Promise<'admitted' | 'not-assigned'> {
  const refused = () => running.c.stats().malformedByReason['not-assigned'] ?? 0;
  const before = refused();
  const inst = ++instance;
  const pod = `${policy}-pod-${inst}`;
  await running.send([announcement({ namespace: policyNs, name: policy }, [{ ifindex: 100 + inst, namespace: policyNs, pod }], { secret: SECRET, node, instance: inst })]);
  let outcome: 'admitted' | 'not-assigned' | undefined;
  await until(() => {
    if (refused() > before) outcome = 'not-assigned';
    else if (running.c.router.interfaces().some((i) => i.pod?.name === pod && i.policy?.name === policy)) outcome = 'admitted';
    return outcome !== undefined;
  }, `the collector's answer to ${policy} from ${node}`);
  return outcome!;
}

const has = (policy: string, node: string) => set.has({ namespace: policyNs, policy, node });

beforeAll(async () => {
  api = await startApiServer();
  await api.installCrds();
  await api.kubectl(['create', 'namespace', INSTALL_NS], { reject: true });
  await api.kubectl(['create', 'namespace', 'team-a'], { reject: true });
  const rendered = await render({});
  const rbac = rendered.objects.filter((o) => ['ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'ServiceAccount'].includes(o.kind));
  await api.kubectl(['apply', '-f', '-'], { input: rbac.map((o) => stringify(o)).join('---\n'), reject: true });
  const stored = JSON.parse((await api.kubectl(['create', '--dry-run=server', '--validate=false', '-o', 'json', '-f', '-'], { input: stringify(assignment('probe', 'node-a')), reject: true })).stdout) as {
    metadata: { namespace: string }; spec: { policy: { namespace?: string } };
  };
  policyNs = stored.spec.policy.namespace ?? stored.metadata.namespace;

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
    const can = async (verb: string, ns: string) => (await api.kubectl(['auth', 'can-i', verb, 'sniffassignments.podtap.io', '-n', ns, as])).stdout.trim();
    expect(await can('watch', INSTALL_NS)).toBe('yes');
    expect(await can('list', 'team-a')).toBe('no');
    expect(await can('update', INSTALL_NS)).toBe('no');
  });

  it('no assignment: a signed announcement is refused', async () => {
    expect(await announce('web', 'node-a')).toBe('not-assigned');
  });

  it('assigned to node-a towards this collector: admitted from node-a, refused from node-b', async () => {
    await apply(assignment('web', 'node-a'));
    await until(() => has('web', 'node-a'), 'the assignment in the allow-set');
    expect(await announce('web', 'node-a')).toBe('admitted');
    expect(await announce('web', 'node-b')).toBe('not-assigned');
  });

  it('an assignment towards another collector admits nothing here', async () => {
    await apply(assignment('elsewhere', 'node-a', '198.18.0.99'));
    await apply(assignment('marker', 'node-a'));
    await until(() => has('marker', 'node-a'), 'a later assignment in the allow-set');
    expect(has('elsewhere', 'node-a')).toBe(false);
    expect(await announce('elsewhere', 'node-a')).toBe('not-assigned');
  });

  it('stopped, then deleted: refused again', async () => {
    await apply(assignment('web', 'node-a', OWN, true));
    await until(() => !has('web', 'node-a'), 'the stopped assignment out of the allow-set');
    expect(await announce('web', 'node-a')).toBe('not-assigned');
    await apply(assignment('web', 'node-a'));
    await until(() => has('web', 'node-a'), 'the assignment back');
    expect(await announce('web', 'node-a')).toBe('admitted');
    await api.kubectl(['-n', INSTALL_NS, 'delete', 'sniffassignment', 'team-a.web.node-a'], { reject: true });
    await until(() => !has('web', 'node-a'), 'the deleted assignment out of the allow-set');
    expect(await announce('web', 'node-a')).toBe('not-assigned');
  });

  it('the feed survives the API server restarting (a relist replaces the set)', async () => {
    await api.restart();
    await apply(assignment('after-restart', 'node-c'));
    await until(() => has('after-restart', 'node-c'), 'an assignment made after the restart', 60_000);
    expect(await announce('after-restart', 'node-c')).toBe('admitted');
  });
});
