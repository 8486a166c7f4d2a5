/**
 * The chart's upgrade hooks against the real kube-apiserver, on a cluster as
 * podtap 0.1 left it (the policies' CRD, the CRD of the per-(policy, node)
 * SniffAssignments with a work order in it, no SniffNodeAssignment CRD):
 * `podtap crds apply` and `podtap crds prune` run in process as the hooks'
 * ServiceAccounts, with the RBAC the chart renders for them. What this proves
 * and the embedded API cannot: the pre-upgrade account may create the new CRD
 * (server-side apply to its name, which RBAC authorizes by name) but no other
 * CRD; the post-upgrade account may delete the old CRD and nothing else, and
 * does only once the agents' DaemonSet has rolled.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { buildCrds } from '../../src/api/crd.ts';
import { CRD_RESOURCE, OBSOLETE_CRDS, applyCrds, pruneCrds } from '../../src/cli/crds.ts';
import { KubeClient, httpStatus, loadKubeConfig, type KubeObject } from '../../src/k8s/index.ts';
import { startApiServer, type TestApiServer } from '../helpers/apiserver.ts';
import { until } from '../helpers/kube.ts';
import { OLD_ASSIGNMENTS, OLD_ASSIGNMENTS_CRD } from '../helpers/old-crd.ts';
import { render } from '../unit/packaging/lib/render.ts';

const NS = 'podtap-system';
const [OLD] = OBSOLETE_CRDS;
const DS_REF = { group: 'apps', version: 'v1', plural: 'daemonsets', kind: 'DaemonSet', namespaced: true };

let api: TestApiServer;
let admin: KubeClient;
const clients: KubeClient[] = [];
let agentDaemonSet: string;

async function as(serviceAccount: string): Promise<KubeClient> {
  const c = new KubeClient(loadKubeConfig(await api.kubeconfigFor(NS, serviceAccount)));
  clients.push(c);
  return c;
}

/** The status code of a refused call, or 0 when it succeeded. */
const refusal = (p: Promise<unknown>): Promise<number> => p.then(() => 0, (err: unknown) => httpStatus(err) ?? -1);

beforeAll(async () => {
  api = await startApiServer();
  admin = api.client();
  await api.kubectl(['create', 'namespace', NS], { reject: true });
  // podtap 0.1: its policies' CRD (older or not does not matter here), and its assignments' with one work order
  const [policies] = buildCrds() as KubeObject[];
  await api.kubectl(['apply', '-f', '-'], { input: stringify(policies), reject: true });
  await admin.create(CRD_RESOURCE, OLD_ASSIGNMENTS_CRD);
  await until('the 0.1 CRD served', () => admin.create(OLD_ASSIGNMENTS, { metadata: { name: 'shop.web.node-a', namespace: NS }, spec: { nodeName: 'node-a' } } as KubeObject), 60_000);

  const rendered = await render({});
  const hookKinds = ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'];
  const hooks = rendered.objects.filter((o) => /^pre-upgrade$|^post-upgrade$/.test(o.metadata.annotations?.['helm.sh/hook'] ?? '') && hookKinds.includes(o.kind));
  await api.kubectl(['apply', '-f', '-'], { input: hooks.map((o) => stringify(o)).join('---\n'), reject: true });
  // the agents' DaemonSet as the upgrade left it (no controller-manager here: its status is written below)
  const ds = rendered.objects.find((o) => o.kind === 'DaemonSet' && o.metadata.name.endsWith('-agent'))!;
  agentDaemonSet = ds.metadata.name;
  await api.kubectl(['apply', '-f', '-'], { input: stringify(ds), reject: true });
}, 300_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await api?.stop();
});

describe('upgrading from podtap 0.1', () => {
  it("pre-upgrade: creates the node assignments' CRD and updates the policies'; may create no other CRD", async () => {
    const hook = await as('podtap-crd-upgrade');
    expect(await applyCrds(hook)).toEqual(['sniffpolicies.podtap.io: unchanged', 'sniffnodeassignments.podtap.io: created']);
    expect(await applyCrds(hook)).toEqual(['sniffpolicies.podtap.io: unchanged', 'sniffnodeassignments.podtap.io: unchanged']);
    const other = { apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', metadata: { name: 'widgets.example.com' }, spec: (buildCrds()[1] as { spec: object }).spec };
    expect(await refusal(hook.patch(CRD_RESOURCE, undefined, 'widgets.example.com', other, 'apply', { fieldManager: 'podtap-crds' }))).toBe(403);
    expect(await refusal(hook.create(CRD_RESOURCE, other as KubeObject))).toBe(403);
    expect(await refusal(hook.delete(CRD_RESOURCE, undefined, OLD))).toBe(403);
  });

  it("post-upgrade: keeps the 0.1 CRD while the agents roll, then deletes it and its objects; may delete no other CRD", async () => {
    const hook = await as('podtap-crd-prune');
    const agents = { namespace: NS, name: agentDaemonSet };
    const rolled = (updatedNumberScheduled: number) =>
      admin.patch(DS_REF, NS, agentDaemonSet, { status: { observedGeneration: 1, desiredNumberScheduled: 3, currentNumberScheduled: 3, numberMisscheduled: 0, numberReady: 3, updatedNumberScheduled } }, 'merge', { subresource: 'status' });
    await rolled(2);
    expect(await pruneCrds(hook, agents)).toEqual([expect.stringMatching(new RegExp(`^${OLD}: kept: DaemonSet ${NS}/${agentDaemonSet} is rolling out \\(2 of its 3 pods run its current template\\)`))]);
    expect((await admin.list(OLD_ASSIGNMENTS, { namespace: NS })).items).toHaveLength(1);
    await rolled(3);
    expect(await pruneCrds(hook, agents)).toEqual([`${OLD}: deleted`]);
    await until('the 0.1 CRD and its objects gone', () => admin.get(CRD_RESOURCE, undefined, OLD).then(() => false, (err: unknown) => httpStatus(err) === 404), 60_000);
    expect(await pruneCrds(hook, agents)).toEqual([`${OLD}: absent`]);
    expect(await refusal(hook.delete(CRD_RESOURCE, undefined, 'sniffpolicies.podtap.io'))).toBe(403);
    expect(await refusal(hook.get(CRD_RESOURCE, undefined, 'sniffpolicies.podtap.io'))).toBe(403);
    expect(await refusal(hook.get(DS_REF, NS, 'another'))).toBe(403);
    expect((await admin.list<KubeObject>(CRD_RESOURCE)).items.map((c) => c.metadata.name).sort()).toEqual(['sniffnodeassignments.podtap.io', 'sniffpolicies.podtap.io']);
  });
});
