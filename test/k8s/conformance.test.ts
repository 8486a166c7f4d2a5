/**
 * What podtap's clients rely on from a Kubernetes API, checked against the
 * real kube-apiserver (the reference) and the embedded stand-in alike: watch
 * restarts, an expired resourceVersion (410) and the relist after it,
 * optimistic concurrency (409), the status subresource and generation, and
 * kubectl's everyday commands on a SniffPolicy. A scenario that passes on the
 * real server and fails on the stand-in is a bug of the stand-in.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { Informer, isConflict, KubeClient, loadKubeConfig, Resources, type KubeObject, type ResourceRef } from '../../src/k8s/index.ts';
import { PodtapResources } from '../../src/api/index.ts';
import { BACKENDS, startBackend, tcpProxy, until, type KubeBackend } from '../helpers/kube.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const CONFIGMAPS: ResourceRef = { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true };

/** A logger whose lines the test can read. */
function recordingLogger() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
  return { logger, lines };
}

describe.each(BACKENDS)('the Kubernetes API as podtap uses it: %s', (kind) => {
  let api: KubeBackend;
  let client: KubeClient;
  const informers: Informer<KubeObject>[] = [];

  beforeAll(async () => {
    api = await startBackend(kind);
    client = api.client();
    await api.installCrds();
    for (const ns of ['watch', 'expiry', 'demo']) await client.create(Resources.namespaces, { metadata: { name: ns } });
    await until('the CRDs to be served', async () => !!(await client.list(PodtapResources.sniffPolicies)));
  }, 180_000);
  afterAll(async () => {
    for (const i of informers) await i.stop();
    await api?.stop();
  });

  const configMap = (namespace: string, name: string, data: Record<string, string> = {}) => client.create(CONFIGMAPS, { metadata: { name, namespace }, data });
  const names = (inf: Informer<KubeObject>) => [...inf.store.list()].map((o) => o.metadata.name!).sort();

  it('a watch the server ends is resumed from the last resourceVersion: nothing missed, no relist', async () => {
    const inf = new Informer<KubeObject>({ client, resource: CONFIGMAPS, namespace: 'watch', watchTimeoutSeconds: [1, 2] });
    informers.push(inf);
    let relists = 0;
    inf.onRelist(() => relists++);
    inf.start();
    await inf.waitForSync();
    const want: string[] = [];
    // writes spread over 5 s: several watches end (1–2 s each) meanwhile
    for (let i = 0; i < 25; i++) {
      await configMap('watch', `cm-${String(i).padStart(2, '0')}`);
      want.push(`cm-${String(i).padStart(2, '0')}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    await client.delete(CONFIGMAPS, 'watch', 'cm-00');
    want.shift();
    await until('the informer to hold every change', () => JSON.stringify(names(inf)) === JSON.stringify(want));
    expect(relists).toBe(1); // the first list only
    await inf.stop();
  }, 60_000);

  it('a resourceVersion that expired while the client was cut off: 410, a relist, and the store is exact', async () => {
    const proxy = await tcpProxy(api.url);
    try {
      const { logger, lines } = recordingLogger();
      const viaProxy = new KubeClient(loadKubeConfig(await api.kubeconfigVia(proxy.url)));
      const inf = new Informer<KubeObject>({ client: viaProxy, resource: CONFIGMAPS, namespace: 'expiry', logger, minBackoffMs: 50, maxBackoffMs: 500 });
      informers.push(inf);
      let relists = 0;
      inf.onRelist(() => relists++);
      for (const n of ['keep', 'gone', 'changed']) await configMap('expiry', n);
      inf.start();
      await inf.waitForSync();
      expect(names(inf)).toEqual(['changed', 'gone', 'keep']);

      proxy.pause();
      await client.delete(CONFIGMAPS, 'expiry', 'gone');
      await client.patch(CONFIGMAPS, 'expiry', 'changed', { data: { v: '2' } }, 'merge');
      await api.expireHistory((i) => configMap('expiry', `new-${i}`).then(() => undefined));
      const want = (await client.list<KubeObject>(CONFIGMAPS, { namespace: 'expiry' })).items.map((o) => o.metadata.name!).sort();
      proxy.resume();

      await until('the informer to relist', () => relists >= 2, 60_000);
      await until('the store to match the server', () => JSON.stringify(names(inf)) === JSON.stringify(want), 30_000);
      expect(((inf.store.get('expiry/changed') as { data?: Record<string, string> }).data ?? {}).v).toBe('2');
      // the server said why: 410 (Expired / Gone), as an error event or a status
      const said = JSON.stringify(lines.filter((l) => /relisting/.test(String(l.msg))));
      expect(said).toMatch(/410|Expired|too old resource version/);
      await inf.stop();
      viaProxy.close();
    } finally {
      await proxy.close();
    }
  }, 120_000);

  it('a write from a stale resourceVersion is a 409 Conflict; the fresh one succeeds', async () => {
    await configMap('demo', 'cas', { v: '0' });
    const a = await client.get<KubeObject & { data: Record<string, string> }>(CONFIGMAPS, 'demo', 'cas');
    await client.replace(CONFIGMAPS, { ...a, data: { v: '1' } });
    const err = await client.replace(CONFIGMAPS, { ...a, data: { v: 'stale' } }).then(() => undefined, (e: unknown) => e);
    expect(isConflict(err), String(err)).toBe(true);
    const fresh = await client.get<KubeObject & { data: Record<string, string> }>(CONFIGMAPS, 'demo', 'cas');
    expect(fresh.data.v).toBe('1');
    await client.replace(CONFIGMAPS, { ...fresh, data: { v: '2' } });
    expect((await client.get<KubeObject & { data: Record<string, string> }>(CONFIGMAPS, 'demo', 'cas')).data.v).toBe('2');
  });

  it('the status subresource: the main resource ignores status, /status ignores spec; only spec changes bump generation', async () => {
    type P = KubeObject & { spec: { snapLength?: number }; status?: { packets?: number } };
    const created = await client.create<P>(PodtapResources.sniffPolicies, {
      apiVersion: 'podtap.io/v1alpha1', kind: 'SniffPolicy', metadata: { name: 'sub', namespace: 'demo' },
      spec: { podSelector: {}, collector: { address: '198.18.9.2' } }, status: { packets: 99 },
    } as unknown as P);
    expect(created.status?.packets).toBeUndefined(); // a create ignores status
    expect(created.metadata.generation).toBe(1);
    const withStatus = await client.patchStatus<P>(PodtapResources.sniffPolicies, 'demo', 'sub', { status: { packets: 5 }, spec: { snapLength: 100 } });
    expect(withStatus.status?.packets).toBe(5);
    expect(withStatus.spec.snapLength ?? 0).toBe(0); // /status ignores spec
    expect(withStatus.metadata.generation).toBe(1);
    const labelled = await client.patch<P>(PodtapResources.sniffPolicies, 'demo', 'sub', { metadata: { labels: { a: 'b' } }, status: { packets: 7 } }, 'merge');
    expect(labelled.status?.packets).toBe(5); // the main resource ignores status
    expect(labelled.metadata.generation).toBe(1); // metadata is not spec
    const changed = await client.patch<P>(PodtapResources.sniffPolicies, 'demo', 'sub', { spec: { snapLength: 200 } }, 'merge');
    expect(changed.metadata.generation).toBe(2);
    expect(changed.status?.packets).toBe(5);
  });

  it('kubectl: apply, get (the printer columns), get -o wide, describe, a refused policy, delete', async () => {
    const example = join(ROOT, 'examples/sniffpolicy.yaml');
    const applied = await api.kubectl(['apply', '-f', example], { reject: true });
    expect(applied.stdout.trim()).toBe('sniffpolicy.podtap.io/web-debug created');
    const again = await api.kubectl(['apply', '-f', example], { reject: true });
    expect(again.stdout.trim()).toBe('sniffpolicy.podtap.io/web-debug unchanged');
    const get = (await api.kubectl(['get', 'sniffpolicies', '-n', 'demo'], { reject: true })).stdout.split('\n');
    expect(get[0]!.split(/\s+/)).toEqual(['NAME', 'READY', 'PODS', 'NODES', 'PACKETS', 'LOST', 'AGE']);
    expect(get.slice(1).map((l) => l.split(/\s+/)[0])).toContain('web-debug');
    const wide = (await api.kubectl(['get', 'sniff', '-n', 'demo', '-o', 'wide'], { reject: true })).stdout.split('\n')[0]!;
    expect(wide.split(/\s+/).length).toBeGreaterThan(7);
    const described = (await api.kubectl(['describe', 'sniffpolicy', '-n', 'demo', 'web-debug'], { reject: true })).stdout;
    expect(described).toMatch(/^Name:\s+web-debug$/m);
    expect(described).toMatch(/^Namespace:\s+demo$/m);
    expect(described).toMatch(/Pod Selector:/);
    const bad = (await readFile(example, 'utf8')).replace('port: 6081', 'port: 0');
    const refused = await api.kubectl(['apply', '-f', '-'], { input: bad });
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toContain('spec.collector.port');
    const deleted = await api.kubectl(['delete', '-f', example], { reject: true });
    expect(deleted.stdout.trim()).toBe('sniffpolicy.podtap.io "web-debug" deleted from demo namespace');
  });
});
