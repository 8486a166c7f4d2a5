/**
 * The rendered chart applied with kubectl (--dry-run=server) to the embedded
 * Kubernetes API, for every value set; and the uninstall hook run against it.
 */
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uninstalling } from '../../../src/agent/uninstall.ts';
import { KubeClient, loadKubeConfig } from '../../../src/k8s/index.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { startDevCluster, type DevCluster } from './lib/cluster.ts';
import { ROOT, render, type K8sObject } from './lib/render.ts';
import { VALUE_SETS } from './lib/value-sets.ts';

/** Kinds the embedded API does not serve: Jobs (the hooks) and the Prometheus operator's ServiceMonitor and PrometheusRule. */
const NOT_SERVED = ['Job', 'ServiceMonitor', 'PrometheusRule'];

let cluster: DevCluster;
beforeAll(async () => {
  cluster = await startDevCluster({ podTerminationMs: 1500 });
  const crds = await readdir(join(ROOT, 'charts/podtap/crds'));
  expect(crds.length).toBeGreaterThan(0);
  const r = await cluster.kubectl(['apply', '-f', join(ROOT, 'charts/podtap/crds')]);
  expect(r.exitCode, r.stderr).toBe(0);
  for (const ns of new Set(VALUE_SETS.map((s) => s.release.namespace))) {
    expect((await cluster.kubectl(['create', 'namespace', ns])).exitCode).toBe(0);
  }
}, 60_000);
afterAll(async () => {
  await cluster?.close();
});

describe.each(VALUE_SETS)('kubectl apply --dry-run=server of the chart with $description', (set) => {
  it('is accepted, object by object', async () => {
    const objects = (await render(set.options)).objects.filter((o) => !NOT_SERVED.includes(o.kind));
    const r = await cluster.apply(objects);
    expect(r.exitCode, r.stderr).toBe(0);
    const created = r.stdout.split('\n').filter((l) => l.endsWith('created (server dry run)'));
    expect(created).toHaveLength(objects.length);
  });
});

describe('the uninstall hook', () => {
  it('deletes the agents\' DaemonSet in the foreground and returns only when every agent is gone, each agent seeing an uninstall', async () => {
    const rendered = await render();
    const objects = rendered.objects.filter((o) => !NOT_SERVED.includes(o.kind) && !o.metadata.annotations?.['helm.sh/hook']);
    const applied = await cluster.apply(objects, { real: true });
    expect(applied.exitCode, applied.stderr).toBe(0);
    // the agent pod the DaemonSet controller would have made (the embedded API has no such controller)
    const ds = JSON.parse((await cluster.kubectl(['get', '-n', 'podtap-system', 'daemonset', 'podtap-agent', '-o', 'json'])).stdout) as K8sObject & { metadata: { uid: string } };
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: 'podtap-agent-x1',
        namespace: 'podtap-system',
        // Holds the pod Terminating while "its agent" runs the SIGTERM path
        // (the embedded API removes foreground-deleted pods at once).
        finalizers: ['test.podtap.io/agent-running'],
        ownerReferences: [{ apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'podtap-agent', uid: ds.metadata.uid, controller: true, blockOwnerDeletion: true }],
      },
      spec: { nodeName: 'node-1', containers: [{ name: 'agent', image: 'podtap:0.1.0' }] },
    };
    const node = { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1' } };
    const made = await cluster.apply([node, pod] as unknown as K8sObject[], { real: true });
    expect(made.exitCode, made.stderr).toBe(0);

    const job = rendered.objects.find((o) => o.kind === 'Job' && o.metadata.annotations?.['helm.sh/hook'] === 'pre-delete')!;
    const c = (job.spec as { template: { spec: { containers: { command: string[]; args: string[]; env: { name: string; value?: string }[] }[] } } }).template.spec.containers[0]!;
    expect(c.command).toEqual(['node', '--input-type=module', '--eval']);
    await writeFile(join(cluster.dir, 'token'), 'service-account-token\n');
    const env: Record<string, string> = { POD_NAMESPACE: 'podtap-system', KUBE_API_URL: cluster.api.url, KUBE_TOKEN_FILE: join(cluster.dir, 'token') };
    for (const e of c.env) if (e.value) env[e.name] = e.value;
    delete env.NODE_EXTRA_CA_CERTS;
    const hook = execa(join(ROOT, 'node_modules/.bin/node'), ['--input-type=module', '--eval', c.args[0]!], { env, reject: false, all: true });
    let hookDone = false;
    void hook.finally(() => (hookDone = true));

    // while the hook waits, the agent (on SIGTERM) asks whether this is an uninstall
    const client = new KubeClient(loadKubeConfig(join(cluster.dir, 'kubeconfig')));
    const saved = process.env.POD_NAME;
    process.env.POD_NAME = 'podtap-agent-x1';
    let seen = false;
    try {
      // before the hook deletes the DaemonSet: a restart, not an uninstall
      expect(await uninstalling(client, 'podtap-system', silentLogger)).toBe(false);
      for (let i = 0; i < 200 && !seen; i++) {
        await new Promise((r) => setTimeout(r, 25));
        seen = await uninstalling(client, 'podtap-system', silentLogger);
      }
    } finally {
      if (saved === undefined) delete process.env.POD_NAME;
      else process.env.POD_NAME = saved;
    }
    expect(seen).toBe(true);
    // the hook is still waiting: the agent has not exited yet
    await new Promise((r) => setTimeout(r, 1500));
    expect(hookDone).toBe(false);
    // the agent detached and exits
    const fin = await cluster.kubectl(['patch', '-n', 'podtap-system', 'pod', 'podtap-agent-x1', '--type=json', '-p', '[{"op":"remove","path":"/metadata/finalizers"}]']);
    expect(fin.exitCode, fin.stderr).toBe(0);
    const done = await hook;
    expect(done.exitCode, done.all).toBe(0);
    expect(done.stdout).toContain('every agent has detached and exited');
    expect((await cluster.kubectl(['get', '-n', 'podtap-system', 'pod', 'podtap-agent-x1'])).stderr).toMatch(/NotFound/);
    expect((await cluster.kubectl(['get', '-n', 'podtap-system', 'daemonset', 'podtap-agent'])).stderr).toMatch(/NotFound/);
  });
});

