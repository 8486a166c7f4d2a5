/**
 * kubectl podtap finds the collector by the chart's labels, in any namespace,
 * so a release of any name works without flags; several are refused with
 * their names; none falls back to the chart's default names. Against the
 * embedded Kubernetes API.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiServer, writeKubeconfig, type ApiServer } from '@podtap/devcluster';
import { KubeClient, Resources, loadKubeConfig, type KubeObject } from '../../../src/k8s/index.ts';
import { findCollector } from '../../../src/plugin/collector-api.ts';
import { Kube } from '../../../src/plugin/kube.ts';

let api: ApiServer;
let dir: string;
let kube: Kube;
let client: KubeClient;

const LABELS = { 'app.kubernetes.io/name': 'podtap', 'app.kubernetes.io/component': 'collector' };

/** The chart's two Services of a collector: its own (with the tunnel port) and the metrics one (same labels). */
async function release(namespace: string, name: string): Promise<void> {
  await client.create(Resources.namespaces, { metadata: { name: namespace } });
  await client.create(Resources.services, {
    metadata: { name: `${name}-collector`, namespace, labels: LABELS },
    spec: { selector: LABELS, ports: [{ name: 'tunnel', port: 6081, protocol: 'UDP' }, { name: 'http', port: 8080, protocol: 'TCP' }] },
  } as KubeObject);
  await client.create(Resources.services, {
    metadata: { name: `${name}-collector-metrics`, namespace, labels: LABELS },
    spec: { selector: LABELS, ports: [{ name: 'metrics', port: 8080, protocol: 'TCP' }] },
  } as KubeObject);
}

beforeAll(async () => {
  api = await startApiServer({ port: 0 });
  dir = await mkdtemp(join(tmpdir(), 'podtap-find-collector-'));
  await writeKubeconfig(join(dir, 'kubeconfig'), api.url);
  client = new KubeClient(loadKubeConfig(join(dir, 'kubeconfig')));
  kube = new Kube({ kubeconfig: join(dir, 'kubeconfig') });
});
afterAll(async () => {
  await api?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('finding the collector', () => {
  it('falls back to the chart\'s default names when no Service carries its labels', async () => {
    expect(await findCollector(kube, {})).toEqual({ namespace: 'podtap-system', service: 'podtap-collector', tokenSecret: 'podtap-collector-token' });
  });

  it('finds a release of another name in another namespace, and its token Secret', async () => {
    await release('tools', 'netcap');
    expect(await findCollector(kube, {})).toEqual({ namespace: 'tools', service: 'netcap-collector', tokenSecret: 'netcap-collector-token' });
  });

  it.each([
    { description: 'several: refused, naming them', input: {}, expected: /2 podtap collectors found: (tools\/netcap-collector, capture\/podtap-collector|capture\/podtap-collector, tools\/netcap-collector)/ },
    { description: 'several, one namespace given: that one', input: { namespace: 'capture' }, expected: { namespace: 'capture', service: 'podtap-collector', tokenSecret: 'podtap-collector-token' } },
    { description: 'both names given: those, unasked', input: { namespace: 'x', service: 'y', tokenSecret: 'z' }, expected: { namespace: 'x', service: 'y', tokenSecret: 'z' } },
  ])('$description', async ({ input, expected }) => {
    if ((await client.list(Resources.services, { namespace: 'capture' })).items.length === 0) await release('capture', 'podtap');
    if (expected instanceof RegExp) await expect(findCollector(kube, input)).rejects.toThrow(expected);
    else expect(await findCollector(kube, input)).toEqual(expected);
  });
});
