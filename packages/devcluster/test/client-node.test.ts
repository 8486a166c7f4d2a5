/**
 * The embedded API through the unmodified @kubernetes/client-node v2: the
 * calls, watches and informers podtap's controller and agent make.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ApiException,
  ListWatch,
  PatchStrategy,
  Watch,
  makeInformer,
  setHeaderOptions,
  type CoreV1Api,
  type KubernetesObject,
  type V1ConfigMap,
  type V1Pod,
} from '@kubernetes/client-node';
import { eventually, installWidgets, startCluster, widget, WIDGETS, type Cluster } from './harness.ts';

async function apiError(p: Promise<unknown>): Promise<{ code: number; body: any }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiException) {
      const body = typeof err.body === 'string' ? JSON.parse(err.body) : err.body;
      return { code: err.code, body };
    }
    throw err;
  }
  throw new Error('expected the call to fail');
}

const pod = (name: string, labels: Record<string, string> = {}, nodeName?: string): V1Pod => ({
  metadata: { name, labels },
  spec: { containers: [{ name: 'app', image: 'busybox:1.36' }], ...(nodeName ? { nodeName } : {}) },
});

const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const jsonPatch = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);

let c: Cluster;
let core: CoreV1Api;

beforeAll(async () => {
  c = await startCluster({ bookmarkIntervalMs: 100 });
  core = c.core;
  await installWidgets(c);
});
afterAll(async () => {
  await c.close();
});

describe('CRUD and errors', () => {
  it('creates, reads, replaces and deletes a pod with server-set metadata', async () => {
    const created = await core.createNamespacedPod({ namespace: 'default', body: pod('crud') });
    expect(created.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.metadata?.resourceVersion).toMatch(/^\d+$/);
    expect(created.metadata?.creationTimestamp).toBeInstanceOf(Date);
    expect(created.status?.phase).toBe('Pending');
    expect(created.spec?.restartPolicy).toBe('Always');

    const read = await core.readNamespacedPod({ name: 'crud', namespace: 'default' });
    expect(read.metadata?.resourceVersion).toBe(created.metadata?.resourceVersion);

    read.metadata!.labels = { changed: 'yes' };
    const replaced = await core.replaceNamespacedPod({ name: 'crud', namespace: 'default', body: read });
    expect(Number(replaced.metadata!.resourceVersion)).toBeGreaterThan(Number(created.metadata!.resourceVersion));
    expect(replaced.metadata?.labels).toEqual({ changed: 'yes' });

    await core.deleteNamespacedPod({ name: 'crud', namespace: 'default' });
    const gone = await apiError(core.readNamespacedPod({ name: 'crud', namespace: 'default' }));
    expect(gone.code).toBe(404);
    expect(gone.body).toMatchObject({ kind: 'Status', reason: 'NotFound', message: 'pods "crud" not found', details: { name: 'crud', kind: 'pods' } });
  });

  it.each([
    {
      description: 'create of an existing name is 409 AlreadyExists',
      run: async () => {
        await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'dup' } } });
        return core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'dup' } } });
      },
      expected: { code: 409, reason: 'AlreadyExists', message: 'configmaps "dup" already exists' },
    },
    {
      description: 'update with a stale resourceVersion is 409 Conflict',
      run: async () => {
        const cm = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'stale' }, data: { a: '1' } } });
        await core.replaceNamespacedConfigMap({ name: 'stale', namespace: 'default', body: { ...cm, data: { a: '2' } } });
        return core.replaceNamespacedConfigMap({ name: 'stale', namespace: 'default', body: { ...cm, data: { a: '3' } } });
      },
      expected: {
        code: 409,
        reason: 'Conflict',
        message: 'Operation cannot be fulfilled on configmaps "stale": the object has been modified; please apply your changes to the latest version and try again',
      },
    },
    {
      description: 'create in a missing namespace is 404 for the namespace',
      run: () => core.createNamespacedConfigMap({ namespace: 'nowhere', body: { metadata: { name: 'x' } } }),
      expected: { code: 404, reason: 'NotFound', message: 'namespaces "nowhere" not found' },
    },
    {
      description: 'an invalid name is 422 Invalid naming metadata.name',
      run: () => core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'Not_Valid' } } }),
      expected: { code: 422, reason: 'Invalid', message: expect.stringContaining('metadata.name: Invalid value: "Not_Valid"') },
    },
    {
      description: 'neither name nor generateName is 422',
      run: () => core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: {} } }),
      expected: { code: 422, reason: 'Invalid', message: expect.stringContaining('metadata.name: Required value: name or generateName is required') },
    },
  ])('$description', async ({ run, expected }) => {
    const e = await apiError(run());
    expect(e.code).toBe(expected.code);
    expect(e.body).toMatchObject({ kind: 'Status', status: 'Failure', code: expected.code, reason: expected.reason, message: expected.message });
  });

  it('generateName gets a random suffix', async () => {
    const a = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { generateName: 'gen-' } } });
    const b = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { generateName: 'gen-' } } });
    expect(a.metadata?.name).toMatch(/^gen-[a-z0-9]{5}$/);
    expect(a.metadata?.name).not.toBe(b.metadata?.name);
  });

  it('resourceVersions grow across resources (one counter)', async () => {
    const a = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'rv-a' } } });
    const b = await core.createNamespacedSecret({ namespace: 'default', body: { metadata: { name: 'rv-b' } } });
    const d = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'rv-c' } } });
    expect(Number(b.metadata!.resourceVersion)).toBe(Number(a.metadata!.resourceVersion) + 1);
    expect(Number(d.metadata!.resourceVersion)).toBe(Number(b.metadata!.resourceVersion) + 1);
  });

  it('leases support leader election: create, renew with the current resourceVersion, conflict on a stale one', async () => {
    const lease = await c.coordination.createNamespacedLease({
      namespace: 'default',
      body: { metadata: { name: 'podtap-controller' }, spec: { holderIdentity: 'a', leaseDurationSeconds: 15 } },
    });
    const renewed = await c.coordination.replaceNamespacedLease({
      name: 'podtap-controller',
      namespace: 'default',
      body: { ...lease, spec: { ...lease.spec, holderIdentity: 'a', renewTime: new Date() } },
    });
    // client-node has no V1MicroTime model, so it hands back the server's string.
    expect(renewed.spec?.renewTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    const e = await apiError(
      c.coordination.replaceNamespacedLease({ name: 'podtap-controller', namespace: 'default', body: { ...lease, spec: { holderIdentity: 'b' } } }),
    );
    expect(e.code).toBe(409);
  });
});

describe('selectors', () => {
  beforeAll(async () => {
    for (const [name, labels, node] of [
      ['sel-a', { app: 'web', tier: 'front' }, 'node-1'],
      ['sel-b', { app: 'web', tier: 'back' }, 'node-2'],
      ['sel-c', { app: 'db' }, 'node-1'],
      ['sel-d', {}, undefined],
    ] as const) {
      await core.createNamespacedPod({ namespace: 'default', body: pod(name, { ...labels, set: 'sel' }, node) });
    }
  });

  it.each([
    { description: 'equality', labelSelector: 'set=sel,app=web', expected: ['sel-a', 'sel-b'] },
    { description: 'double equals', labelSelector: 'set=sel,app==db', expected: ['sel-c'] },
    { description: 'inequality matches objects without the label', labelSelector: 'set=sel,app!=web', expected: ['sel-c', 'sel-d'] },
    { description: 'in', labelSelector: 'set=sel,tier in (front,middle)', expected: ['sel-a'] },
    { description: 'notin matches objects without the label', labelSelector: 'set=sel,tier notin (front)', expected: ['sel-b', 'sel-c', 'sel-d'] },
    { description: 'exists', labelSelector: 'set=sel,tier', expected: ['sel-a', 'sel-b'] },
    { description: 'does not exist', labelSelector: 'set=sel,!tier', expected: ['sel-c', 'sel-d'] },
  ])('labelSelector $description: $labelSelector', async ({ labelSelector, expected }) => {
    const list = await core.listNamespacedPod({ namespace: 'default', labelSelector });
    expect(list.items.map((p) => p.metadata?.name).sort()).toEqual(expected);
  });

  it.each([
    { description: 'spec.nodeName', fieldSelector: 'spec.nodeName=node-1', expected: ['sel-a', 'sel-c'] },
    { description: 'metadata.name', fieldSelector: 'metadata.name=sel-b', expected: ['sel-b'] },
    { description: 'negation', fieldSelector: 'spec.nodeName!=node-1', expected: ['sel-b', 'sel-d'] },
    { description: 'unset field equals empty', fieldSelector: 'spec.nodeName=', expected: ['sel-d'] },
    { description: 'status.phase', fieldSelector: 'status.phase=Pending,spec.nodeName=node-2', expected: ['sel-b'] },
  ])('fieldSelector $description: $fieldSelector', async ({ fieldSelector, expected }) => {
    const list = await core.listNamespacedPod({ namespace: 'default', fieldSelector, labelSelector: 'set=sel' });
    expect(list.items.map((p) => p.metadata?.name).sort()).toEqual(expected);
  });

  it('refuses an unsupported field label with 400', async () => {
    const e = await apiError(core.listNamespacedPod({ namespace: 'default', fieldSelector: 'spec.hostname=x' }));
    expect(e.code).toBe(400);
    expect(e.body.message).toBe('field label not supported: spec.hostname');
  });

  it('refuses a malformed label selector with 400', async () => {
    const e = await apiError(core.listNamespacedPod({ namespace: 'default', labelSelector: 'a in (b' }));
    expect(e.code).toBe(400);
  });

  it('paginates with limit and continue', async () => {
    const first = await core.listNamespacedPod({ namespace: 'default', labelSelector: 'set=sel', limit: 3 });
    expect(first.items).toHaveLength(3);
    expect(first.metadata?._continue).toBeTruthy();
    const second = await core.listNamespacedPod({ namespace: 'default', labelSelector: 'set=sel', limit: 3, _continue: first.metadata!._continue! });
    expect(second.items.map((p) => p.metadata?.name)).toEqual(['sel-d']);
    expect(second.metadata?._continue).toBeFalsy();
  });
});

describe('status subresource and patches', () => {
  it('main-resource writes ignore status; /status writes change only status; generation follows spec', async () => {
    const created = (await c.custom.createNamespacedCustomObject({
      ...WIDGETS,
      namespace: 'default',
      body: { ...widget('st', { direction: 'Ingress' }), status: { packets: 5 } },
    })) as any;
    expect(created.status).toBeUndefined();
    expect(created.metadata.generation).toBe(1);
    expect(created.spec).toEqual({ direction: 'Ingress', snapLength: 0, mtu: 0 });

    const withStatus = (await c.custom.patchNamespacedCustomObjectStatus(
      { ...WIDGETS, namespace: 'default', name: 'st', body: { status: { packets: 7 }, spec: { direction: 'Egress' } } },
      merge,
    )) as any;
    expect(withStatus.status).toEqual({ packets: 7 });
    expect(withStatus.spec.direction).toBe('Ingress');
    expect(withStatus.metadata.generation).toBe(1);

    const specChange = (await c.custom.patchNamespacedCustomObject(
      { ...WIDGETS, namespace: 'default', name: 'st', body: { spec: { direction: 'Egress' }, status: { packets: 0 } } },
      merge,
    )) as any;
    expect(specChange.spec.direction).toBe('Egress');
    expect(specChange.status).toEqual({ packets: 7 });
    expect(specChange.metadata.generation).toBe(2);

    const labelOnly = (await c.custom.patchNamespacedCustomObject(
      { ...WIDGETS, namespace: 'default', name: 'st', body: { metadata: { labels: { x: 'y' } } } },
      merge,
    )) as any;
    expect(labelOnly.metadata.generation).toBe(2);
  });

  it('a write that changes nothing keeps the resourceVersion', async () => {
    const cm = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'noop' }, data: { a: '1' } } });
    const again = await core.replaceNamespacedConfigMap({ name: 'noop', namespace: 'default', body: cm });
    expect(again.metadata?.resourceVersion).toBe(cm.metadata?.resourceVersion);
  });

  it('applies JSON merge patch and JSON patch', async () => {
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'patched' }, data: { a: '1', b: '2' } } });
    const merged = await core.patchNamespacedConfigMap({ name: 'patched', namespace: 'default', body: { data: { a: null, c: '3' } } }, merge);
    expect(merged.data).toEqual({ b: '2', c: '3' });
    const patched = await core.patchNamespacedConfigMap(
      {
        name: 'patched',
        namespace: 'default',
        body: [
          { op: 'test', path: '/data/b', value: '2' },
          { op: 'replace', path: '/data/b', value: 'two' },
          { op: 'add', path: '/metadata/labels', value: { p: 'q' } },
        ],
      },
      jsonPatch,
    );
    expect(patched.data).toEqual({ b: 'two', c: '3' });
    expect(patched.metadata?.labels).toEqual({ p: 'q' });
    const failed = await apiError(
      core.patchNamespacedConfigMap({ name: 'patched', namespace: 'default', body: [{ op: 'test', path: '/data/b', value: 'nope' }] }, jsonPatch),
    );
    expect(failed.code).toBe(422);
  });

  it('a custom resource rejects an invalid patch with the field named', async () => {
    await c.custom.createNamespacedCustomObject({ ...WIDGETS, namespace: 'default', body: widget('inv', { ports: [{ port: 80 }] }) });
    const e = await apiError(
      c.custom.patchNamespacedCustomObject({ ...WIDGETS, namespace: 'default', name: 'inv', body: { spec: { ports: [{ port: 90, endPort: 10 }] } } }, merge),
    );
    expect(e.code).toBe(422);
    expect(e.body.details.causes).toEqual([
      { reason: 'FieldValueInvalid', field: 'spec.ports[0].endPort', message: 'Invalid value: "object": endPort must be greater than or equal to port' },
    ]);
  });

  it('KubernetesObjectApi creates, patches and reads any kind', async () => {
    const spec = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'generic', namespace: 'default' }, data: { k: 'v' } };
    await c.objects.create(spec);
    const patched = await c.objects.patch({ ...spec, data: { k: 'w' } }, undefined, undefined, undefined, undefined, PatchStrategy.MergePatch);
    expect((patched as V1ConfigMap).data).toEqual({ k: 'w' });
    const read = await c.objects.read({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'generic', namespace: 'default' } });
    expect((read as V1ConfigMap).data).toEqual({ k: 'w' });
  });

  it('server-side apply creates, then merges, and conflicts with another manager unless forced', async () => {
    const ssa = (_manager: string, _force = false) => setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);
    const body = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'ssa', namespace: 'default' }, data: { owned: 'a' } };
    const created = await core.patchNamespacedConfigMap({ name: 'ssa', namespace: 'default', body, fieldManager: 'alice' }, ssa('alice'));
    expect(created.data).toEqual({ owned: 'a' });
    expect(created.metadata?.managedFields?.[0]).toMatchObject({ manager: 'alice', operation: 'Apply' });
    const conflict = await apiError(
      core.patchNamespacedConfigMap({ name: 'ssa', namespace: 'default', body: { ...body, data: { owned: 'b' } }, fieldManager: 'bob' }, ssa('bob')),
    );
    expect(conflict.code).toBe(409);
    expect(conflict.body.message).toContain('conflict with "alice"');
    const forced = await core.patchNamespacedConfigMap(
      { name: 'ssa', namespace: 'default', body: { ...body, data: { owned: 'b' } }, fieldManager: 'bob', force: true },
      ssa('bob', true),
    );
    expect(forced.data).toEqual({ owned: 'b' });
    // alice stops applying a field she alone owns: it goes.
    await core.patchNamespacedConfigMap({ name: 'ssa', namespace: 'default', body: { ...body, data: { mine: 'x' } }, fieldManager: 'alice' }, ssa('alice'));
    const dropped = await core.patchNamespacedConfigMap({ name: 'ssa', namespace: 'default', body: { ...body, data: {} }, fieldManager: 'alice' }, ssa('alice'));
    expect(dropped.data).toEqual({ owned: 'b' });
  });
});

describe('watch', () => {
  it('delivers ADDED, MODIFIED and DELETED, and bookmarks when asked', async () => {
    const events: { type: string; name?: string; rv?: string }[] = [];
    const w = new Watch(c.kc);
    const ctl = await w.watch(
      '/api/v1/namespaces/default/configmaps',
      { allowWatchBookmarks: true, labelSelector: 'watch=1' },
      (type, obj: KubernetesObject) => events.push({ type, name: obj.metadata?.name, rv: obj.metadata?.resourceVersion }),
      () => undefined,
    );
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'w1', labels: { watch: '1' } } } });
    await core.patchNamespacedConfigMap({ name: 'w1', namespace: 'default', body: { data: { a: 'b' } } }, merge);
    await core.deleteNamespacedConfigMap({ name: 'w1', namespace: 'default' });
    await eventually(() => {
      expect(events.filter((e) => e.type !== 'BOOKMARK').map((e) => `${e.type} ${e.name}`)).toEqual(['ADDED w1', 'MODIFIED w1', 'DELETED w1']);
      expect(events.some((e) => e.type === 'BOOKMARK' && Number(e.rv) > 0)).toBe(true);
    });
    ctl.abort();
  });

  it('turns selector transitions into ADDED and DELETED', async () => {
    const events: string[] = [];
    const w = new Watch(c.kc);
    const ctl = await w.watch(
      '/api/v1/namespaces/default/configmaps',
      { labelSelector: 'phase=on' },
      (type, obj: KubernetesObject) => events.push(`${type} ${obj.metadata?.name} ${obj.metadata?.labels?.phase ?? '-'}`),
      () => undefined,
    );
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'moving', labels: { phase: 'off' } } } });
    await core.patchNamespacedConfigMap({ name: 'moving', namespace: 'default', body: { metadata: { labels: { phase: 'on' } } } }, merge);
    await core.patchNamespacedConfigMap({ name: 'moving', namespace: 'default', body: { data: { x: '1' } } }, merge);
    await core.patchNamespacedConfigMap({ name: 'moving', namespace: 'default', body: { metadata: { labels: { phase: 'off' } } } }, merge);
    await eventually(() => expect(events).toEqual(['ADDED moving on', 'MODIFIED moving on', 'DELETED moving on']));
    ctl.abort();
  });

  it('resumes from a resourceVersion, replaying what happened since', async () => {
    const a = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'resume', labels: { resume: '1' } } } });
    await core.patchNamespacedConfigMap({ name: 'resume', namespace: 'default', body: { data: { n: '2' } } }, merge);
    const seen: string[] = [];
    const w = new Watch(c.kc);
    const ctl = await w.watch(
      '/api/v1/namespaces/default/configmaps',
      { resourceVersion: a.metadata!.resourceVersion!, labelSelector: 'resume=1' },
      (type, obj: V1ConfigMap) => seen.push(`${type} ${obj.data?.n ?? ''}`),
      () => undefined,
    );
    await eventually(() => expect(seen).toEqual(['MODIFIED 2']));
    ctl.abort();
  });
});

describe('410 Gone', () => {
  let small: Cluster;
  beforeAll(async () => {
    small = await startCluster({ historySize: 5 });
  });
  afterAll(async () => {
    await small.close();
  });

  it('a watch from a resourceVersion older than the retained window gets an ERROR event with a 410 Status', async () => {
    const first = await small.core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'old-0' } } });
    for (let i = 1; i < 10; i++) await small.core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: `old-${i}` } } });
    const errors: any[] = [];
    let doneErr: unknown = 'not called';
    await new Promise<void>((resolve) => {
      void new Watch(small.kc).watch(
        '/api/v1/namespaces/default/configmaps',
        { resourceVersion: first.metadata!.resourceVersion! },
        (type, obj) => {
          if (type === 'ERROR') errors.push(obj);
        },
        (err) => {
          doneErr = err;
          resolve();
        },
      );
    });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ kind: 'Status', code: 410, reason: 'Expired' });
    expect(errors[0].message).toMatch(/^too old resource version: \d+ \(\d+\)$/);
    expect(doneErr).toBeNull();
  });

  it('an informer re-lists after 410 and keeps its cache right', async () => {
    const path = '/api/v1/namespaces/default/configmaps';
    const lw = new ListWatch<V1ConfigMap>(
      path,
      new Watch(small.kc),
      () => small.core.listNamespacedConfigMap({ namespace: 'default', labelSelector: 'inf=1' }),
      false,
      'inf=1',
    );
    const added: string[] = [];
    lw.on('add', (o) => added.push(o.metadata!.name!));
    await small.core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'inf-0', labels: { inf: '1' } } } });
    await lw.start();
    await eventually(() => expect(lw.list().map((o) => o.metadata?.name)).toEqual(['inf-0']));
    await small.core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'inf-1', labels: { inf: '1' } } } });
    await eventually(() => expect(lw.list().map((o) => o.metadata?.name).sort()).toEqual(['inf-0', 'inf-1']));
    await lw.stop();
    expect(added).toEqual(['inf-0', 'inf-1']);
  });
});

describe('informers', () => {
  it('makeInformer syncs the initial list and delivers add, update and delete', async () => {
    await core.createNamespace({ body: { metadata: { name: 'inf' } } });
    for (const n of ['p1', 'p2']) await core.createNamespacedPod({ namespace: 'inf', body: pod(n) });
    const informer = makeInformer(c.kc, '/api/v1/namespaces/inf/pods', () => core.listNamespacedPod({ namespace: 'inf' }));
    const log: string[] = [];
    informer.on('add', (p) => log.push(`add ${p.metadata?.name}`));
    informer.on('update', (p) => log.push(`update ${p.metadata?.name} ${p.status?.phase}`));
    informer.on('delete', (p) => log.push(`delete ${p.metadata?.name}`));
    await informer.start();
    await eventually(() => expect(informer.list('inf').map((p) => p.metadata?.name).sort()).toEqual(['p1', 'p2']));
    await core.patchNamespacedPodStatus({ name: 'p1', namespace: 'inf', body: { status: { phase: 'Running', podIP: '198.18.0.10' } } }, merge);
    await core.deleteNamespacedPod({ name: 'p2', namespace: 'inf' });
    await core.createNamespacedPod({ namespace: 'inf', body: pod('p3') });
    await eventually(() => expect(log).toEqual(['add p1', 'add p2', 'update p1 Running', 'delete p2', 'add p3']));
    expect(informer.get('p1', 'inf')?.status?.podIP).toBe('198.18.0.10');
    await informer.stop();
  });
});

describe('garbage collection and finalizers', () => {
  it('deleting an owner deletes its dependents (matched by uid), and leaves objects of other owners', async () => {
    const owner = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'owner' } } });
    const ref = { apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata!.uid! };
    await core.createNamespacedSecret({ namespace: 'default', body: { metadata: { name: 'dep', ownerReferences: [ref] } } });
    await c.custom.createNamespacedCustomObject({ ...WIDGETS, namespace: 'default', body: widget('dep-w', {}, { ownerReferences: [{ ...ref, controller: true }] }) });
    await core.createNamespacedSecret({ namespace: 'default', body: { metadata: { name: 'bystander' } } });
    await core.deleteNamespacedConfigMap({ name: 'owner', namespace: 'default' });
    await eventually(async () => {
      expect((await apiError(core.readNamespacedSecret({ name: 'dep', namespace: 'default' }))).code).toBe(404);
      expect((await apiError(c.custom.getNamespacedCustomObject({ ...WIDGETS, namespace: 'default', name: 'dep-w' }))).code).toBe(404);
    });
    expect((await core.readNamespacedSecret({ name: 'bystander', namespace: 'default' })).metadata?.name).toBe('bystander');
  });

  it('a dependent naming an owner uid that does not exist is collected', async () => {
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'real-owner' } } });
    await core.createNamespacedSecret({
      namespace: 'default',
      body: { metadata: { name: 'orphan-ref', ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'real-owner', uid: '00000000-0000-0000-0000-000000000000' }] } },
    });
    await eventually(async () => expect((await apiError(core.readNamespacedSecret({ name: 'orphan-ref', namespace: 'default' }))).code).toBe(404));
  });

  it('propagationPolicy=Orphan keeps dependents and removes the reference', async () => {
    const owner = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'orphaner' } } });
    await core.createNamespacedSecret({
      namespace: 'default',
      body: { metadata: { name: 'orphaned', ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'orphaner', uid: owner.metadata!.uid! }] } },
    });
    await core.deleteNamespacedConfigMap({ name: 'orphaner', namespace: 'default', propagationPolicy: 'Orphan' });
    await eventually(async () => {
      expect((await apiError(core.readNamespacedConfigMap({ name: 'orphaner', namespace: 'default' }))).code).toBe(404);
      const s = await core.readNamespacedSecret({ name: 'orphaned', namespace: 'default' });
      expect(s.metadata?.ownerReferences ?? []).toEqual([]);
    });
  });

  it('propagationPolicy=Foreground keeps the owner until its dependents are gone', async () => {
    const owner = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'fg' } } });
    await core.createNamespacedSecret({
      namespace: 'default',
      body: { metadata: { name: 'fg-dep', finalizers: ['test.podtap.io/hold'], ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'fg', uid: owner.metadata!.uid! }] } },
    });
    await core.deleteNamespacedConfigMap({ name: 'fg', namespace: 'default', propagationPolicy: 'Foreground' });
    await eventually(async () => {
      const s = await core.readNamespacedSecret({ name: 'fg-dep', namespace: 'default' });
      expect(s.metadata?.deletionTimestamp).toBeInstanceOf(Date);
    });
    const held = await core.readNamespacedConfigMap({ name: 'fg', namespace: 'default' });
    expect(held.metadata?.finalizers).toContain('foregroundDeletion');
    await core.patchNamespacedSecret({ name: 'fg-dep', namespace: 'default', body: { metadata: { finalizers: null } } }, merge);
    await eventually(async () => expect((await apiError(core.readNamespacedConfigMap({ name: 'fg', namespace: 'default' }))).code).toBe(404));
  });

  it('delete waits for finalizers; removing the last one deletes the object', async () => {
    await c.custom.createNamespacedCustomObject({ ...WIDGETS, namespace: 'default', body: widget('fin', {}, { finalizers: ['test.podtap.io/cleanup'] }) });
    const events: string[] = [];
    const ctl = await new Watch(c.kc).watch(
      '/apis/test.podtap.io/v1/namespaces/default/widgets',
      { fieldSelector: 'metadata.name=fin' },
      (type, obj: any) => events.push(`${type} ${obj.metadata.deletionTimestamp ? 'deleting' : 'live'}`),
      () => undefined,
    );
    await c.custom.deleteNamespacedCustomObject({ ...WIDGETS, namespace: 'default', name: 'fin' });
    const pending = (await c.custom.getNamespacedCustomObject({ ...WIDGETS, namespace: 'default', name: 'fin' })) as any;
    expect(pending.metadata.deletionTimestamp).toBeTruthy();
    const refused = await apiError(
      c.custom.patchNamespacedCustomObject(
        { ...WIDGETS, namespace: 'default', name: 'fin', body: { metadata: { finalizers: ['test.podtap.io/cleanup', 'test.podtap.io/new'] } } },
        merge,
      ),
    );
    expect(refused.code).toBe(422);
    await c.custom.patchNamespacedCustomObject({ ...WIDGETS, namespace: 'default', name: 'fin', body: { metadata: { finalizers: [] } } }, merge);
    expect((await apiError(c.custom.getNamespacedCustomObject({ ...WIDGETS, namespace: 'default', name: 'fin' }))).code).toBe(404);
    await eventually(() => expect(events).toEqual(['ADDED live', 'MODIFIED deleting', 'DELETED deleting']));
    ctl.abort();
  });
});
