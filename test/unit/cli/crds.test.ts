/**
 * `podtap crds apply` (the chart's pre-upgrade hook) against a Kubernetes API
 * (the embedded one): an older CRD is brought to this version's spec, its
 * labels and annotations kept; a second run changes nothing; a missing CRD is
 * refused with what to run. `podtap crds print` is what `npm run gen` writes.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCrds } from '../../../src/api/crd.ts';
import { CRD_RESOURCE, applyCrds, contains } from '../../../src/cli/crds.ts';
import { startApiServer, writeKubeconfig, type ApiServer } from '@podtap/devcluster';
import { KubeClient, loadKubeConfig, type KubeObject } from '../../../src/k8s/index.ts';

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

  it('refuses to apply when a CRD is missing, naming how to install it', async () => {
    await expect(applyCrds(client)).rejects.toThrow(/CustomResourceDefinition sniffpolicies.podtap.io does not exist: install it first/);
  });

  it('updates older CRDs to this version, keeping their labels; a second run changes nothing', async () => {
    for (const c of older()) await client.create(CRD_RESOURCE, c);
    expect(await applyCrds(client)).toEqual(['sniffpolicies.podtap.io: updated', 'sniffassignments.podtap.io: unchanged']);
    const got = await client.get<Crd>(CRD_RESOURCE, undefined, 'sniffpolicies.podtap.io');
    // this version's spec, with what the API server defaults (conversion: None)
    expect(contains(got.spec, (buildCrds()[0] as Crd).spec)).toBe(true);
    expect(got.spec.versions[0]!.additionalPrinterColumns.find((c) => c.name === 'Collector')?.jsonPath).toBe('.status.collector');
    expect(got.metadata.labels?.['example.com/owner']).toBe('platform');
    expect(await applyCrds(client)).toEqual(['sniffpolicies.podtap.io: unchanged', 'sniffassignments.podtap.io: unchanged']);
  });

  it('print writes the CRDs the chart carries', async () => {
    const r = await execa(join(ROOT, 'node_modules/.bin/node'), [join(ROOT, 'src/cli/main.ts'), 'crds', 'print'], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    const printed = parseAllDocuments(r.stdout).map((d) => d.toJS() as Crd);
    for (const p of printed) {
      const file = parseAllDocuments(await readFile(join(ROOT, 'charts/podtap/crds', `${p.metadata.name}.yaml`), 'utf8'))[0]!.toJS() as Crd;
      expect(p).toEqual(file);
    }
    expect(printed.map((p) => p.metadata.name)).toEqual(['sniffpolicies.podtap.io', 'sniffassignments.podtap.io']);
  });
});
