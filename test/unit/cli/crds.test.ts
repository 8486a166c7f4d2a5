/**
 * `podtap crds apply` (the chart's pre-upgrade hook) against a Kubernetes API
 * (the embedded one): a missing CRD (a kind this version adds) is created; an
 * older CRD is brought to this version's spec, its labels and annotations
 * kept; a second run changes nothing. `podtap crds prune` (the post-upgrade
 * hook) deletes podtap 0.1's CRD and its objects, and only once the agents'
 * DaemonSet has rolled when told to wait for it. `podtap crds print` is what
 * `npm run gen` writes. (RBAC, which the embedded API does not check:
 * test/k8s/crd-upgrade.test.ts.)
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCrds } from '../../../src/api/crd.ts';
import { CRD_RESOURCE, OBSOLETE_CRDS, applyCrds, contains, pruneCrds, rolloutPending } from '../../../src/cli/crds.ts';
import { startApiServer, writeKubeconfig, type ApiServer } from '@podtap/devcluster';
import { KubeClient, loadKubeConfig, type KubeObject } from '../../../src/k8s/index.ts';
import { until } from '../../helpers/kube.ts';
import { OLD_ASSIGNMENTS, OLD_ASSIGNMENTS_CRD } from '../../helpers/old-crd.ts';

type Crd = KubeObject & { spec: { versions: { schema: { openAPIV3Schema: { properties: { status: { properties: Record<string, unknown> } } } }; additionalPrinterColumns: { name: string; jsonPath: string }[] }[] } };
const ROOT = join(import.meta.dirname, '../../..');
let api: ApiServer;
let dir: string;
let kubeconfig: string;
let client: KubeClient;

beforeAll(async () => {
  api = await startApiServer({ port: 0 });
  dir = await mkdtemp(join(tmpdir(), 'podtap-crds-'));
  kubeconfig = join(dir, 'kubeconfig');
  await writeKubeconfig(kubeconfig, api.url);
  client = new KubeClient(loadKubeConfig(kubeconfig));
});
afterAll(async () => {
  await api?.close();
  await rm(dir, { recursive: true, force: true });
});

/** This version's CRDs as an older release had them: without status.collector, the Collector column on spec. */
function older(): Crd[] {
  return (structuredClone(buildCrds()) as Crd[]).map((c) => {
    const v = c.spec.versions[0]!;
    delete v.schema.openAPIV3Schema.properties.status.properties.collector;
    for (const col of v.additionalPrinterColumns) if (col.name === 'Collector') col.jsonPath = '.spec.collector.address';
    c.metadata.labels = { ...c.metadata.labels, 'example.com/owner': 'platform' };
    return c;
  });
}

describe('podtap crds', () => {
  it.each([
    { description: 'equal', input: [{ a: [1, { b: 2 }] }, { a: [1, { b: 2 }] }], expected: true },
    { description: 'a default added by the server', input: [{ a: 1, conversion: { strategy: 'None' } }, { a: 1 }], expected: true },
    { description: 'a changed value', input: [{ a: { b: 2 } }, { a: { b: 3 } }], expected: false },
    { description: 'a missing key', input: [{ a: 1 }, { a: 1, c: 2 }], expected: false },
    { description: 'an array of another length', input: [{ a: [1, 2] }, { a: [1] }], expected: false },
  ])('contains: $description', ({ input, expected }) => {
    expect(contains(input[0], input[1])).toBe(expected);
  });

  it('updates an older CRD to this version, keeping its labels, and creates one this version adds; a second run changes nothing', async () => {
    // (an upgrade from 0.1: the policies' CRD is there, older; the node assignments' is not)
    await client.create(CRD_RESOURCE, older()[0]!);
    expect(await applyCrds(client)).toEqual(['sniffpolicies.podtap.io: updated', 'sniffnodeassignments.podtap.io: created']);
    const got = await client.get<Crd>(CRD_RESOURCE, undefined, 'sniffpolicies.podtap.io');
    // this version's spec, with what the API server defaults (conversion: None)
    expect(contains(got.spec, (buildCrds()[0] as Crd).spec)).toBe(true);
    expect(got.spec.versions[0]!.additionalPrinterColumns.find((c) => c.name === 'Collector')?.jsonPath).toBe('.status.collector');
    expect(got.metadata.labels?.['example.com/owner']).toBe('platform');
    const created = await client.get<Crd>(CRD_RESOURCE, undefined, 'sniffnodeassignments.podtap.io');
    expect(contains(created.spec, (buildCrds()[1] as Crd).spec)).toBe(true);
    expect(await applyCrds(client)).toEqual(['sniffpolicies.podtap.io: unchanged', 'sniffnodeassignments.podtap.io: unchanged']);
  });

  it.each([
    { description: 'rolled out', input: { generation: 3, status: { observedGeneration: 3, desiredNumberScheduled: 5, updatedNumberScheduled: 5 } }, expected: undefined },
    { description: 'no node to run on', input: { generation: 1, status: { observedGeneration: 1, desiredNumberScheduled: 0, updatedNumberScheduled: 0 } }, expected: undefined },
    { description: 'pods of the old template left', input: { generation: 3, status: { observedGeneration: 3, desiredNumberScheduled: 5, updatedNumberScheduled: 4 } }, expected: '4 of its 5 pods run its current template' },
    { description: 'the new template not seen yet', input: { generation: 4, status: { observedGeneration: 3, desiredNumberScheduled: 5, updatedNumberScheduled: 5 } }, expected: 'its controller has not seen its current template yet' },
    { description: 'no status yet', input: { generation: 1 }, expected: 'its controller has not seen its current template yet' },
  ])('rolloutPending: $description', ({ input, expected }) => {
    expect(rolloutPending({ metadata: { name: 'podtap-agent', generation: input.generation }, ...(input.status ? { status: input.status } : {}) })).toBe(expected);
  });

  it("prune deletes podtap 0.1's CRD and its objects, only once the agents' DaemonSet has rolled when told to wait for it", async () => {
    const [old] = OBSOLETE_CRDS;
    const ds = { group: 'apps', version: 'v1', plural: 'daemonsets', kind: 'DaemonSet', namespaced: true };
    const labels = { app: 'agent' };
    await client.create(ds, {
      metadata: { name: 'podtap-agent', namespace: 'default' },
      spec: { selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name: 'agent', image: 'podtap:0.2.0' }] } } },
    } as KubeObject);
    const rolled = (updatedNumberScheduled: number) =>
      client.patch(ds, 'default', 'podtap-agent', { status: { observedGeneration: 1, desiredNumberScheduled: 2, updatedNumberScheduled } }, 'merge', { subresource: 'status' });
    await rolled(1);
    const agents = { namespace: 'default', name: 'podtap-agent' };
    // an install that never ran 0.1 (or was pruned already): nothing to keep, whatever the rollout
    expect(await pruneCrds(client, agents)).toEqual([`${old}: absent`]);

    await client.create(CRD_RESOURCE, OLD_ASSIGNMENTS_CRD);
    await until('the old CRD served', () => client.create(OLD_ASSIGNMENTS, { metadata: { name: 'shop.web.node-a', namespace: 'default' }, spec: {} } as KubeObject));
    expect(await pruneCrds(client, agents)).toEqual([
      `${old}: kept: DaemonSet default/podtap-agent is rolling out (1 of its 2 pods run its current template); delete it once it has: kubectl delete crd ${old}`,
    ]);
    expect((await client.list(OLD_ASSIGNMENTS, { namespace: 'default' })).items).toHaveLength(1);
    await rolled(2);
    expect(await pruneCrds(client, agents)).toEqual([`${old}: deleted`]);
    await until('the old CRD gone', () => client.get(CRD_RESOURCE, undefined, old).then(() => false, () => true));
    expect(await pruneCrds(client)).toEqual([`${old}: absent`]);
    // this version's CRDs are not touched
    expect((await client.list<Crd>(CRD_RESOURCE)).items.map((c) => c.metadata.name).sort()).toEqual(['sniffnodeassignments.podtap.io', 'sniffpolicies.podtap.io']);
  });

  it('print writes the CRDs the chart carries', async () => {
    const r = await execa(join(ROOT, 'node_modules/.bin/node'), [join(ROOT, 'src/cli/main.ts'), 'crds', 'print'], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    const printed = parseAllDocuments(r.stdout).map((d) => d.toJS() as Crd);
    for (const p of printed) {
      const file = parseAllDocuments(await readFile(join(ROOT, 'charts/podtap/crds', `${p.metadata.name}.yaml`), 'utf8'))[0]!.toJS() as Crd;
      expect(p).toEqual(file);
    }
    expect(printed.map((p) => p.metadata.name)).toEqual(['sniffpolicies.podtap.io', 'sniffnodeassignments.podtap.io']);
  });
});
