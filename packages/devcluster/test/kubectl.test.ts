/**
 * The embedded API checked with the real kubectl (1.32): discovery, apply with
 * its default (server-side, Strict) field validation, printer columns,
 * watches, describe with Events, delete, and server dry-run of built-ins.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { eventually, http, kubectl, startCluster, widgetCrd, writeManifest, type Cluster } from './harness.ts';

let c: Cluster;

const manifest = (...docs: unknown[]) => docs.map((d) => stringify(d)).join('---\n');

const goodWidget = {
  apiVersion: 'test.podtap.io/v1',
  kind: 'Widget',
  metadata: { name: 'web', namespace: 'default' },
  spec: { nodeName: 'node-1', ports: [{ port: 443 }, { port: 8000, endPort: 8100 }], collector: { address: '198.18.1.2' } },
};

beforeAll(async () => {
  c = await startCluster();
  const crd = await writeManifest(c, 'crd.yaml', manifest(widgetCrd));
  const r = await kubectl(c, ['apply', '-f', crd]);
  expect(r.stderr).toBe('');
  expect(r.stdout).toBe('customresourcedefinition.apiextensions.k8s.io/widgets.test.podtap.io created\n');
});
afterAll(async () => {
  await c.close();
});

describe('kubectl against the embedded API', () => {
  it('reports the server version as a stand-in', async () => {
    const r = await kubectl(c, ['version', '-o', 'json']);
    expect(JSON.parse(r.stdout).serverVersion.gitVersion).toBe('v1.32.0-podtap.devcluster');
  });

  it('waits for the CRD to be Established and lists it in api-resources', async () => {
    const w = await kubectl(c, ['wait', '--for=condition=Established', 'crd/widgets.test.podtap.io', '--timeout=10s']);
    expect(w.stdout).toContain('condition met');
    const r = await kubectl(c, ['api-resources', '--api-group=test.podtap.io']);
    expect(r.stdout).toMatch(/widgets\s+wd\s+test\.podtap\.io\/v1\s+true\s+Widget/);
  });

  it('applies a custom resource, then reports it unchanged, and shows the defaults', async () => {
    const f = await writeManifest(c, 'web.yaml', manifest(goodWidget));
    expect((await kubectl(c, ['apply', '-f', f])).stdout).toBe('widget.test.podtap.io/web created\n');
    expect((await kubectl(c, ['apply', '-f', f])).stdout).toBe('widget.test.podtap.io/web unchanged\n');
    const got = JSON.parse((await kubectl(c, ['get', 'widget', 'web', '-o', 'json'])).stdout);
    expect(got.spec.direction).toBe('Both');
    expect(got.metadata.annotations['kubectl.kubernetes.io/last-applied-configuration']).toContain('"web"');
  });

  it.each([
    {
      description: 'a schema bound',
      spec: { ports: [{ port: 70000 }] },
      expected: 'spec.ports[0].port: Invalid value: 70000: spec.ports[0].port in body should be less than or equal to 65535',
    },
    {
      description: 'a CEL rule with fieldPath',
      spec: { ports: [{ port: 9000, endPort: 10 }] },
      expected: 'spec.ports[0].endPort: Invalid value: "object": endPort must be greater than or equal to port',
    },
    {
      description: 'an enum',
      spec: { direction: 'Sideways' },
      expected: 'spec.direction: Unsupported value: "Sideways": supported values: "Ingress", "Egress", "Both"',
    },
    {
      description: 'isCIDR',
      spec: { cidrs: ['10.0.0.0/8', '10.0.0.300/8'] },
      expected: 'spec.cidrs[1]: Invalid value: "string": must be a CIDR such as 10.0.0.0/8',
    },
    {
      description: 'a rule across fields',
      spec: { collector: {} },
      expected: 'spec.collector: Invalid value: "object": set exactly one of address or service',
    },
    {
      description: 'an unknown field (Strict field validation)',
      spec: { bogus: true },
      expected: 'strict decoding error: unknown field "spec.bogus"',
    },
  ])('refuses a bad custom resource and names the field: $description', async ({ spec, expected }) => {
    const f = await writeManifest(c, 'bad.yaml', manifest({ ...goodWidget, metadata: { name: 'bad', namespace: 'default' }, spec }));
    const r = await kubectl(c, ['apply', '-f', f]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain(expected);
    const get = await kubectl(c, ['get', 'widget', 'bad']);
    expect(get.stderr).toContain('widgets.test.podtap.io "bad" not found');
  });

  it('prints the printer columns, priority ones only with -o wide', async () => {
    await http(c, 'PATCH', '/apis/test.podtap.io/v1/namespaces/default/widgets/web/status', { status: { packets: 42, conditions: [{ type: 'Ready', status: 'True' }] } }, {
      'Content-Type': 'application/merge-patch+json',
    });
    const plain = await kubectl(c, ['get', 'widgets']);
    expect(plain.stdout.split('\n')[0]).toMatch(/^NAME\s+READY\s+DIRECTION\s+PACKETS\s+AGE$/);
    expect(plain.stdout.split('\n')[1]).toMatch(/^web\s+True\s+Both\s+42\s+\d+s$/);
    const wide = await kubectl(c, ['get', 'wd', '-o', 'wide']);
    expect(wide.stdout.split('\n')[0]).toMatch(/^NAME\s+READY\s+DIRECTION\s+PACKETS\s+NODE\s+AGE$/);
    expect(wide.stdout.split('\n')[1]).toMatch(/^web\s+True\s+Both\s+42\s+node-1\s+\d+s$/);
  });

  it('selects custom resources by a selectable field', async () => {
    const hit = await kubectl(c, ['get', 'widgets', '--field-selector', 'spec.nodeName=node-1', '-o', 'name']);
    expect(hit.stdout).toBe('widget.test.podtap.io/web\n');
    const miss = await kubectl(c, ['get', 'widgets', '--field-selector', 'spec.nodeName=node-2', '-o', 'name']);
    expect(miss.stdout).toBe('');
  });

  it('get -w shows a change as it happens', async () => {
    const proc = execa('kubectl', ['get', 'widgets', '-w', '--output-watch-events'], {
      env: { KUBECONFIG: c.kubeconfig, KUBECACHEDIR: join(c.dir, 'kube-cache') },
      reject: false,
    });
    let out = '';
    proc.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    try {
      await eventually(() => expect(out).toMatch(/ADDED\s+web\s+True/), 10_000);
      await http(c, 'PATCH', '/apis/test.podtap.io/v1/namespaces/default/widgets/web/status', { status: { packets: 43 } }, {
        'Content-Type': 'application/merge-patch+json',
      });
      await eventually(() => expect(out).toMatch(/MODIFIED\s+web\s+True\s+Both\s+43/), 10_000);
    } finally {
      proc.kill();
      await proc;
    }
  });

  it('describe shows the Events of a custom resource', async () => {
    const w = JSON.parse((await kubectl(c, ['get', 'widget', 'web', '-o', 'json'])).stdout);
    const ev = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: 'web.attach', namespace: 'default' },
      regarding: { apiVersion: 'test.podtap.io/v1', kind: 'Widget', name: 'web', namespace: 'default', uid: w.metadata.uid },
      reason: 'Attached',
      note: 'capturing on 2 interfaces',
      type: 'Normal',
      action: 'Attach',
      reportingController: 'podtap.io/controller',
      reportingInstance: 'controller-0',
      eventTime: new Date().toISOString(),
    };
    const created = await http(c, 'POST', '/apis/events.k8s.io/v1/namespaces/default/events', ev);
    expect(created.status).toBe(201);
    const r = await kubectl(c, ['describe', 'widget', 'web']);
    expect(r.stdout).toMatch(/Events:\n\s+Type\s+Reason\s+Age\s+From\s+Message\n.*\n\s+Normal\s+Attached\s+\S+\s+podtap\.io\/controller\s+capturing on 2 interfaces/);
  });

  it('delete removes the custom resource', async () => {
    const r = await kubectl(c, ['delete', 'widget', 'web']);
    expect(r.stdout).toBe('widget.test.podtap.io "web" deleted\n');
    expect((await kubectl(c, ['get', 'widgets'])).stderr).toContain('No resources found in default namespace.');
  });

  it('apply --dry-run=server of a Deployment, ServiceAccount and ClusterRole validates and stores nothing', async () => {
    const f = await writeManifest(
      c,
      'controller.yaml',
      manifest(
        { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'podtap-controller', namespace: 'default' } },
        {
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'ClusterRole',
          metadata: { name: 'podtap-controller' },
          rules: [{ apiGroups: ['podtap.io'], resources: ['sniffpolicies', 'sniffpolicies/status'], verbs: ['get', 'list', 'watch', 'patch'] }],
        },
        {
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          metadata: { name: 'podtap-controller', namespace: 'default' },
          spec: {
            replicas: 1,
            selector: { matchLabels: { app: 'podtap-controller' } },
            template: {
              metadata: { labels: { app: 'podtap-controller' } },
              spec: { serviceAccountName: 'podtap-controller', containers: [{ name: 'controller', image: 'podtap:dev', args: ['controller'] }] },
            },
          },
        },
      ),
    );
    const r = await kubectl(c, ['apply', '--dry-run=server', '-f', f]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(
      [
        'serviceaccount/podtap-controller created (server dry run)',
        'clusterrole.rbac.authorization.k8s.io/podtap-controller created (server dry run)',
        'deployment.apps/podtap-controller created (server dry run)',
        '',
      ].join('\n'),
    );
    const none = await kubectl(c, ['get', 'deployments,serviceaccounts,clusterroles', '-o', 'name']);
    // Only the ServiceAccount every namespace gets.
    expect(none.stdout).toBe('serviceaccount/default\n');
    // The same file applied for real, then changed: kubectl sends a strategic merge patch.
    expect((await kubectl(c, ['apply', '-f', f])).exitCode).toBe(0);
    const dry = await kubectl(c, ['apply', '--dry-run=server', '-f', f]);
    expect(dry.stdout).toContain('deployment.apps/podtap-controller unchanged (server dry run)');
  });

  it('server-side apply reports a conflict with kubectl scale, and --force-conflicts takes the field', async () => {
    const f = await writeManifest(
      c,
      'ssa.yaml',
      manifest({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'ssa', namespace: 'default' },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: 'ssa' } },
          template: { metadata: { labels: { app: 'ssa' } }, spec: { containers: [{ name: 'c', image: 'i' }] } },
        },
      }),
    );
    expect((await kubectl(c, ['apply', '--server-side', '-f', f])).stdout).toBe('deployment.apps/ssa serverside-applied\n');
    expect((await kubectl(c, ['scale', 'deployment/ssa', '--replicas=3'])).stdout).toBe('deployment.apps/ssa scaled\n');
    const conflict = await kubectl(c, ['apply', '--server-side', '-f', f]);
    expect(conflict.exitCode).not.toBe(0);
    expect(conflict.stderr).toContain('Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas');
    expect((await kubectl(c, ['apply', '--server-side', '--force-conflicts', '-f', f])).exitCode).toBe(0);
    expect((await kubectl(c, ['get', 'deployment', 'ssa', '-o', 'jsonpath={.spec.replicas}'])).stdout).toBe('1');
  });

  it.each([
    { description: 'namespace', args: ['create', 'namespace', 'gen'], get: ['namespace', 'gen'], expected: { status: { phase: 'Active' }, spec: { finalizers: ['kubernetes'] } } },
    { description: 'configmap', args: ['create', 'configmap', 'gen-cm', '--from-literal=a=b'], get: ['configmap', 'gen-cm'], expected: { data: { a: 'b' } } },
    { description: 'secret', args: ['create', 'secret', 'generic', 'gen-s', '--from-literal=k=v'], get: ['secret', 'gen-s'], expected: { data: { k: 'dg==' }, type: 'Opaque' } },
    { description: 'serviceaccount', args: ['create', 'serviceaccount', 'gen-sa'], get: ['serviceaccount', 'gen-sa'], expected: { metadata: { name: 'gen-sa' } } },
    {
      description: 'deployment',
      args: ['create', 'deployment', 'gen-d', '--image=nginx:1.27', '--port=80', '--replicas=2'],
      get: ['deployment', 'gen-d'],
      expected: {
        spec: {
          replicas: 2,
          selector: { matchLabels: { app: 'gen-d' } },
          strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } },
          template: { spec: { containers: [{ name: 'nginx', image: 'nginx:1.27', imagePullPolicy: 'IfNotPresent', ports: [{ containerPort: 80, protocol: 'TCP' }] }] } },
        },
      },
    },
    {
      description: 'service',
      args: ['create', 'service', 'nodeport', 'gen-svc', '--tcp=81:http'],
      get: ['service', 'gen-svc'],
      expected: { spec: { type: 'NodePort', selector: { app: 'gen-svc' }, ports: [{ name: '81-http', port: 81, targetPort: 'http', protocol: 'TCP', nodePort: expect.any(Number) }] } },
    },
    {
      description: 'clusterrole',
      args: ['create', 'clusterrole', 'gen-cr', '--verb=get,list', '--resource=pods'],
      get: ['clusterrole', 'gen-cr'],
      expected: { rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list'] }] },
    },
    {
      description: 'rolebinding',
      args: ['create', 'rolebinding', 'gen-rb', '--clusterrole=gen-cr', '--serviceaccount=default:gen-sa'],
      get: ['rolebinding', 'gen-rb'],
      expected: { roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'gen-cr' }, subjects: [{ kind: 'ServiceAccount', name: 'gen-sa', namespace: 'default' }] },
    },
    { description: 'priorityclass (value 0 kept)', args: ['create', 'priorityclass', 'gen-pc', '--value=0'], get: ['priorityclass', 'gen-pc'], expected: { value: 0, preemptionPolicy: 'PreemptLowerPriority' } },
    {
      description: 'poddisruptionbudget',
      args: ['create', 'poddisruptionbudget', 'gen-pdb', '--selector=app=x', '--min-available=50%'],
      get: ['poddisruptionbudget', 'gen-pdb'],
      expected: { spec: { minAvailable: '50%', selector: { matchLabels: { app: 'x' } } } },
    },
  ])('kubectl create $description (sent as protobuf) stores what it asked for', async ({ args, get, expected }) => {
    const r = await kubectl(c, args);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/ created\n$/);
    const obj = JSON.parse((await kubectl(c, ['get', ...get, '-o', 'json'])).stdout);
    expect(obj).toMatchObject(expected);
    expect(obj.metadata.creationTimestamp).toMatch(/Z$/);
  });

  it('kubectl get pods prints the pod columns', async () => {
    const f = await writeManifest(
      c,
      'pod.yaml',
      manifest({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-0', namespace: 'default' }, spec: { nodeName: 'node-1', containers: [{ name: 'c', image: 'nginx' }] } }),
    );
    expect((await kubectl(c, ['apply', '-f', f])).exitCode).toBe(0);
    const r = await kubectl(c, ['get', 'pods', '-o', 'wide']);
    expect(r.stdout.split('\n')[0]).toMatch(/^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s+IP\s+NODE\s+NOMINATED NODE\s+READINESS GATES$/);
    expect(r.stdout.split('\n')[1]).toMatch(/^web-0\s+0\/1\s+Pending\s+0\s+\d+s\s+<none>\s+node-1\s+<none>\s+<none>$/);
  });
});
