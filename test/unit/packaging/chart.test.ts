/**
 * charts/podtap rendered with Helm's template engine (tools/helm-render)
 * for the default values and two other installs, and checked: values against
 * values.schema.json, every object against the Kubernetes OpenAPI schemas
 * (kubernetes-models), the security rules, and what each role needs.
 */
import { readFile, writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { execa } from 'execa';
import { stringify } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { PodtapResources } from '../../../src/api/resources.ts';
import { Resources } from '../../../src/k8s/resources.ts';
import { CAPTURE_ACCESS } from '../../../src/collector/access.ts';
import { buildCrds } from '../../../src/api/crd.ts';
import { OBSOLETE_CRDS } from '../../../src/cli/crds.ts';
import { CHART, ROOT, render, type K8sObject, type Rendered } from './lib/render.ts';
import { CAPABILITY_ALLOW_LIST, documentedAgentCapabilities, exponentNumbers, policyViolations, workloads, type Container, type PodSpec } from './lib/policy.ts';
import { schemaErrors, unknownFieldErrors } from './lib/validate.ts';
import { VALUE_SETS } from './lib/value-sets.ts';

/** The Prometheus operator's kinds: no Kubernetes OpenAPI schema to check them against. */
const PROMETHEUS_OPERATOR_KINDS = ['ServiceMonitor', 'PrometheusRule'];
const schema = JSON.parse(await readFile(join(CHART, 'values.schema.json'), 'utf8')) as object;
const validateValues = new Ajv({ allErrors: true, strict: false }).compile(schema);
/** The agent's capabilities, one source of truth: the measured table of docs/security.md. */
const AGENT_CAPABILITIES_DOCUMENTED = documentedAgentCapabilities(await readFile(join(ROOT, 'docs/security.md'), 'utf8'));

const renders = new Map<string, Rendered>();
beforeAll(async () => {
  for (const set of VALUE_SETS) renders.set(set.description, await render(set.options));
}, 120_000);

function find(objects: K8sObject[], kind: string, nameSuffix: string): K8sObject {
  const o = objects.find((x) => x.kind === kind && x.metadata.name.endsWith(nameSuffix));
  if (!o) throw new Error(`no ${kind} *${nameSuffix} in ${objects.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')}`);
  return o;
}

function podOf(o: K8sObject): PodSpec {
  return (o.spec as { template: { spec: PodSpec } }).template.spec;
}

function container(o: K8sObject, name: string): Container {
  const pod = podOf(o);
  const c = [...pod.containers, ...(pod.initContainers ?? [])].find((x) => x.name === name);
  if (!c) throw new Error(`no container ${name} in ${o.metadata.name}`);
  return c;
}

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

function rules(objects: K8sObject[], kind: 'ClusterRole' | 'Role', nameSuffix: string): Rule[] {
  return find(objects, kind, nameSuffix).rules as Rule[];
}

function grants(rs: Rule[], group: string, resource: string, verb: string): boolean {
  return rs.some((r) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb));
}

describe.each(VALUE_SETS)('chart with $description', (set) => {
  const r = () => renders.get(set.description)!;

  it('has values that satisfy values.schema.json', () => {
    expect(validateValues(r().values), JSON.stringify(validateValues.errors, null, 1)).toBe(true);
  });

  it('renders only objects the Kubernetes OpenAPI schemas accept', async () => {
    const errors: string[] = [];
    for (const o of r().objects) {
      if (PROMETHEUS_OPERATOR_KINDS.includes(o.kind)) continue; // not Kubernetes kinds; checked below and in observability.test.ts
      const e = await schemaErrors(o);
      if (e) errors.push(`${o.kind}/${o.metadata.name}: ${e}`);
    }
    expect(errors).toEqual([]);
    expect(exponentNumbers(r().text)).toEqual([]);
  });

  it('keeps the security rules: no privileged container, resources and securityContext everywhere, non-root controller and collector, capabilities from the allow-list only', () => {
    expect(policyViolations(r().objects)).toEqual([]);
    expect(r().text).not.toMatch(/privileged:\s*true/);
  });

  it('puts every namespaced object in the release namespace, with the standard labels', () => {
    const clusterScoped = ['ClusterRole', 'ClusterRoleBinding', 'PriorityClass', 'CustomResourceDefinition', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding'];
    for (const o of r().objects) {
      if (!clusterScoped.includes(o.kind)) expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe(set.release.namespace);
      expect(o.metadata.labels?.['app.kubernetes.io/instance'], `${o.kind}/${o.metadata.name}`).toBe(set.release.name);
      expect(o.metadata.labels?.['app.kubernetes.io/name']).toBe('podtap');
    }
  });

  it('runs the agent on every node it should, on the host network, with the downward API and the host mounts it needs', () => {
    const values = r().values as { agent: { tolerations: unknown[]; netnsFallback: boolean; netnsDir: string; mountBpffs: boolean; compileCacheHostPath: string; pinRoot: string; pinRootHostPath: string } };
    const ds = find(r().objects, 'DaemonSet', '-agent');
    const pod = podOf(ds);
    expect(pod.hostNetwork).toBe(true);
    // the host's processes: the veth lookup by pod identity (cgroup -> /proc/PID/ns/net)
    expect(pod.hostPID).toBe(true);
    expect((pod as unknown as { tolerations: unknown[] }).tolerations).toEqual(values.agent.tolerations);
    expect((ds.spec as { updateStrategy: unknown }).updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
    expect((pod as unknown as { priorityClassName?: string }).priorityClassName).toBeTruthy();
    const agent = container(ds, 'agent');
    expect(agent.command).toEqual(['podtap']);
    expect(agent.args?.[0]).toBe('agent');
    const env = Object.fromEntries((agent.env ?? []).map((e) => [e.name, e.valueFrom ?? e.value]));
    expect(env.NODE_NAME).toEqual({ fieldRef: { fieldPath: 'spec.nodeName' } });
    expect(env.POD_NAME).toEqual({ fieldRef: { fieldPath: 'metadata.name' } });
    expect(env.POD_NAMESPACE).toEqual({ fieldRef: { fieldPath: 'metadata.namespace' } });
    const mounts = Object.fromEntries((agent.volumeMounts ?? []).map((m) => [m.mountPath, m]));
    // podtap's directory of the host's bpffs, read-write, where PODTAP_PIN_ROOT says
    expect(env.PODTAP_PIN_ROOT).toBe(values.agent.pinRoot);
    expect(mounts[values.agent.pinRoot]).toMatchObject({ name: 'bpffs' });
    expect(mounts[values.agent.pinRoot]!.readOnly).toBeFalsy();
    if (values.agent.netnsFallback) expect(mounts['/run/netns']).toMatchObject({ readOnly: true, mountPropagation: 'HostToContainer' });
    else expect(mounts['/run/netns']).toBeUndefined();
    // exactly the set docs/security.md's table lists (measured there, and by
    // test/kernel/image.test.ts taking each away); SYS_ADMIN only for the netns fallback
    expect(agent.securityContext?.capabilities).toEqual({ drop: ['ALL'], add: [...AGENT_CAPABILITIES_DOCUMENTED, ...(values.agent.netnsFallback ? ['SYS_ADMIN'] : [])] });
    expect(agent.securityContext?.allowPrivilegeEscalation).toBe(values.agent.netnsFallback);
    // hostPaths: exactly these, nothing else of the host
    const hostPaths = (pod.volumes ?? []).filter((v) => v.hostPath).map((v) => v.hostPath!.path).sort();
    const expected = [values.agent.pinRootHostPath, ...(values.agent.netnsFallback ? [values.agent.netnsDir] : []), ...(values.agent.compileCacheHostPath ? [values.agent.compileCacheHostPath] : [])].sort();
    expect(hostPaths).toEqual(expected);
    // never all of the host's BPF filesystem (or a directory above it): other
    // programs' pins (Cilium's, systemd's) are not the agent's to see
    for (const p of hostPaths) expect(['/', '/sys', '/sys/fs', '/sys/fs/bpf'], p).not.toContain(p.replace(/\/+$/, '') || '/');
    expect(values.agent.pinRootHostPath.startsWith('/sys/fs/bpf/')).toBe(true);
    // the bpffs init container checks (or mounts) the host's BPF filesystem
    const init = container(ds, 'bpffs');
    if (values.agent.mountBpffs) {
      expect(init.command?.join(' ')).toContain(`mkdir -p ${values.agent.pinRootHostPath}`);
      expect(init.volumeMounts ?? []).toEqual([]);
    } else {
      expect(init.command?.join(' ')).toContain(`stat -f -c %T ${values.agent.pinRoot}`);
      expect(init.volumeMounts).toEqual([{ name: 'bpffs', mountPath: values.agent.pinRoot, readOnly: true }]);
    }
  });

  it("grants the agent exactly the capabilities docs/security.md's table lists, never SYS_ADMIN by default", () => {
    expect(AGENT_CAPABILITIES_DOCUMENTED).not.toContain('SYS_ADMIN');
    expect([...CAPABILITY_ALLOW_LIST.agent!].sort()).toEqual([...AGENT_CAPABILITIES_DOCUMENTED].sort());
  });

  it('runs the controller replicated with leader election and a disruption budget', () => {
    const values = r().values as { controller: { replicas: number } };
    const d = find(r().objects, 'Deployment', '-controller');
    expect((d.spec as { replicas: number }).replicas).toBe(values.controller.replicas);
    const c = container(d, 'controller');
    expect(c.args).toContain('--leader-elect=true');
    expect((c.env ?? []).find((e) => e.name === 'POD_NAMESPACE')?.valueFrom).toEqual({ fieldRef: { fieldPath: 'metadata.namespace' } });
    const pdb = r().objects.find((o) => o.kind === 'PodDisruptionBudget');
    if (values.controller.replicas > 1) expect((pdb!.spec as { minAvailable: number }).minAvailable).toBe(1);
    else expect(pdb).toBeUndefined();
  });

  it('gives each role exactly the API access its code uses', () => {
    const objs = r().objects;
    for (const kind of ['ClusterRole', 'Role'] as const) {
      for (const o of objs.filter((x) => x.kind === kind)) {
        for (const rule of o.rules as Rule[]) {
          expect([...rule.apiGroups, ...rule.resources, ...rule.verbs], `${kind}/${o.metadata.name}`).not.toContain('*');
          expect(rule.resources, `${kind}/${o.metadata.name} must not read secrets`).not.toContain('secrets');
        }
      }
    }
    const controller = rules(objs, 'ClusterRole', '-controller');
    for (const res of [Resources.pods, Resources.nodes, Resources.namespaces, Resources.services, Resources.endpointSlices, PodtapResources.sniffPolicies]) {
      for (const verb of ['list', 'watch']) expect(grants(controller, res.group, res.plural, verb), `controller ${verb} ${res.plural}`).toBe(true);
    }
    // assignments live in the install namespace: no cluster-wide grant on them, for anyone
    const assignments = PodtapResources.sniffNodeAssignments.plural;
    for (const o of objs.filter((x) => x.kind === 'ClusterRole')) {
      expect(grants(o.rules as Rule[], 'podtap.io', assignments, 'get'), `ClusterRole/${o.metadata.name}`).toBe(false);
      expect(grants(o.rules as Rule[], 'podtap.io', `${assignments}/status`, 'update'), `ClusterRole/${o.metadata.name}`).toBe(false);
    }
    expect(grants(controller, 'podtap.io', 'sniffpolicies/status', 'patch')).toBe(true);
    expect(grants(controller, 'podtap.io', 'sniffpolicies', 'update')).toBe(false);
    expect(grants(controller, '', 'events', 'create')).toBe(true);
    const own = rules(objs, 'Role', '-controller-install-namespace');
    expect(own).toEqual([
      { apiGroups: ['podtap.io'], resources: [assignments], verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'] },
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: ['podtap-controller'], verbs: ['get', 'update'] },
    ]);
    // the agent: assignments and their status, its own pod and DaemonSet; nothing else
    const agentName = find(objs, 'DaemonSet', '-agent').metadata.name;
    expect(rules(objs, 'Role', '-agent')).toEqual([
      { apiGroups: ['podtap.io'], resources: [assignments], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['podtap.io'], resources: [`${assignments}/status`], verbs: ['get', 'update', 'patch'] },
    ]);
    expect(rules(objs, 'Role', '-agent-uninstall-check')).toEqual([
      { apiGroups: [''], resources: ['pods'], verbs: ['get'] },
      { apiGroups: ['apps'], resources: ['daemonsets'], resourceNames: [agentName], verbs: ['get'] },
    ]);
    // the collector: with Kubernetes readers, create tokenreviews and
    // subjectaccessreviews (its reviews); with acceptAssignedOnly, read the
    // assignments in its own namespace; nothing else (no role, no token, without both)
    const values = r().values as { rbac: { aggregateToEdit: boolean }; collector: { auth: { kubernetes: boolean }; acceptAssignedOnly: boolean } };
    const kubeAuth = values.collector.auth.kubernetes;
    const assigned = values.collector.acceptAssignedOnly;
    const collectorSa = find(objs, 'ServiceAccount', '-collector');
    expect(collectorSa.automountServiceAccountToken).toBe(false);
    expect((podOf(find(objs, 'Deployment', '-collector')) as { automountServiceAccountToken?: boolean }).automountServiceAccountToken).toBe(kubeAuth || assigned);
    const bindings = objs.filter((o) => (o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding') && (o.subjects as { name: string }[]).some((s) => s.name === collectorSa.metadata.name));
    const granted = bindings.map((b) => {
      const ref = b.roleRef as { kind: string; name: string };
      return { binding: b.kind, namespace: b.metadata.namespace, rules: objs.find((o) => o.kind === ref.kind && o.metadata.name === ref.name)!.rules };
    });
    expect(granted).toEqual([
      ...(kubeAuth
        ? [{ binding: 'ClusterRoleBinding', namespace: undefined, rules: [
            { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
            { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] },
          ] }]
        : []),
      ...(assigned ? [{ binding: 'RoleBinding', namespace: set.release.namespace, rules: [{ apiGroups: ['podtap.io'], resources: [assignments], verbs: ['get', 'list', 'watch'] }] }] : []),
    ]);
    const args = container(find(objs, 'Deployment', '-collector'), 'collector').args ?? [];
    expect(args.filter((a) => a.startsWith('--assignments-namespace') || a.startsWith('--own-addresses'))).toEqual(
      assigned ? [`--assignments-namespace=${set.release.namespace}`, '--own-addresses=$(POD_IPS)'] : [],
    );
    // creating SniffPolicies and reading their captures (the collector's
    // review: CAPTURE_ACCESS) is aggregated into edit/admin only on request,
    // never into view; reading captures alone is a role to bind
    const captures = `${CAPTURE_ACCESS.resource}/${CAPTURE_ACCESS.subresource}`;
    const edit = objs.find((o) => o.kind === 'ClusterRole' && o.metadata.labels?.['rbac.authorization.k8s.io/aggregate-to-edit'] && grants(o.rules as Rule[], 'podtap.io', 'sniffpolicies', 'create'));
    expect(Boolean(edit)).toBe(values.rbac.aggregateToEdit);
    if (edit) expect(grants(edit.rules as Rule[], CAPTURE_ACCESS.group, captures, CAPTURE_ACCESS.verb)).toBe(true);
    for (const o of objs.filter((x) => x.kind === 'ClusterRole' && x.metadata.labels?.['rbac.authorization.k8s.io/aggregate-to-view'])) {
      expect((o.rules as Rule[]).some((rule) => rule.resources.includes(captures)), `${o.metadata.name} aggregated into view`).toBe(false);
    }
    expect(rules(objs, 'ClusterRole', '-captures')).toEqual([{ apiGroups: [CAPTURE_ACCESS.group], resources: [captures], verbs: [CAPTURE_ACCESS.verb] }]);
  });

  it("gives the controller and the admission policy the same destinations: by default only the install's collector", () => {
    const objs = r().objects;
    const values = r().values as { destinations: { installCollector: boolean; services: string[]; cidrs: string[] }; collector: { enabled: boolean } };
    const collectorSvc = objs.find((o) => o.kind === 'Service' && o.metadata.name.endsWith('-collector'));
    const services = [...(values.destinations.installCollector && collectorSvc ? [`${set.release.namespace}/${collectorSvc.metadata.name}`] : []), ...values.destinations.services];
    const args = container(find(objs, 'Deployment', '-controller'), 'controller').args ?? [];
    expect(args).toContain(`--allowed-collector-service=${services.join(',')}`);
    expect(args).toContain(`--allowed-collector-cidr=${values.destinations.cidrs.join(',')}`);
    // ValidatingAdmissionPolicy v1 is Kubernetes 1.30+: before, the controller's check is all there is
    const args0 = set.options.extraArgs ?? [];
    const kube = args0.includes('-kube-version') ? args0[args0.indexOf('-kube-version') + 1]! : 'v1.30.0';
    if (Number(/^v1\.(\d+)/.exec(kube)![1]) < 30) {
      expect(objs.filter((o) => o.kind.startsWith('ValidatingAdmissionPolicy'))).toEqual([]);
      return;
    }
    const vap = find(objs, 'ValidatingAdmissionPolicy', '-destinations').spec as { variables: { name: string; expression: string }[]; failurePolicy: string };
    expect(vap.failurePolicy).toBe('Fail');
    expect(JSON.parse(vap.variables.find((v) => v.name === 'services')!.expression)).toEqual(services);
    expect(JSON.parse(vap.variables.find((v) => v.name === 'cidrs')!.expression)).toEqual(values.destinations.cidrs);
    for (const suffix of ['-destinations', '-agent-node']) {
      expect(find(objs, 'ValidatingAdmissionPolicyBinding', suffix).spec).toEqual({ policyName: find(objs, 'ValidatingAdmissionPolicy', suffix).metadata.name, validationActions: ['Deny'] });
    }
  });

  it('exposes the collector (tunnel over UDP, HTTP over TCP) and fences it with a NetworkPolicy', () => {
    const values = r().values as {
      collector: {
        tunnelPort: number; httpPort: number; auth: { kubernetes: boolean }; acceptAssignedOnly: boolean; token: { create: boolean; existingSecret: string }; persistence: { hostPath: string };
        networkPolicy: { enabled: boolean; nodeCIDRs: string[]; httpFrom: unknown[]; apiServerTo: unknown[]; apiServerPorts: number[] };
      };
    };
    const c = values.collector;
    const objs = r().objects;
    const svc = find(objs, 'Service', '-collector');
    expect((svc.spec as { ports: unknown[] }).ports).toEqual([
      { name: 'tunnel', port: c.tunnelPort, targetPort: 'tunnel', protocol: 'UDP' },
      { name: 'http', port: c.httpPort, targetPort: 'http', protocol: 'TCP' },
    ]);
    const np = objs.find((o) => o.kind === 'NetworkPolicy');
    if (!c.networkPolicy.enabled) expect(np).toBeUndefined();
    else {
      expect(np!.spec).toMatchObject({
        policyTypes: ['Ingress', 'Egress'],
        ingress: [
          { from: c.networkPolicy.nodeCIDRs.map((cidr) => ({ ipBlock: { cidr } })), ports: [{ port: c.tunnelPort, protocol: 'UDP' }] },
          { from: c.networkPolicy.httpFrom, ports: [{ port: c.httpPort, protocol: 'TCP' }] },
        ],
        // nothing out but the reviews, to the API server
        egress: c.auth.kubernetes || c.acceptAssignedOnly
          ? [{ ...(c.networkPolicy.apiServerTo.length ? { to: c.networkPolicy.apiServerTo } : {}), ports: c.networkPolicy.apiServerPorts.map((port) => ({ port, protocol: 'TCP' })) }]
          : [],
      });
      expect((np!.spec as { egress: unknown[] }).egress).toHaveLength(c.auth.kubernetes || c.acceptAssignedOnly ? 1 : 0);
    }
    const d = find(objs, 'Deployment', '-collector');
    expect((d.spec as { strategy: unknown }).strategy).toEqual({ type: 'Recreate' });
    const col = container(d, 'collector');
    const tokenEnv = (col.env ?? []).find((e) => e.name === 'PODTAP_TOKEN');
    const secretName = c.token.existingSecret || find(objs, 'Secret', '-collector-token').metadata.name;
    expect(tokenEnv?.valueFrom).toEqual({ secretKeyRef: { name: secretName, key: 'token' } });
    expect(objs.some((o) => o.kind === 'Secret')).toBe(!c.token.existingSecret);
    const vols = podOf(d).volumes as { name: string; hostPath?: { path: string }; persistentVolumeClaim?: unknown }[];
    const captures = vols.find((v) => v.name === 'captures')!;
    if (c.persistence.hostPath) expect(captures.hostPath?.path).toBe(c.persistence.hostPath);
    else expect(captures.persistentVolumeClaim).toBeTruthy();
    expect(objs.some((o) => o.kind === 'PersistentVolumeClaim')).toBe(!c.persistence.hostPath);
    // the HTTP API wants the api-token of the same Secret
    expect(col.args).toContain('--auth-token-file=/etc/podtap/api-token/api-token');
    expect(col.args?.includes('--kube-auth')).toBe(c.auth.kubernetes);
    const apiVol = podOf(d).volumes!.find((v) => v.name === 'api-token') as { secret?: { secretName: string; items: unknown } };
    expect(apiVol.secret).toMatchObject({ secretName, items: [{ key: 'api-token', path: 'api-token' }] });
    // the agents present the same token
    const agent = container(find(objs, 'DaemonSet', '-agent'), 'agent');
    expect(agent.args).toContain('--token-file=/etc/podtap/collector-token/token');
    const tokenVol = podOf(find(objs, 'DaemonSet', '-agent')).volumes!.find((v) => v.name === 'collector-token') as { secret?: { secretName: string } };
    expect(tokenVol.secret?.secretName).toBe(secretName);
  });

  it('renders NOTES.txt with the next commands', async () => {
    const notes = (await render({ ...set.options, notes: true })).text;
    expect(notes).toContain(`kubectl -n ${set.release.namespace} rollout status daemonset/`);
    expect(notes).toContain(`helm test ${set.release.name} -n ${set.release.namespace}`);
    expect(notes).toContain('kubectl podtap capture -n <namespace> <pod> --wireshark');
    expect(notes).not.toContain('kubectl cp');
    // a release whose collector is not podtap-system/podtap-collector says how to reach it
    if (set.release.namespace !== 'podtap-system') expect(notes).toContain(`--collector-namespace ${set.release.namespace}`);
    expect(notes).toContain('podtap cleanup --check');
  });
});

describe('chart', () => {
  it('uses no field Kubernetes does not have (strict field validation, from the OpenAPI types)', async () => {
    const all = [...renders.entries()].flatMap(([desc, r]) =>
      r.objects.filter((o) => !PROMETHEUS_OPERATOR_KINDS.includes(o.kind)).map((obj) => ({ label: `[${desc}] ${obj.kind}/${obj.metadata.name}`, obj })),
    );
    expect(all.length).toBeGreaterThan(40);
    expect(await unknownFieldErrors(all)).toEqual([]);
  });

  it('catches an unknown field (the check can fail)', async () => {
    const bad = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'x' }, spec: { ports: [{ port: 1, protocoll: 'UDP' }] } } as unknown as K8sObject;
    const errors = await unknownFieldErrors([{ label: 'Service/x', obj: bad }]);
    expect(errors.join('\n')).toMatch(/Service\/x: .*protocoll/);
  });

  it('renders a ServiceMonitor that scrapes the metrics Services', () => {
    const r = renders.get(VALUE_SETS[1]!.description)!;
    const sm = find(r.objects, 'ServiceMonitor', 'podtap');
    expect(sm.apiVersion).toBe('monitoring.coreos.com/v1');
    const spec = sm.spec as { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; interval: string }[] };
    expect(spec.endpoints[0]).toMatchObject({ port: 'metrics', interval: '15s' });
    const scraped = r.objects.filter((o) => o.kind === 'Service' && Object.entries(spec.selector.matchLabels).every(([k, v]) => o.metadata.labels?.[k] === v));
    expect(scraped.map((s) => s.metadata.name).sort()).toEqual(['podtap-agent-metrics', 'podtap-collector-metrics', 'podtap-controller-metrics']);
    for (const s of scraped) expect((s.spec as { ports: { name: string }[] }).ports[0]!.name).toBe('metrics');
  });

  it.each([
    { description: 'auto leaves the choice to the collector', input: 'auto', expected: undefined },
    { description: 'a number is passed on', input: 3, expected: '--workers=3' },
    { description: 'zero (in-process ingest) too', input: 0, expected: '--workers=0' },
  ])('collector.workers: $description', async ({ input, expected }) => {
    const r = await render({ values: { collector: { workers: input } } });
    const dep = find(r.objects, 'Deployment', '-collector');
    const args = (dep.spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0]!.args;
    expect(args.find((a) => a.startsWith('--workers'))).toBe(expected);
  });

  it.each([
    { description: 'the defaults: 50,000 packets/s for the node, no byte budget, 32 sessions', input: {}, expected: ['--node-max-packets-per-second=50000', '--node-max-bytes-per-second=0', '--max-sessions=32'] },
    {
      description: 'an admin\'s own, the largest written whole (no exponent)',
      input: { agent: { nodeMaxRate: { packetsPerSecond: 0, bytesPerSecond: 10_000_000_000 }, maxSessions: 0 } },
      expected: ['--node-max-packets-per-second=0', '--node-max-bytes-per-second=10000000000', '--max-sessions=0'],
    },
  ])("agent's node budget and session cap: $description", async ({ input, expected }) => {
    const r = await render({ values: input });
    expect(validateValues(r.values)).toBe(true);
    const args = container(find(r.objects, 'DaemonSet', '-agent'), 'agent').args ?? [];
    expect(args.filter((a) => /^--(node-max|max-sessions)/.test(a))).toEqual(expected);
    // and the agent takes them as they are
    const { parseAgentArgs } = await import('../../../src/agent/cli.ts');
    const parsed = parseAgentArgs(expected);
    expect(parsed && [parsed.nodeBudget.packetsPerSecond, parsed.nodeBudget.bytesPerSecond, parsed.maxSessions]).toEqual(expected.map((a) => Number(a.split('=')[1])));
  });

  const refusals: { description: string; input: Record<string, unknown>; expected: RegExp }[] = [
    { description: 'a negative node budget', input: { agent: { nodeMaxRate: { packetsPerSecond: -1, bytesPerSecond: 0 } } }, expected: /minimum|nodeMaxRate/ },
    { description: 'a node budget past what a token bucket holds', input: { agent: { nodeMaxRate: { packetsPerSecond: 0, bytesPerSecond: 10_000_000_001 } } }, expected: /maximum|nodeMaxRate/ },
    { description: 'a fractional session cap', input: { agent: { maxSessions: 1.5 } }, expected: /integer|maxSessions/ },
    { description: 'a session cap past the most a node takes', input: { agent: { maxSessions: 5000 } }, expected: /maximum|maxSessions/ },
    { description: 'a misspelt key', input: { agent: { netnsFalback: true } }, expected: /additionalProperties|netnsFalback/ },
    { description: 'no replicas', input: { controller: { replicas: 0 } }, expected: /minimum|replicas/ },
    { description: 'a container without limits', input: { collector: { resources: { limits: null } } }, expected: /limits/ },
    { description: 'an unknown tunnel', input: { collector: { tunnel: 'gre' } }, expected: /enum|tunnel/ },
    { description: 'workers neither a number nor auto', input: { collector: { workers: 'many' } }, expected: /oneOf|const|integer/ },
  ];
  it.each(refusals)('values.schema.json refuses $description', async ({ input, expected }) => {
    const r = await render({ values: input });
    expect(validateValues(r.values)).toBe(false);
    expect(JSON.stringify(validateValues.errors)).toMatch(expected);
  });

  it('adds extra arguments, environment, volumes and mounts to each role, after its own', async () => {
    const extra = (role: string) => ({
      extraArgs: [`--x-${role}`],
      extraEnv: [{ name: `X_${role.toUpperCase()}`, value: '1' }],
      extraVolumes: [{ name: `x-${role}`, emptyDir: {} }],
      extraVolumeMounts: [{ name: `x-${role}`, mountPath: `/x/${role}` }],
    });
    const r = await render({ values: { controller: extra('controller'), agent: extra('agent'), collector: extra('collector') } });
    for (const [kind, role] of [['Deployment', 'controller'], ['DaemonSet', 'agent'], ['Deployment', 'collector']] as const) {
      const w = find(r.objects, kind, `-${role}`);
      const c = container(w, role);
      expect(c.args?.at(-1), role).toBe(`--x-${role}`);
      expect(c.args?.[0], role).toBe(role);
      expect((c.env ?? []).map((e) => e.name), role).toContain(`X_${role.toUpperCase()}`);
      expect((c.volumeMounts ?? []).find((m) => m.name === `x-${role}`)?.mountPath, role).toBe(`/x/${role}`);
      expect((podOf(w).volumes ?? []).some((v) => v.name === `x-${role}`), role).toBe(true);
    }
  });

  it('accepts global values, as a subchart gets them from its parent', async () => {
    const r = await render({ values: { global: { imageRegistry: 'registry.example.com', storageClass: 'fast' } } });
    expect(validateValues(r.values), JSON.stringify(validateValues.errors)).toBe(true);
  });

  it('refuses a NetworkPolicy without node CIDRs (an empty "from" would admit everyone)', async () => {
    await expect(render({ values: { collector: { networkPolicy: { nodeCIDRs: [] } } } })).rejects.toThrow(/collector\.networkPolicy\.nodeCIDRs is empty/);
  });

  describe('refuses at install a capture claim that no StorageClass would bind (it would stay Pending)', () => {
    const ns = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'kube-system' } };
    const sc = (name: string, isDefault: boolean) => ({
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: { name, ...(isDefault ? { annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } } : {}) },
      provisioner: 'example.invalid/none',
    });
    const cases = [
      { description: 'no cluster (helm template): rendered', input: { cluster: undefined, values: {} }, expected: 'claim' },
      { description: 'a cluster without StorageClasses: refused', input: { cluster: [ns], values: {} }, expected: 'refused' },
      { description: 'a cluster with only a non-default class: refused', input: { cluster: [ns, sc('slow', false)], values: {} }, expected: 'refused' },
      { description: 'a cluster with a default class: rendered', input: { cluster: [ns, sc('slow', false), sc('fast', true)], values: {} }, expected: 'claim' },
      { description: 'no default, but a class named: rendered', input: { cluster: [ns], values: { collector: { persistence: { storageClass: 'slow' } } } }, expected: 'claim' },
      { description: 'no default, persistence off: an emptyDir', input: { cluster: [ns], values: { collector: { persistence: { enabled: false } } } }, expected: 'no claim' },
      { description: 'no default, an existing claim: used', input: { cluster: [ns], values: { collector: { persistence: { existingClaim: 'mine' } } } }, expected: 'no claim' },
    ] as const;
    it.each(cases)('$description', async ({ input, expected }) => {
      const dir = await mkdtemp(join(tmpdir(), 'podtap-lookup-'));
      try {
        const extraArgs: string[] = [];
        if (input.cluster) {
          await writeFile(join(dir, 'cluster.yaml'), input.cluster.map((o) => stringify(o)).join('---\n'));
          extraArgs.push('-cluster', join(dir, 'cluster.yaml'));
        }
        const r = render({ values: input.values, extraArgs });
        if (expected === 'refused') {
          await expect(r).rejects.toThrow(/collector\.persistence: this cluster has no default StorageClass.*collector\.persistence\.enabled=false/);
          return;
        }
        const claims = (await r).objects.filter((o) => o.kind === 'PersistentVolumeClaim');
        expect(claims.length).toBe(expected === 'claim' ? 1 : 0);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  it('makes random collector tokens (tunnel and API) per install and keeps them on upgrade', async () => {
    const tokens = async (cluster?: string) => {
      const r = await render({ extraArgs: cluster ? ['-cluster', cluster, '-is-upgrade'] : [] });
      const s = find(r.objects, 'Secret', '-collector-token');
      return { secret: s, data: s.data as { token: string; 'api-token': string } };
    };
    const a = await tokens();
    const b = await tokens();
    for (const t of [a.data.token, a.data['api-token']]) expect(Buffer.from(t, 'base64').toString()).toMatch(/^[A-Za-z0-9]{48}$/);
    expect(a.data.token).not.toBe(a.data['api-token']);
    expect(a.data.token).not.toBe(b.data.token);
    const dir = await mkdtemp(join(tmpdir(), 'podtap-lookup-'));
    try {
      await writeFile(join(dir, 'cluster.yaml'), stringify(a.secret));
      expect((await tokens(join(dir, 'cluster.yaml'))).data).toEqual(a.data);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('deletes the agents first on uninstall (a pre-delete hook), so they detach while their account still works', () => {
    const objs = renders.get(VALUE_SETS[0]!.description)!.objects;
    const hooks = objs.filter((o) => o.metadata.annotations?.['helm.sh/hook'] === 'pre-delete');
    expect(hooks.map((o) => o.kind).sort()).toEqual(['Job', 'Role', 'RoleBinding', 'ServiceAccount']);
    expect(rules(objs, 'Role', '-uninstall')).toEqual([{ apiGroups: ['apps'], resources: ['daemonsets'], resourceNames: ['podtap-agent'], verbs: ['get', 'delete'] }]);
    const job = find(objs, 'Job', '-uninstall');
    expect((job.spec as { activeDeadlineSeconds: number }).activeDeadlineSeconds).toBeGreaterThan(60);
  });

  it("brings the CRDs to the new version's before an upgrade (podtap crds apply: get, update, and create by apply, of this version's CRDs only)", async () => {
    const objs = renders.get(VALUE_SETS[0]!.description)!.objects;
    const hooks = objs.filter((o) => o.metadata.annotations?.['helm.sh/hook'] === 'pre-upgrade');
    expect(hooks.map((o) => o.kind).sort()).toEqual(['ClusterRole', 'ClusterRoleBinding', 'Job', 'ServiceAccount']);
    const names = (buildCrds() as K8sObject[]).map((c) => c.metadata.name);
    expect(rules(objs, 'ClusterRole', '-crd-upgrade')).toEqual([
      { apiGroups: ['apiextensions.k8s.io'], resources: ['customresourcedefinitions'], resourceNames: names, verbs: ['get', 'update', 'patch', 'create'] },
    ]);
    const c = container(find(objs, 'Job', '-crd-upgrade'), 'crds');
    expect([...(c.command ?? []), ...(c.args ?? [])]).toEqual(['podtap', 'crds', 'apply']);
    const off = await render({ values: { crds: { upgradeOnHelmUpgrade: false } } });
    expect(off.objects.filter((o) => o.metadata.annotations?.['helm.sh/hook']?.includes('upgrade'))).toEqual([]);
  });

  it("deletes podtap 0.1's CRD after an upgrade once the agents have rolled (podtap crds prune: get and delete of that CRD, get of the agents' DaemonSet)", () => {
    const objs = renders.get(VALUE_SETS[0]!.description)!.objects;
    const hooks = objs.filter((o) => o.metadata.annotations?.['helm.sh/hook'] === 'post-upgrade');
    expect(hooks.map((o) => o.kind).sort()).toEqual(['ClusterRole', 'ClusterRoleBinding', 'Job', 'Role', 'RoleBinding', 'ServiceAccount']);
    expect(rules(objs, 'ClusterRole', '-crd-prune')).toEqual([
      { apiGroups: ['apiextensions.k8s.io'], resources: ['customresourcedefinitions'], resourceNames: [...OBSOLETE_CRDS], verbs: ['get', 'delete'] },
    ]);
    const agent = find(objs, 'DaemonSet', '-agent').metadata;
    expect(rules(objs, 'Role', '-crd-prune')).toEqual([{ apiGroups: ['apps'], resources: ['daemonsets'], resourceNames: [agent.name], verbs: ['get'] }]);
    const c = container(find(objs, 'Job', '-crd-prune'), 'crds');
    expect([...(c.command ?? []), ...(c.args ?? [])]).toEqual(['podtap', 'crds', 'prune', `--rolled-out=${agent.namespace}/${agent.name}`]);
  });

  it('helm test captures end to end with the plugin the image carries, its flags the plugin\'s own', async () => {
    const objs = renders.get(VALUE_SETS[0]!.description)!.objects;
    const tests = objs.filter((o) => o.metadata.annotations?.['helm.sh/hook'] === 'test');
    expect(tests.map((o) => o.kind).sort()).toEqual(['Pod', 'Role', 'RoleBinding', 'ServiceAccount']);
    const pod = tests.find((o) => o.kind === 'Pod')!;
    expect(pod.metadata.labels?.['podtap.io/collector-client']).toBe('true');
    const script = (pod.spec as PodSpec).containers[0]!.args![0]!;
    const sh = await execa('sh', ['-n', '-c', script], { reject: false, all: true });
    expect(sh.exitCode, sh.all).toBe(0);
    expect(script).toContain('/opt/podtap/dist/cli/kubectl-podtap.js capture');
    const { PLUGIN_HELP } = await import('../../../src/plugin/plugin.ts');
    for (const flag of script.match(/--[a-z][a-z-]+(?==| )/g)!.filter((f) => f !== '--input-type')) expect(PLUGIN_HELP, flag).toContain(flag);
    expect(rules(objs, 'Role', '-test')).toEqual([
      { apiGroups: ['podtap.io'], resources: ['sniffpolicies'], verbs: ['create', 'get', 'delete'] },
      { apiGroups: [''], resources: ['pods'], verbs: ['get'] },
    ]);
  });

  it('passes the roles only flags that `podtap <role> --help` documents', async () => {
    const objs = renders.get(VALUE_SETS[0]!.description)!.objects;
    const node = join(ROOT, 'node_modules/.bin/node');
    for (const w of workloads(objs)) {
      for (const c of w.pod.containers) {
        if (c.command?.[0] !== 'podtap') continue;
        const [role, ...args] = c.args ?? [];
        const help = await execa(node, [join(ROOT, 'src/cli/main.ts'), role!, '--help'], { reject: false, all: true });
        expect(help.exitCode, `podtap ${role} --help:\n${help.all}`).toBe(0);
        for (const a of args) {
          // a subcommand (podtap crds apply) is documented as a word of the usage
          if (!a.startsWith('-')) {
            expect(help.stdout, `podtap ${role} --help does not name ${a}`).toMatch(new RegExp(`\\b${a}\\b`));
            continue;
          }
          const flag = /^(--[a-z0-9-]+)/.exec(a)?.[1];
          expect(flag, a).toBeTruthy();
          expect(help.stdout, `podtap ${role} has no ${flag}`).toContain(flag!);
        }
      }
    }
  });
});
