import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Informer, KubeApiError, KubeClient, Resources, isNotFound, loadKubeConfig, type KubeObject } from '../../../src/k8s/index.ts';
import { FakeServer, type Obj } from './fake-server.ts';

const pod = (name: string, labels: Record<string, string> = { app: 'web' }, extra: Record<string, unknown> = {}): Obj => ({
  metadata: { name, namespace: 'shop', labels },
  spec: { nodeName: 'n1', containers: [{ name: 'c' }] },
  ...extra,
});

async function until(what: string, fn: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

let server: FakeServer;
let dir: string;
let client: KubeClient;

beforeAll(async () => {
  server = new FakeServer();
  await server.start();
  for (const n of ['p1', 'p2', 'p3', 'p4', 'p5']) server.write('ADDED', pod(n));
  dir = mkdtempSync(join(tmpdir(), 'podtap-k8s-'));
  client = new KubeClient(loadKubeConfig(server.kubeconfig(join(dir, 'kubeconfig'))));
});

afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('KubeClient', () => {
  it('lists page by page with limit/continue and sends the credentials', async () => {
    server.requests.length = 0;
    const pages: number[] = [];
    const rv = await client.listPages<KubeObject>(Resources.pods, { pageSize: 2 }, (items) => pages.push(items.length));
    expect(pages).toEqual([2, 2, 1]);
    expect(rv).toBe(String(server.rv));
    expect(server.requests.map((r) => new URL(r.url, 'http://x').searchParams.get('continue'))).toEqual([null, '2', '4']);
    expect(server.requests.every((r) => r.auth === 'Bearer secret-token')).toBe(true);
    const all = await client.list<KubeObject>(Resources.pods, { namespace: 'shop' });
    expect(all.items.map((p) => p.metadata.name)).toEqual(['p1', 'p2', 'p3', 'p4', 'p5']);
  });

  it('an error answer is a KubeApiError with the Status message', async () => {
    const err = await client.get(Resources.pods, 'shop', 'missing').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubeApiError);
    expect(isNotFound(err)).toBe(true);
    expect((err as Error).message).toBe('GET /api/v1/namespaces/shop/pods/missing: 404 NotFound: pods "missing" not found');
  });

  it('a connection failure is an Error with the cause (transient, no status)', async () => {
    const dead = new KubeClient({ ...loadKubeConfig(server.kubeconfig(join(dir, 'dead'))), server: 'http://127.0.0.1:1' });
    await expect(dead.get(Resources.pods, 'shop', 'p1')).rejects.toThrow('GET /api/v1/namespaces/shop/pods/p1: request failed');
  });
});

describe('Informer', () => {
  it('lists, watches, hands old objects on update, relists after 410 and reports what it missed', async () => {
    const events: string[] = [];
    const inf = new Informer<KubeObject>({
      client,
      resource: Resources.pods,
      pageSize: 2,
      // Keep labels only: a change elsewhere must raise no update.
      transform: (o) => ({ metadata: { name: o.metadata.name, namespace: o.metadata.namespace, resourceVersion: o.metadata.resourceVersion, labels: o.metadata.labels } }),
      equal: (a, b) => JSON.stringify(a.metadata.labels) === JSON.stringify(b.metadata.labels),
      indexers: { byApp: (o) => (o.metadata.labels?.app ? [o.metadata.labels.app] : []) },
      minBackoffMs: 10,
    });
    inf.on({
      add: (o) => events.push(`add ${o.metadata.name}`),
      update: (old, o) => events.push(`update ${o.metadata.name} ${old.metadata.labels?.app}->${o.metadata.labels?.app}`),
      delete: (o) => events.push(`delete ${o.metadata.name}`),
    });
    let relists = 0;
    inf.onRelist(() => relists++);
    inf.start();
    await inf.waitForSync();
    expect(inf.hasSynced()).toBe(true);
    expect(inf.store.size).toBe(5);
    expect(events).toEqual(['add p1', 'add p2', 'add p3', 'add p4', 'add p5']);
    expect(inf.store.get('shop/p1')).toEqual({ metadata: { name: 'p1', namespace: 'shop', resourceVersion: expect.any(String), labels: { app: 'web' } } });
    events.length = 0;

    server.write('MODIFIED', pod('p1', { app: 'db' }));
    server.write('MODIFIED', pod('p2', { app: 'web' }, { status: { restartCount: 1 } })); // equal after transform
    server.write('ADDED', pod('p6'));
    server.write('DELETED', pod('p3'));
    await until('watch events', () => events.length >= 3);
    expect(events).toEqual(['update p1 web->db', 'add p6', 'delete p3']);
    expect(inf.store.byIndex('byApp', 'db').map((o) => o.metadata.name)).toEqual(['p1']);
    expect(inf.store.get('shop/p2')!.metadata.resourceVersion).toBe(server.objects.get('shop/p2')!.metadata.resourceVersion);
    events.length = 0;

    // Missed while disconnected: p4 deleted and p5 relabelled without events; then history is compacted.
    server.objects.delete('shop/p4');
    server.objects.set('shop/p5', { ...pod('p5', { app: 'api' }), metadata: { ...pod('p5', { app: 'api' }).metadata, resourceVersion: String(++server.rv) } });
    server.compact();
    await until('relist', () => relists >= 2);
    expect(events.sort()).toEqual(['delete p4', 'update p5 web->api']);
    events.length = 0;

    server.write('ADDED', pod('p7'));
    await until('watch after relist', () => events.includes('add p7'));
    await inf.stop();
  });

  it('keeps trying when the server is unreachable, and stops when asked', async () => {
    const access = { ...loadKubeConfig(server.kubeconfig(join(dir, 'dead2'))), server: 'http://127.0.0.1:1' };
    const inf = new Informer<KubeObject>({ client: new KubeClient(access), resource: Resources.pods, minBackoffMs: 5, maxBackoffMs: 20 });
    inf.start();
    await new Promise((r) => setTimeout(r, 100));
    expect(inf.hasSynced()).toBe(false);
    await inf.stop();
  });
});
