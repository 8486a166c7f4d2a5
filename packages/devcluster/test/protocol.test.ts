/**
 * Protocol details clients rely on, checked with raw HTTP: discovery forms,
 * OpenAPI, consistent pagination, error Status objects, content negotiation,
 * watch variants, subresources, dry-run, lifecycles of namespaces and CRDs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, http, installWidgets, startCluster, widget, widgetCrd, type Cluster } from './harness.ts';

let c: Cluster;

beforeAll(async () => {
  c = await startCluster({ bookmarkIntervalMs: 50 });
  await installWidgets(c);
});
afterAll(async () => {
  await c.close();
});

const W = '/apis/test.podtap.io/v1/namespaces/default/widgets';
const MERGE = { 'Content-Type': 'application/merge-patch+json' };

interface Stream {
  lines: any[];
  ended: Promise<void>;
  close(): void;
}

async function watch(path: string, headers: Record<string, string> = {}): Promise<Stream> {
  const ctl = new AbortController();
  const res = await fetch(c.url + path, { signal: ctl.signal, headers });
  expect(res.status).toBe(200);
  const lines: any[] = [];
  const ended = (async () => {
    let buf = '';
    const dec = new TextDecoder();
    try {
      for await (const chunk of res.body!) {
        buf += dec.decode(chunk as Uint8Array, { stream: true });
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          lines.push(JSON.parse(buf.slice(0, i)));
          buf = buf.slice(i + 1);
        }
      }
    } catch {
      // aborted
    }
  })();
  return { lines, ended, close: () => ctl.abort() };
}

describe('discovery', () => {
  it('answers /api and /apis in the legacy form without an aggregated Accept', async () => {
    const api = await http(c, 'GET', '/api', undefined, { Accept: 'application/json' });
    expect(api.json).toMatchObject({ kind: 'APIVersions', versions: ['v1'] });
    const apis = await http(c, 'GET', '/apis');
    expect(apis.json.kind).toBe('APIGroupList');
    const names = apis.json.groups.map((g: any) => g.name);
    expect(names.indexOf('apps')).toBeLessThan(names.indexOf('test.podtap.io'));
    expect(apis.json.groups.find((g: any) => g.name === 'test.podtap.io')).toEqual({
      name: 'test.podtap.io',
      versions: [{ groupVersion: 'test.podtap.io/v1', version: 'v1' }],
      preferredVersion: { groupVersion: 'test.podtap.io/v1', version: 'v1' },
    });
  });

  it('answers aggregated discovery v2 with its content type', async () => {
    const accept = 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json';
    const r = await http(c, 'GET', '/apis', undefined, { Accept: accept });
    expect(r.headers.get('content-type')).toBe('application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList');
    const group = r.json.items.find((g: any) => g.metadata.name === 'test.podtap.io');
    expect(group.versions[0].resources[0]).toEqual({
      resource: 'widgets',
      responseKind: { group: 'test.podtap.io', version: 'v1', kind: 'Widget' },
      scope: 'Namespaced',
      singularResource: 'widget',
      verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
      shortNames: ['wd'],
      categories: ['podtap'],
      subresources: [{ subresource: 'status', responseKind: { group: 'test.podtap.io', version: 'v1', kind: 'Widget' }, verbs: ['get', 'patch', 'update'] }],
    });
    const core = await http(c, 'GET', '/api', undefined, { Accept: accept });
    const pods = core.json.items[0].versions[0].resources.find((x: any) => x.resource === 'pods');
    expect(pods).toMatchObject({ scope: 'Namespaced', shortNames: ['po'], categories: ['all'] });
  });

  it('lists resources and subresources of a group version', async () => {
    const r = await http(c, 'GET', '/api/v1');
    const byName = Object.fromEntries(r.json.resources.map((x: any) => [x.name, x]));
    expect(byName['pods/status']).toEqual({ name: 'pods/status', singularName: '', namespaced: true, kind: 'Pod', verbs: ['get', 'patch', 'update'] });
    expect(byName.nodes).toMatchObject({ namespaced: false, kind: 'Node', shortNames: ['no'] });
    const apps = await http(c, 'GET', '/apis/apps/v1');
    expect(apps.json.resources.find((x: any) => x.name === 'deployments/scale')).toMatchObject({ group: 'autoscaling', version: 'v1', kind: 'Scale' });
  });

  it('serves OpenAPI v3 with PATCH operations that accept fieldValidation', async () => {
    const index = await http(c, 'GET', '/openapi/v3');
    const url = index.json.paths['apis/test.podtap.io/v1'].serverRelativeURL;
    expect(url).toMatch(/^\/openapi\/v3\/apis\/test\.podtap\.io\/v1\?hash=[0-9A-F]{128}$/);
    const doc = await http(c, 'GET', url);
    const item = doc.json.paths['/apis/test.podtap.io/v1/namespaces/{namespace}/widgets/{name}'];
    expect(item.patch['x-kubernetes-group-version-kind']).toEqual({ group: 'test.podtap.io', version: 'v1', kind: 'Widget' });
    expect(item.patch.parameters.map((p: any) => p.name)).toContain('fieldValidation');
    expect(doc.json.components.schemas['io.podtap.test.v1.Widget']['x-kubernetes-group-version-kind']).toEqual([{ group: 'test.podtap.io', kind: 'Widget', version: 'v1' }]);
  });

  it('reports /version as a stand-in', async () => {
    const r = await http(c, 'GET', '/version');
    expect(r.json).toMatchObject({ major: '1', minor: '32', gitVersion: 'v1.32.0-podtap.devcluster' });
  });
});

describe('errors', () => {
  it.each([
    { description: 'bad JSON', method: 'POST', path: '/api/v1/namespaces/default/configmaps', body: '{"metadata":', headers: {}, code: 400, reason: 'BadRequest' },
    { description: 'an unknown resource', method: 'GET', path: '/api/v1/namespaces/default/nothings', body: undefined, headers: {}, code: 404, reason: 'NotFound' },
    { description: 'an unknown group', method: 'GET', path: '/apis/nope.io/v1/things', body: undefined, headers: {}, code: 404, reason: 'NotFound' },
    { description: 'PUT on a collection', method: 'PUT', path: '/api/v1/namespaces/default/configmaps', body: '{}', headers: {}, code: 405, reason: 'MethodNotAllowed' },
    { description: 'a strategic merge patch of a custom resource', method: 'PATCH', path: `${W}/x`, body: '{}', headers: { 'Content-Type': 'application/strategic-merge-patch+json' }, code: 404, reason: 'NotFound' },
    { description: 'an unknown patch type', method: 'PATCH', path: '/api/v1/namespaces/default/configmaps/kube-root', body: '{}', headers: { 'Content-Type': 'text/plain' }, code: 404, reason: 'NotFound' },
    { description: 'a mismatched namespace', method: 'POST', path: '/api/v1/namespaces/default/configmaps', body: { metadata: { name: 'm', namespace: 'other' } }, headers: {}, code: 400, reason: 'BadRequest' },
    { description: 'a resourceVersion on create', method: 'POST', path: '/api/v1/namespaces/default/configmaps', body: { metadata: { name: 'm', resourceVersion: '5' } }, headers: {}, code: 400, reason: 'BadRequest' },
    { description: 'a body of the wrong kind', method: 'POST', path: '/api/v1/namespaces/default/configmaps', body: { kind: 'Secret', apiVersion: 'v1', metadata: { name: 'm' } }, headers: {}, code: 400, reason: 'BadRequest' },
    { description: 'an unsupported Accept', method: 'GET', path: '/api/v1/namespaces', body: undefined, headers: { Accept: 'application/vnd.kubernetes.protobuf' }, code: 406, reason: 'NotAcceptable' },
    { description: 'deleting the default namespace', method: 'DELETE', path: '/api/v1/namespaces/default', body: undefined, headers: {}, code: 403, reason: 'Forbidden' },
  ])('$description → $code $reason', async ({ method, path, body, headers, code, reason }) => {
    const r = await http(c, method, path, body, headers as Record<string, string>);
    expect(r.status).toBe(code);
    expect(r.json).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code, reason });
  });

  it('reads protobuf bodies of the kinds kubectl create sends, and refuses others with 415', async () => {
    const field = (n: number, bytes: Buffer) => Buffer.concat([Buffer.from([(n << 3) | 2, bytes.length]), bytes]);
    const str = (n: number, v: string) => field(n, Buffer.from(v));
    const envelope = (apiVersion: string, kind: string, raw: Buffer) =>
      Buffer.concat([Buffer.from('k8s\0', 'latin1'), field(1, Buffer.concat([str(1, apiVersion), str(2, kind)])), field(2, raw)]);
    const post = (path: string, body: Buffer) => fetch(c.url + path, { method: 'POST', headers: { 'Content-Type': 'application/vnd.kubernetes.protobuf' }, body });
    // ConfigMap{metadata{name: "pb"}, data{"k": "v"}}
    const cm = Buffer.concat([field(1, str(1, 'pb')), field(2, Buffer.concat([str(1, 'k'), str(2, 'v')]))]);
    const ok = await post('/api/v1/namespaces/default/configmaps', envelope('v1', 'ConfigMap', cm));
    expect(ok.status).toBe(201);
    expect(((await ok.json()) as any).data).toEqual({ k: 'v' });
    const pod = await post('/api/v1/namespaces/default/pods', envelope('v1', 'Pod', field(1, str(1, 'pb'))));
    expect(pod.status).toBe(415);
    const garbage = await post('/api/v1/namespaces/default/configmaps', Buffer.from('not protobuf'));
    expect(garbage.status).toBe(400);
  });

  it('refuses a strategic merge patch of an existing custom resource with 415', async () => {
    await http(c, 'POST', W, widget('smp'));
    const r = await http(c, 'PATCH', `${W}/smp`, '{}', { 'Content-Type': 'application/strategic-merge-patch+json' });
    expect(r.status).toBe(415);
    expect(r.json.reason).toBe('UnsupportedMediaType');
  });

  it('warns about unknown fields under the default Warn validation and drops them', async () => {
    const r = await http(c, 'POST', W, { ...widget('warned', { direction: 'Egress', junk: 1 }), status: { packets: 1 } });
    expect(r.status).toBe(201);
    expect(r.headers.get('warning')).toBe('299 - "unknown field \\"spec.junk\\""');
    expect(r.json.spec).toEqual({ direction: 'Egress', snapLength: 0, mtu: 0 });
  });
});

describe('lists', () => {
  it('keeps pages consistent with the first page (a snapshot at its resourceVersion)', async () => {
    for (const n of ['pa', 'pb', 'pc', 'pd']) await http(c, 'POST', '/api/v1/namespaces/default/configmaps', { metadata: { name: `page-${n}`, labels: { page: 'y' } } });
    const first = await http(c, 'GET', '/api/v1/namespaces/default/configmaps?labelSelector=page%3Dy&limit=2');
    expect(first.json.items.map((i: any) => i.metadata.name)).toEqual(['page-pa', 'page-pb']);
    expect(first.json.metadata.remainingItemCount).toBeUndefined();
    await http(c, 'DELETE', '/api/v1/namespaces/default/configmaps/page-pd');
    await http(c, 'POST', '/api/v1/namespaces/default/configmaps', { metadata: { name: 'page-pe', labels: { page: 'y' } } });
    await http(c, 'PATCH', '/api/v1/namespaces/default/configmaps/page-pc', { data: { changed: 'yes' } }, MERGE);
    const second = await http(c, 'GET', `/api/v1/namespaces/default/configmaps?labelSelector=page%3Dy&limit=2&continue=${first.json.metadata.continue}`);
    expect(second.json.items.map((i: any) => i.metadata.name)).toEqual(['page-pc', 'page-pd']);
    expect(second.json.items[0].data).toBeUndefined();
    expect(second.json.metadata.resourceVersion).toBe(first.json.metadata.resourceVersion);
    const now = await http(c, 'GET', '/api/v1/namespaces/default/configmaps?labelSelector=page%3Dy');
    expect(now.json.items.map((i: any) => i.metadata.name)).toEqual(['page-pa', 'page-pb', 'page-pc', 'page-pe']);
  });

  it('gives remainingItemCount without selectors, and typed list items without apiVersion/kind', async () => {
    const r = await http(c, 'GET', '/api/v1/namespaces?limit=1');
    expect(r.json.kind).toBe('NamespaceList');
    expect(r.json.metadata.remainingItemCount).toBeGreaterThan(0);
    expect(r.json.items[0].kind).toBeUndefined();
    const cr = await http(c, 'GET', `${W}?limit=1`);
    expect(cr.json.items[0]).toMatchObject({ apiVersion: 'test.podtap.io/v1', kind: 'Widget' });
  });

  it('serves resourceVersionMatch=Exact from history', async () => {
    const a = await http(c, 'POST', '/api/v1/namespaces/default/configmaps', { metadata: { name: 'exact', labels: { exact: 'y' } }, data: { v: '1' } });
    await http(c, 'PATCH', '/api/v1/namespaces/default/configmaps/exact', { data: { v: '2' } }, MERGE);
    const then = await http(c, 'GET', `/api/v1/namespaces/default/configmaps?labelSelector=exact%3Dy&resourceVersion=${a.json.metadata.resourceVersion}&resourceVersionMatch=Exact`);
    expect(then.json.items[0].data).toEqual({ v: '1' });
  });

  it('waits for a resourceVersion from the future, then answers 504 Too large resource version', async () => {
    const now = Number((await http(c, 'GET', '/api/v1/namespaces')).json.metadata.resourceVersion);
    const soon = http(c, 'GET', `/api/v1/namespaces/default/configmaps?resourceVersion=${now + 1}`);
    await http(c, 'POST', '/api/v1/namespaces/default/configmaps', { metadata: { name: 'arrives' } });
    expect((await soon).status).toBe(200);
    const started = Date.now();
    const never = await http(c, 'GET', `/api/v1/namespaces/default/configmaps?resourceVersion=${now + 1000}`);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2900);
    expect(never.status).toBe(504);
    expect(never.json).toMatchObject({ reason: 'Timeout', details: { causes: [{ reason: 'ResourceVersionTooLarge' }], retryAfterSeconds: 1 } });
  });

  it('answers Table and PartialObjectMetadataList when asked', async () => {
    const t = await http(c, 'GET', '/api/v1/namespaces', undefined, { Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json' });
    expect(t.json.kind).toBe('Table');
    expect(t.json.columnDefinitions.map((d: any) => d.name)).toEqual(['Name', 'Status', 'Age']);
    expect(t.json.rows[0].object.kind).toBe('PartialObjectMetadata');
    const full = await http(c, 'GET', '/api/v1/namespaces?includeObject=Object', undefined, { Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' });
    expect(full.json.rows[0].object.kind).toBe('Namespace');
    const none = await http(c, 'GET', '/api/v1/namespaces?includeObject=None', undefined, { Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' });
    expect(none.json.rows[0].object).toBeUndefined();
    const meta = await http(c, 'GET', '/api/v1/namespaces', undefined, { Accept: 'application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io' });
    expect(meta.json.kind).toBe('PartialObjectMetadataList');
    expect(Object.keys(meta.json.items[0])).toEqual(['kind', 'apiVersion', 'metadata']);
  });

  it('answers YAML when asked', async () => {
    const r = await fetch(`${c.url}/api/v1/namespaces/default`, { headers: { Accept: 'application/yaml' } });
    expect(r.headers.get('content-type')).toBe('application/yaml');
    expect(await r.text()).toMatch(/^apiVersion: v1\nkind: Namespace\n/);
  });
});

describe('watch variants', () => {
  it('streams Tables for kubectl get -w', async () => {
    const s = await watch(`${W}?watch=1&fieldSelector=metadata.name%3Dtab`, { Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' });
    await http(c, 'POST', W, widget('tab', { direction: 'Ingress' }));
    await eventually(() => expect(s.lines[0]?.type).toBe('ADDED'));
    expect(s.lines[0].object.kind).toBe('Table');
    expect(s.lines[0].object.rows[0].cells.slice(0, 3)).toEqual(['tab', null, 'Ingress']);
    s.close();
  });

  it('sends initial events and the initial-events-end bookmark for sendInitialEvents=true', async () => {
    await http(c, 'POST', '/api/v1/namespaces/default/configmaps', { metadata: { name: 'initial', labels: { initial: 'y' } } });
    const s = await watch('/api/v1/namespaces/default/configmaps?watch=1&labelSelector=initial%3Dy&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan');
    await eventually(() => expect(s.lines.length).toBeGreaterThanOrEqual(2));
    expect(s.lines[0]).toMatchObject({ type: 'ADDED', object: { metadata: { name: 'initial' } } });
    expect(s.lines[1]).toMatchObject({ type: 'BOOKMARK', object: { kind: 'ConfigMap', metadata: { annotations: { 'k8s.io/initial-events-end': 'true' } } } });
    s.close();
  });

  it('ends at timeoutSeconds', async () => {
    const started = Date.now();
    const s = await watch('/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1&resourceVersion=0');
    await s.ended;
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });

  it('supports the legacy /watch/ path for one object', async () => {
    await http(c, 'POST', '/api/v1/namespaces/default/configmaps', { metadata: { name: 'legacy' } });
    const s = await watch('/api/v1/watch/namespaces/default/configmaps/legacy');
    await http(c, 'PATCH', '/api/v1/namespaces/default/configmaps/legacy', { data: { a: 'b' } }, MERGE);
    await eventually(() => expect(s.lines.map((l) => l.type)).toEqual(['ADDED', 'MODIFIED']));
    s.close();
  });

  it('closes a watch that does not keep up', async () => {
    const slow = await startCluster({ maxWatchBufferBytes: 64 * 1024 });
    try {
      const res = await fetch(`${slow.url}/api/v1/namespaces/default/configmaps?watch=1`);
      const big = 'x'.repeat(50_000);
      for (let i = 0; i < 200; i++) await http(slow, 'POST', '/api/v1/namespaces/default/configmaps', { metadata: { name: `big-${i}` }, data: { big } });
      // Only now read: the stream must have been cut short, not hold all 200 events.
      const text = await res.text();
      const events = text.split('\n').filter(Boolean).length;
      expect(events).toBeLessThan(200);
    } finally {
      await slow.close();
    }
  });
});

describe('subresources and options', () => {
  it('serves the scale subresource of a Deployment', async () => {
    await http(c, 'POST', '/apis/apps/v1/namespaces/default/deployments', {
      metadata: { name: 'scaled' },
      spec: { selector: { matchLabels: { a: 'b' } }, template: { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'c', image: 'i' }] } } },
    });
    const scale = await http(c, 'GET', '/apis/apps/v1/namespaces/default/deployments/scaled/scale');
    expect(scale.json).toMatchObject({ kind: 'Scale', apiVersion: 'autoscaling/v1', spec: { replicas: 1 } });
    const patched = await http(c, 'PATCH', '/apis/apps/v1/namespaces/default/deployments/scaled/scale', { spec: { replicas: 3 } }, MERGE);
    expect(patched.json.spec.replicas).toBe(3);
    const d = await http(c, 'GET', '/apis/apps/v1/namespaces/default/deployments/scaled');
    expect(d.json.spec.replicas).toBe(3);
    expect(d.json.metadata.generation).toBe(2);
  });

  it('dry-run stores nothing for create, update and delete', async () => {
    const created = await http(c, 'POST', '/api/v1/namespaces/default/configmaps?dryRun=All', { metadata: { name: 'dry' } });
    expect(created.status).toBe(201);
    expect(created.json.metadata.uid).toBeTruthy();
    expect((await http(c, 'GET', '/api/v1/namespaces/default/configmaps/dry')).status).toBe(404);
    await http(c, 'POST', '/api/v1/namespaces/default/configmaps', { metadata: { name: 'dry' }, data: { a: '1' } });
    await http(c, 'PATCH', '/api/v1/namespaces/default/configmaps/dry?dryRun=All', { data: { a: '2' } }, MERGE);
    await http(c, 'DELETE', '/api/v1/namespaces/default/configmaps/dry?dryRun=All');
    const still = await http(c, 'GET', '/api/v1/namespaces/default/configmaps/dry');
    expect(still.json.data).toEqual({ a: '1' });
  });

  it('deletes a collection by label selector', async () => {
    for (const n of ['dc1', 'dc2']) await http(c, 'POST', '/api/v1/namespaces/default/secrets', { metadata: { name: n, labels: { dc: 'y' } } });
    await http(c, 'POST', '/api/v1/namespaces/default/secrets', { metadata: { name: 'dc3' } });
    const r = await http(c, 'DELETE', '/api/v1/namespaces/default/secrets?labelSelector=dc%3Dy');
    expect(r.json.kind).toBe('SecretList');
    expect(r.json.items.map((i: any) => i.metadata.name)).toEqual(['dc1', 'dc2']);
    const left = await http(c, 'GET', '/api/v1/namespaces/default/secrets');
    expect(left.json.items.map((i: any) => i.metadata.name)).toContain('dc3');
    expect(left.json.items.map((i: any) => i.metadata.name)).not.toContain('dc1');
  });

  it('stores core and events.k8s.io Events as one resource', async () => {
    const r = await http(c, 'POST', '/apis/events.k8s.io/v1/namespaces/default/events', {
      metadata: { name: 'ev1' },
      regarding: { kind: 'Widget', name: 'w', namespace: 'default' },
      note: 'hello',
      reason: 'Test',
      type: 'Normal',
      eventTime: '2025-01-02T03:04:05.123Z',
      reportingController: 'podtap.io/test',
      reportingInstance: 'i',
      action: 'Do',
    });
    expect(r.status).toBe(201);
    expect(r.json.eventTime).toBe('2025-01-02T03:04:05.123000Z');
    const core = await http(c, 'GET', '/api/v1/namespaces/default/events/ev1');
    expect(core.json).toMatchObject({ apiVersion: 'v1', involvedObject: { kind: 'Widget', name: 'w' }, message: 'hello', reportingComponent: 'podtap.io/test' });
    const byRegarding = await http(c, 'GET', '/apis/events.k8s.io/v1/namespaces/default/events?fieldSelector=regarding.name%3Dw');
    expect(byRegarding.json.items.map((e: any) => e.note)).toEqual(['hello']);
  });

  it('serves every version of a multi-version CRD from one storage', async () => {
    const crd = structuredClone(widgetCrd) as any;
    crd.metadata.name = 'gadgets.test.podtap.io';
    crd.spec.names = { plural: 'gadgets', singular: 'gadget', kind: 'Gadget' };
    const v1 = crd.spec.versions[0];
    crd.spec.versions = [v1, { ...structuredClone(v1), name: 'v2', storage: false }];
    expect((await http(c, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd)).status).toBe(201);
    const made = await http(c, 'POST', '/apis/test.podtap.io/v2/namespaces/default/gadgets', { apiVersion: 'test.podtap.io/v2', kind: 'Gadget', metadata: { name: 'g' }, spec: {} });
    expect(made.json.apiVersion).toBe('test.podtap.io/v2');
    const asV1 = await http(c, 'GET', '/apis/test.podtap.io/v1/namespaces/default/gadgets/g');
    expect(asV1.json.apiVersion).toBe('test.podtap.io/v1');
    expect(asV1.json.metadata.uid).toBe(made.json.metadata.uid);
    const established = await eventually(async () => {
      const got = await http(c, 'GET', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.test.podtap.io');
      const cond = got.json.status.conditions?.find((x: any) => x.type === 'Established');
      if (cond?.status !== 'True') throw new Error('not established');
      return got.json;
    });
    expect(established.status.storedVersions).toEqual(['v1']);
  });
});

describe('services', () => {
  const pod = (name: string, labels: Record<string, string>) => ({
    metadata: { name, labels },
    spec: { nodeName: 'node-1', containers: [{ name: 'c', image: 'i', ports: [{ name: 'http', containerPort: 8080 }] }] },
  });
  const setStatus = (name: string, status: unknown) => http(c, 'PATCH', `/api/v1/namespaces/svc/pods/${name}/status`, { status }, MERGE);

  beforeAll(async () => {
    await http(c, 'POST', '/api/v1/namespaces', { metadata: { name: 'svc' } });
  });

  it('allocates a ClusterIP and NodePorts, keeps them immutable and never hands one out twice', async () => {
    const a = await http(c, 'POST', '/api/v1/namespaces/svc/services', { metadata: { name: 'a' }, spec: { type: 'NodePort', ports: [{ port: 80 }] } });
    expect(a.status).toBe(201);
    expect(a.json.spec.clusterIP).toMatch(/^10\.(9[6-9]|10[0-9]|11[01])\.\d+\.\d+$/);
    expect(a.json.spec).toMatchObject({ clusterIPs: [a.json.spec.clusterIP], ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack' });
    expect(a.json.spec.ports[0]).toMatchObject({ port: 80, targetPort: 80, protocol: 'TCP' });
    expect(a.json.spec.ports[0].nodePort).toBeGreaterThanOrEqual(30000);
    const dup = await http(c, 'POST', '/api/v1/namespaces/svc/services', { metadata: { name: 'b' }, spec: { clusterIP: a.json.spec.clusterIP, ports: [{ port: 80 }] } });
    expect(dup.status).toBe(422);
    expect(dup.json.message).toContain('provided IP is already allocated');
    const changed = await http(c, 'PATCH', '/api/v1/namespaces/svc/services/a', { spec: { clusterIP: '10.96.200.200' } }, MERGE);
    expect(changed.status).toBe(422);
    expect(changed.json.details.causes[0]).toMatchObject({ field: 'spec.clusterIPs[0]', message: expect.stringContaining('may not change once set') });
    const replaced = await http(c, 'PUT', '/api/v1/namespaces/svc/services/a', { metadata: { name: 'a' }, spec: { type: 'NodePort', ports: [{ port: 80 }] } });
    expect(replaced.json.spec.clusterIP).toBe(a.json.spec.clusterIP);
    expect(replaced.json.spec.ports[0].nodePort).toBe(a.json.spec.ports[0].nodePort);
  });

  it('gives pods the default ServiceAccount, which every namespace has', async () => {
    const p = await http(c, 'POST', '/api/v1/namespaces/svc/pods', pod('sa', {}));
    expect(p.json.spec.serviceAccountName).toBe('default');
    await eventually(async () => expect((await http(c, 'GET', '/api/v1/namespaces/svc/serviceaccounts/default')).status).toBe(200));
  });

  it('maintains EndpointSlices and Endpoints from the selected pods', async () => {
    for (const [n, l] of [
      ['web-0', { app: 'web' }],
      ['web-1', { app: 'web' }],
      ['web-2', { app: 'web' }],
      ['db-0', { app: 'db' }],
    ] as const) {
      await http(c, 'POST', '/api/v1/namespaces/svc/pods', pod(n, l));
    }
    await setStatus('web-0', { podIP: '198.18.0.10', conditions: [{ type: 'Ready', status: 'True' }] });
    await setStatus('web-1', { podIP: '198.18.0.11', conditions: [{ type: 'Ready', status: 'False' }] });
    await setStatus('db-0', { podIP: '198.18.0.12', conditions: [{ type: 'Ready', status: 'True' }] });
    const svc = await http(c, 'POST', '/api/v1/namespaces/svc/services', { metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] } });
    const slice = await eventually(async () => {
      const r = await http(c, 'GET', '/apis/discovery.k8s.io/v1/namespaces/svc/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweb');
      expect(r.json.items).toHaveLength(1);
      expect(r.json.items[0].endpoints).toHaveLength(2);
      return r.json.items[0];
    });
    expect(slice.metadata.name).toMatch(/^web-[a-z0-9]{5}$/);
    expect(slice.metadata.labels['endpointslice.kubernetes.io/managed-by']).toBe('endpointslice-controller.k8s.io');
    expect(slice.metadata.ownerReferences[0]).toMatchObject({ kind: 'Service', name: 'web', uid: svc.json.metadata.uid, controller: true });
    expect(slice.addressType).toBe('IPv4');
    expect(slice.ports).toEqual([{ name: 'http', port: 8080, protocol: 'TCP' }]);
    expect(slice.endpoints.map((e: any) => [e.addresses[0], e.conditions.ready, e.nodeName, e.targetRef.name])).toEqual([
      ['198.18.0.10', true, 'node-1', 'web-0'],
      ['198.18.0.11', false, 'node-1', 'web-1'],
    ]);
    const ep = await http(c, 'GET', '/api/v1/namespaces/svc/endpoints/web');
    expect(ep.json.subsets).toEqual([
      {
        addresses: [{ ip: '198.18.0.10', nodeName: 'node-1', targetRef: { kind: 'Pod', namespace: 'svc', name: 'web-0', uid: expect.any(String) } }],
        notReadyAddresses: [{ ip: '198.18.0.11', nodeName: 'node-1', targetRef: { kind: 'Pod', namespace: 'svc', name: 'web-1', uid: expect.any(String) } }],
        ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      },
    ]);
    await setStatus('web-1', { conditions: [{ type: 'Ready', status: 'True' }] });
    await eventually(async () => {
      const r = await http(c, 'GET', `/apis/discovery.k8s.io/v1/namespaces/svc/endpointslices/${slice.metadata.name}`);
      expect(r.json.endpoints.map((e: any) => e.conditions.ready)).toEqual([true, true]);
    });
    await http(c, 'DELETE', '/api/v1/namespaces/svc/services/web');
    await eventually(async () => {
      expect((await http(c, 'GET', `/apis/discovery.k8s.io/v1/namespaces/svc/endpointslices/${slice.metadata.name}`)).status).toBe(404);
      expect((await http(c, 'GET', '/api/v1/namespaces/svc/endpoints/web')).status).toBe(404);
    });
  });
});

describe('immutability of built-ins', () => {
  it.each([
    {
      description: 'a pod spec outside the mutable fields',
      create: ['/api/v1/namespaces/default/pods', { metadata: { name: 'imm-pod' }, spec: { containers: [{ name: 'c', image: 'a:1' }] } }],
      patch: ['/api/v1/namespaces/default/pods/imm-pod', { spec: { hostNetwork: true } }],
      allowed: ['/api/v1/namespaces/default/pods/imm-pod', { spec: { containers: [{ name: 'c', image: 'a:2' }] } }],
      expected: { field: 'spec', reason: 'FieldValueForbidden', message: expect.stringContaining('Forbidden: pod updates may not change fields other than `spec.containers[*].image`') },
    },
    {
      description: 'a Deployment selector',
      create: [
        '/apis/apps/v1/namespaces/default/deployments',
        { metadata: { name: 'imm-deploy' }, spec: { selector: { matchLabels: { a: 'b' } }, template: { metadata: { labels: { a: 'b', c: 'd' } }, spec: { containers: [{ name: 'c', image: 'i' }] } } } },
      ],
      patch: ['/apis/apps/v1/namespaces/default/deployments/imm-deploy', { spec: { selector: { matchLabels: { c: 'd' } } } }],
      allowed: ['/apis/apps/v1/namespaces/default/deployments/imm-deploy', { spec: { replicas: 2 } }],
      expected: { field: 'spec.selector', reason: 'FieldValueInvalid', message: expect.stringContaining('field is immutable') },
    },
    {
      description: 'the data of an immutable ConfigMap',
      create: ['/api/v1/namespaces/default/configmaps', { metadata: { name: 'imm-cm' }, data: { a: '1' }, immutable: true }],
      patch: ['/api/v1/namespaces/default/configmaps/imm-cm', { data: { a: '2' } }],
      allowed: ['/api/v1/namespaces/default/configmaps/imm-cm', { metadata: { labels: { x: 'y' } } }],
      expected: { field: 'data', reason: 'FieldValueForbidden', message: 'Forbidden: field is immutable when `immutable` is set' },
    },
  ])('refuses to change $description (422) and allows what may change', async ({ create, patch, allowed, expected }) => {
    expect((await http(c, 'POST', create[0] as string, create[1])).status).toBe(201);
    const refused = await http(c, 'PATCH', patch[0] as string, patch[1], { 'Content-Type': 'application/strategic-merge-patch+json' });
    expect(refused.status).toBe(422);
    expect(refused.json.details.causes).toEqual([expected]);
    const ok = await http(c, 'PATCH', allowed[0] as string, allowed[1], { 'Content-Type': 'application/strategic-merge-patch+json' });
    expect(ok.status).toBe(200);
  });

  it('merges a Secret\'s stringData into data', async () => {
    const r = await http(c, 'POST', '/api/v1/namespaces/default/secrets', { metadata: { name: 'sd' }, data: { a: 'YQ==' }, stringData: { b: 'bee' } });
    expect(r.json.data).toEqual({ a: 'YQ==', b: 'YmVl' });
    expect(r.json.stringData).toBeUndefined();
    expect(r.json.type).toBe('Opaque');
  });

  it('deletes a pod on a node gracefully: Terminating first, gone when the stand-in kubelet is done', async () => {
    await http(c, 'POST', '/api/v1/namespaces/default/pods', { metadata: { name: 'graceful' }, spec: { nodeName: 'node-1', containers: [{ name: 'c', image: 'i' }] } });
    const s = await watch('/api/v1/namespaces/default/pods?watch=1&fieldSelector=metadata.name%3Dgraceful');
    const del = await http(c, 'DELETE', '/api/v1/namespaces/default/pods/graceful');
    expect(del.status).toBe(200);
    expect(del.json.metadata.deletionGracePeriodSeconds).toBe(30);
    expect(Date.parse(del.json.metadata.deletionTimestamp) - Date.now()).toBeGreaterThan(25_000);
    await eventually(() => expect(s.lines.map((l) => `${l.type} ${l.object.metadata.deletionGracePeriodSeconds ?? '-'}`)).toEqual(['ADDED -', 'MODIFIED 30', 'DELETED 30']));
    s.close();
    await http(c, 'POST', '/api/v1/namespaces/default/pods', { metadata: { name: 'unbound' }, spec: { containers: [{ name: 'c', image: 'i' }] } });
    expect((await http(c, 'DELETE', '/api/v1/namespaces/default/pods/unbound')).json.metadata.deletionTimestamp).toBeUndefined();
  });

  it('binds a pod to a node through pods/binding, once', async () => {
    await http(c, 'POST', '/api/v1/namespaces/default/pods', { metadata: { name: 'bind-me' }, spec: { containers: [{ name: 'c', image: 'i' }] } });
    const bind = { apiVersion: 'v1', kind: 'Binding', metadata: { name: 'bind-me' }, target: { apiVersion: 'v1', kind: 'Node', name: 'node-9' } };
    const r = await http(c, 'POST', '/api/v1/namespaces/default/pods/bind-me/binding', bind);
    expect(r.status).toBe(201);
    const pod = await http(c, 'GET', '/api/v1/namespaces/default/pods/bind-me');
    expect(pod.json.spec.nodeName).toBe('node-9');
    expect(pod.json.status.conditions).toEqual([expect.objectContaining({ type: 'PodScheduled', status: 'True' })]);
    const again = await http(c, 'POST', '/api/v1/namespaces/default/pods/bind-me/binding', bind);
    expect(again.status).toBe(409);
    expect(again.json.message).toContain('is already assigned to node "node-9"');
  });
});

describe('lifecycles', () => {
  it('a deleted namespace terminates: no new content, its objects go, then it goes', async () => {
    await http(c, 'POST', '/api/v1/namespaces', { metadata: { name: 'doomed' } });
    await http(c, 'POST', '/api/v1/namespaces/doomed/configmaps', { metadata: { name: 'held', finalizers: ['test.podtap.io/hold'] } });
    await http(c, 'POST', '/api/v1/namespaces/doomed/secrets', { metadata: { name: 's' } });
    const del = await http(c, 'DELETE', '/api/v1/namespaces/doomed');
    expect(del.json.status.phase).toBe('Terminating');
    const refused = await http(c, 'POST', '/api/v1/namespaces/doomed/configmaps', { metadata: { name: 'late' } });
    expect(refused.status).toBe(403);
    expect(refused.json.message).toBe('configmaps "late" is forbidden: unable to create new content in namespace doomed because it is being terminated');
    await eventually(async () => expect((await http(c, 'GET', '/api/v1/namespaces/doomed/secrets/s')).status).toBe(404));
    expect((await http(c, 'GET', '/api/v1/namespaces/doomed')).status).toBe(200);
    await http(c, 'PATCH', '/api/v1/namespaces/doomed/configmaps/held', { metadata: { finalizers: null } }, MERGE);
    await eventually(async () => expect((await http(c, 'GET', '/api/v1/namespaces/doomed')).status).toBe(404));
  });

  it('a deleted CRD takes its custom resources and its API with it', async () => {
    const crd = structuredClone(widgetCrd) as any;
    crd.metadata.name = 'gizmos.test.podtap.io';
    crd.spec.names = { plural: 'gizmos', singular: 'gizmo', kind: 'Gizmo' };
    await http(c, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd);
    await http(c, 'POST', '/apis/test.podtap.io/v1/namespaces/default/gizmos', { apiVersion: 'test.podtap.io/v1', kind: 'Gizmo', metadata: { name: 'z' }, spec: {} });
    const s = await watch('/apis/test.podtap.io/v1/namespaces/default/gizmos?watch=1');
    const del = await http(c, 'DELETE', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gizmos.test.podtap.io');
    expect(del.json.metadata.finalizers).toEqual(['customresourcecleanup.apiextensions.k8s.io']);
    await eventually(async () => expect((await http(c, 'GET', '/apis/test.podtap.io/v1/namespaces/default/gizmos')).status).toBe(404));
    await s.ended;
    expect(s.lines.map((l) => l.type)).toEqual(['ADDED', 'DELETED']);
    expect((await http(c, 'GET', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gizmos.test.podtap.io')).status).toBe(404);
    expect((await http(c, 'GET', '/apis/test.podtap.io/v1/namespaces/default/widgets')).status).toBe(200);
  });

  it('refuses a CRD with an invalid CEL rule, naming the rule', async () => {
    const crd = structuredClone(widgetCrd) as any;
    crd.metadata.name = 'broken.test.podtap.io';
    crd.spec.names = { plural: 'broken', singular: 'broken', kind: 'Broken' };
    crd.spec.versions[0].schema.openAPIV3Schema.properties.spec['x-kubernetes-validations'] = [{ rule: 'self.a ==' }];
    const r = await http(c, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd);
    expect(r.status).toBe(422);
    expect(r.json.details.causes[0].field).toBe('spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule');
  });
});
