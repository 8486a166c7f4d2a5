/**
 * The built-in resources the embedded API serves. They are stored without
 * schema validation (no Go types here), but scope, names, short names,
 * categories, subresources, field selectors, status handling and printed
 * columns follow kube-apiserver 1.32 so kubectl and informers behave as
 * against a real cluster.
 */
import type { Printer, ResourceDef, ScalePaths } from './registry.ts';
import { standardVerbs } from './registry.ts';
import { age, ageColumn, col, mapText, nameColumn } from './table.ts';
import { getPath, isPlainObject, type KubeObject } from './objects.ts';
import type { FieldError } from './errors.ts';

type Spec = Partial<ResourceDef> & Pick<ResourceDef, 'group' | 'version' | 'resource' | 'kind'>;

function builtin(s: Spec): ResourceDef {
  const singular = s.singular ?? s.kind.toLowerCase();
  return {
    listKind: `${s.kind}List`,
    singular,
    namespaced: true,
    shortNames: [],
    categories: [],
    verbs: standardVerbs,
    status: false,
    storage: `${s.group}/${s.resource}`,
    generation: false,
    statusOnCreate: 'reset',
    nameRule: 'subdomain',
    fields: {},
    strategicMerge: true,
    returnDeletedObject: false,
    ...s,
  };
}

const str = (v: unknown): string | undefined =>
  typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : undefined;
const field =
  (...path: string[]) =>
  (o: KubeObject): string | undefined =>
    str(getPath(o, path));

const none = (v: unknown): string => (v === undefined || v === null || v === '' ? '<none>' : String(v));
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

function simplePrinter(extra: { def: ReturnType<typeof col>; cell: (o: KubeObject, now: number) => unknown }[], withAge = true): Printer {
  return {
    columns: [nameColumn, ...extra.map((e) => e.def), ...(withAge ? [ageColumn] : [])],
    cells: (o, now) => [
      o.metadata.name,
      ...extra.map((e) => e.cell(o, now)),
      ...(withAge ? [age(o.metadata.creationTimestamp, now)] : []),
    ],
  };
}

// --- pods -----------------------------------------------------------------

interface ContainerStatus {
  ready?: boolean;
  restartCount?: number;
  state?: { waiting?: { reason?: string }; terminated?: { reason?: string; exitCode?: number; signal?: number } };
}

/** The STATUS column as kubectl's printPod computes it, without init-container detail. */
function podStatus(o: KubeObject): string {
  const status = (o.status ?? {}) as { phase?: string; reason?: string; containerStatuses?: ContainerStatus[] };
  let reason = status.reason || status.phase || 'Unknown';
  for (const cs of [...arr(status.containerStatuses)].reverse() as ContainerStatus[]) {
    if (cs.state?.waiting?.reason) reason = cs.state.waiting.reason;
    else if (cs.state?.terminated?.reason) reason = cs.state.terminated.reason;
    else if (cs.state?.terminated) {
      reason = cs.state.terminated.signal
        ? `Signal:${cs.state.terminated.signal}`
        : `ExitCode:${cs.state.terminated.exitCode ?? 0}`;
    }
  }
  if (o.metadata.deletionTimestamp) reason = status.reason === 'NodeLost' ? 'Unknown' : 'Terminating';
  return reason;
}

const podPrinter: Printer = {
  columns: [
    nameColumn,
    col('Ready', 'string', 'The aggregate readiness state of this pod for accepting traffic.'),
    col('Status', 'string', 'The aggregate status of the containers in this pod.'),
    col('Restarts', 'string', 'The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.'),
    ageColumn,
    col('IP', 'string', 'IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.', 1),
    col('Node', 'string', 'NodeName is a request to schedule this pod onto a specific node.', 1),
    col('Nominated Node', 'string', 'nominatedNodeName is set only when this pod preempts other pods on the node.', 1),
    col('Readiness Gates', 'string', 'If specified, all readiness gates will be evaluated for pod readiness.', 1),
  ],
  cells: (o, now) => {
    const spec = (o.spec ?? {}) as { containers?: unknown[]; nodeName?: string; readinessGates?: { conditionType: string }[] };
    const status = (o.status ?? {}) as { containerStatuses?: ContainerStatus[]; podIP?: string; nominatedNodeName?: string };
    const cs = arr(status.containerStatuses) as ContainerStatus[];
    const ready = cs.filter((c) => c.ready).length;
    const restarts = cs.reduce((n, c) => n + (c.restartCount ?? 0), 0);
    const gates = arr(spec.readinessGates);
    return [
      o.metadata.name,
      `${ready}/${arr(spec.containers).length}`,
      podStatus(o),
      String(restarts),
      age(o.metadata.creationTimestamp, now),
      none(status.podIP),
      none(spec.nodeName),
      none(status.nominatedNodeName),
      gates.length ? `0/${gates.length}` : '<none>',
    ];
  },
};

function defaultPod(o: KubeObject): void {
  const spec = (o.spec ??= {}) as Record<string, unknown>;
  spec.restartPolicy ??= 'Always';
  spec.terminationGracePeriodSeconds ??= 30;
  spec.dnsPolicy ??= 'ClusterFirst';
  spec.schedulerName ??= 'default-scheduler';
  spec.securityContext ??= {};
  spec.enableServiceLinks ??= true;
  spec.priority ??= 0;
  for (const key of ['containers', 'initContainers']) {
    for (const c of arr(spec[key])) {
      if (!isPlainObject(c)) continue;
      const image = typeof c.image === 'string' ? c.image : '';
      const tag = image.includes('@') ? 'digest' : (/:([^/:]+)$/.exec(image)?.[1] ?? 'latest');
      c.imagePullPolicy ??= tag === 'latest' ? 'Always' : 'IfNotPresent';
      c.terminationMessagePath ??= '/dev/termination-log';
      c.terminationMessagePolicy ??= 'File';
      c.resources ??= {};
      for (const p of arr(c.ports)) if (isPlainObject(p)) p.protocol ??= 'TCP';
    }
  }
}

/**
 * The pod's QoS class as the API server sets it on create. Quantities are
 * compared as written ("1" and "1000m" differ here), which is close enough
 * for a stand-in.
 */
export function qosClass(o: KubeObject): string {
  const spec = (o.spec ?? {}) as { containers?: unknown[]; initContainers?: unknown[] };
  let any = false;
  let guaranteed = true;
  for (const c of [...arr(spec.containers), ...arr(spec.initContainers)]) {
    const res = (isPlainObject(c) && isPlainObject(c.resources) ? c.resources : {}) as { requests?: Record<string, unknown>; limits?: Record<string, unknown> };
    const req = res.requests ?? {};
    const lim = res.limits ?? {};
    for (const r of ['cpu', 'memory']) {
      if (req[r] !== undefined || lim[r] !== undefined) any = true;
      if (lim[r] === undefined || (req[r] !== undefined && req[r] !== lim[r])) guaranteed = false;
    }
  }
  if (!any) return 'BestEffort';
  return guaranteed ? 'Guaranteed' : 'Burstable';
}

const podUpdateRule =
  'pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)';

/** A pod's spec is fixed at creation but for a few fields (ValidatePodUpdate). */
function validatePodUpdate(o: KubeObject, old: KubeObject | undefined): FieldError[] {
  if (!old) return [];
  const next = (o.spec ?? {}) as Record<string, unknown>;
  const prev = (old.spec ?? {}) as Record<string, unknown>;
  const masked = structuredClone(prev);
  for (const key of ['containers', 'initContainers']) {
    const a = arr(masked[key]);
    const b = arr(next[key]);
    if (a.length === b.length) a.forEach((c, i) => isPlainObject(c) && isPlainObject(b[i]) && (c.image = b[i].image));
  }
  for (const key of ['activeDeadlineSeconds', 'terminationGracePeriodSeconds']) {
    if (next[key] === undefined) delete masked[key];
    else masked[key] = next[key];
  }
  const before = arr(prev.tolerations);
  const after = arr(next.tolerations);
  const onlyAdded = before.every((t) => after.some((u) => JSON.stringify(u) === JSON.stringify(t)));
  if (onlyAdded) {
    if (next.tolerations === undefined) delete masked.tolerations;
    else masked.tolerations = next.tolerations;
  }
  if (JSON.stringify(sortKeys(masked)) === JSON.stringify(sortKeys(next))) return [];
  return [{ type: 'FieldValueForbidden', field: 'spec', detail: podUpdateRule }];
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (!isPlainObject(v)) return v;
  return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
}

/** apps/v1 workloads: the selector is immutable. */
function validateSelectorUpdate(o: KubeObject, old: KubeObject | undefined): FieldError[] {
  if (!old) return [];
  const a = getPath(old, ['spec', 'selector']);
  const b = getPath(o, ['spec', 'selector']);
  if (JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b))) return [];
  return [{ type: 'FieldValueInvalid', field: 'spec.selector', value: b, hasValue: true, detail: 'field is immutable' }];
}

/** ConfigMaps and Secrets marked immutable keep their data. */
function validateImmutableData(o: KubeObject, old: KubeObject | undefined): FieldError[] {
  if (!old || old.immutable !== true) return [];
  const errs: FieldError[] = [];
  if (o.immutable !== true) errs.push({ type: 'FieldValueForbidden', field: 'immutable', detail: 'field is immutable when `immutable` is set' });
  for (const key of ['data', 'binaryData', 'stringData', 'type']) {
    if (JSON.stringify(sortKeys(o[key])) !== JSON.stringify(sortKeys(old[key]))) {
      errs.push({ type: 'FieldValueForbidden', field: key, detail: 'field is immutable when `immutable` is set' });
    }
  }
  return errs;
}

// --- nodes ----------------------------------------------------------------

const nodePrinter: Printer = {
  columns: [
    nameColumn,
    col('Status', 'string', 'The status of the node'),
    col('Roles', 'string', 'The roles of the node'),
    ageColumn,
    col('Version', 'string', 'Kubelet Version reported by the node.'),
    col('Internal-IP', 'string', 'List of internal IPs.', 1),
    col('External-IP', 'string', 'List of external IPs.', 1),
    col('OS-Image', 'string', 'OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).', 1),
    col('Kernel-Version', 'string', "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", 1),
    col('Container-Runtime', 'string', 'Container runtime version reported by the node through runtime remote API (e.g. containerd://1.4.2).', 1),
  ],
  cells: (o, now) => {
    const status = (o.status ?? {}) as {
      conditions?: { type: string; status: string }[];
      addresses?: { type: string; address: string }[];
      nodeInfo?: Record<string, string>;
    };
    const ready = arr(status.conditions).find((c) => (c as { type: string }).type === 'Ready') as
      | { status: string }
      | undefined;
    let st = ready?.status === 'True' ? 'Ready' : ready ? 'NotReady' : 'Unknown';
    if ((o.spec as { unschedulable?: boolean } | undefined)?.unschedulable) st += ',SchedulingDisabled';
    const roles = Object.keys(o.metadata.labels ?? {})
      .filter((k) => k.startsWith('node-role.kubernetes.io/'))
      .map((k) => k.slice('node-role.kubernetes.io/'.length))
      .filter((r) => r !== '');
    const addr = (t: string) =>
      none(
        arr(status.addresses)
          .filter((a) => (a as { type: string }).type === t)
          .map((a) => (a as { address: string }).address)
          .join(','),
      );
    const info = status.nodeInfo ?? {};
    return [
      o.metadata.name,
      st,
      roles.length ? roles.sort().join(',') : '<none>',
      age(o.metadata.creationTimestamp, now),
      info.kubeletVersion ?? '',
      addr('InternalIP'),
      addr('ExternalIP'),
      none(info.osImage),
      none(info.kernelVersion),
      none(info.containerRuntimeVersion),
    ];
  },
};

// --- services -------------------------------------------------------------

const servicePrinter = simplePrinter([
  { def: col('Type', 'string', 'The type of service.'), cell: (o) => (o.spec as { type?: string } | undefined)?.type ?? 'ClusterIP' },
  { def: col('Cluster-IP', 'string', 'The cluster ip of the service.'), cell: (o) => none((o.spec as { clusterIP?: string } | undefined)?.clusterIP) },
  {
    def: col('External-IP', 'string', 'The external ip of the service.'),
    cell: (o) => {
      const ing = arr(getPath(o, ['status', 'loadBalancer', 'ingress'])).map(
        (i) => (i as { ip?: string; hostname?: string }).ip ?? (i as { hostname?: string }).hostname,
      );
      const ext = arr(getPath(o, ['spec', 'externalIPs']));
      const all = [...ing, ...ext].filter(Boolean);
      return all.length ? all.join(',') : (o.spec as { type?: string } | undefined)?.type === 'LoadBalancer' ? '<pending>' : '<none>';
    },
  },
  {
    def: col('Port(s)', 'string', 'The ports of the service.'),
    cell: (o) => {
      const ports = arr(getPath(o, ['spec', 'ports'])) as { port: number; nodePort?: number; protocol?: string }[];
      return ports.length
        ? ports.map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol ?? 'TCP'}`).join(',')
        : '<none>';
    },
  },
]);
servicePrinter.columns.push(col('Selector', 'string', 'The selector of the service.', 1));
{
  const cells = servicePrinter.cells;
  servicePrinter.cells = (o, now) => [...cells(o, now), mapText(getPath(o, ['spec', 'selector']))];
}

// --- workloads ------------------------------------------------------------

const n = (v: unknown): number => (typeof v === 'number' ? v : 0);

function containersOf(o: KubeObject): { name: string; image: string }[] {
  return arr(getPath(o, ['spec', 'template', 'spec', 'containers'])) as { name: string; image: string }[];
}

function selectorText(o: KubeObject): string {
  const sel = getPath(o, ['spec', 'selector']);
  if (!isPlainObject(sel)) return '<none>';
  const parts: string[] = [];
  for (const [k, v] of Object.entries((sel.matchLabels as Record<string, string> | undefined) ?? {})) parts.push(`${k}=${v}`);
  for (const e of arr(sel.matchExpressions) as { key: string; operator: string; values?: string[] }[]) {
    const op = e.operator.toLowerCase();
    parts.push(e.values ? `${e.key} ${op} (${e.values.join(',')})` : op === 'exists' ? e.key : `!${e.key}`);
  }
  return parts.length ? parts.join(',') : '<none>';
}

function withWorkloadWide(p: Printer): Printer {
  return {
    columns: [
      ...p.columns,
      col('Containers', 'string', 'Names of each container in the template.', 1),
      col('Images', 'string', 'Images referenced by each container in the template.', 1),
      col('Selector', 'string', 'Label selector for pods.', 1),
    ],
    cells: (o, now) => [
      ...p.cells(o, now),
      containersOf(o).map((c) => c.name).join(','),
      containersOf(o).map((c) => c.image).join(','),
      selectorText(o),
    ],
  };
}

const deploymentPrinter = withWorkloadWide(
  simplePrinter([
    {
      def: col('Ready', 'string', 'Number of the pod with ready state'),
      cell: (o) => `${n(getPath(o, ['status', 'readyReplicas']))}/${n(getPath(o, ['spec', 'replicas']))}`,
    },
    { def: col('Up-to-date', 'integer', 'Total number of non-terminated pods targeted by this deployment that have the desired template spec.'), cell: (o) => n(getPath(o, ['status', 'updatedReplicas'])) },
    { def: col('Available', 'integer', 'Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.'), cell: (o) => n(getPath(o, ['status', 'availableReplicas'])) },
  ]),
);

const daemonSetPrinter = withWorkloadWide(
  simplePrinter([
    { def: col('Desired', 'integer', 'The total number of nodes that should be running the daemon pod.'), cell: (o) => n(getPath(o, ['status', 'desiredNumberScheduled'])) },
    { def: col('Current', 'integer', 'The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.'), cell: (o) => n(getPath(o, ['status', 'currentNumberScheduled'])) },
    { def: col('Ready', 'integer', 'The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.'), cell: (o) => n(getPath(o, ['status', 'numberReady'])) },
    { def: col('Up-to-date', 'integer', 'The total number of nodes that are running updated daemon pod'), cell: (o) => n(getPath(o, ['status', 'updatedNumberScheduled'])) },
    { def: col('Available', 'integer', 'The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.'), cell: (o) => n(getPath(o, ['status', 'numberAvailable'])) },
    { def: col('Node Selector', 'string', 'NodeSelector is a selector which must be true for the pod to fit on a node.'), cell: (o) => mapText(getPath(o, ['spec', 'template', 'spec', 'nodeSelector'])) },
  ]),
);

const statefulSetPrinter = withWorkloadWide(
  simplePrinter([
    {
      def: col('Ready', 'string', 'Number of the pod with ready state'),
      cell: (o) => `${n(getPath(o, ['status', 'readyReplicas']))}/${n(getPath(o, ['spec', 'replicas']))}`,
    },
  ]),
);

const replicaSetPrinter = withWorkloadWide(
  simplePrinter([
    { def: col('Desired', 'integer', 'Number of desired pods.'), cell: (o) => n(getPath(o, ['spec', 'replicas'])) },
    { def: col('Current', 'integer', 'The most recently observed number of replicas.'), cell: (o) => n(getPath(o, ['status', 'replicas'])) },
    { def: col('Ready', 'integer', 'The number of ready replicas for this replica set.'), cell: (o) => n(getPath(o, ['status', 'readyReplicas'])) },
  ]),
);

function defaultWorkload(o: KubeObject): void {
  const spec = (o.spec ??= {}) as Record<string, unknown>;
  if (o.kind !== 'DaemonSet') spec.replicas ??= 1;
  spec.revisionHistoryLimit ??= 10;
  // A strategy without a type ({} included) gets the rolling-update defaults.
  const rolling = (key: string, rollingUpdate: Record<string, unknown>) => {
    const st = (isPlainObject(spec[key]) ? spec[key] : (spec[key] = {})) as Record<string, unknown>;
    st.type ??= 'RollingUpdate';
    if (st.type === 'RollingUpdate') st.rollingUpdate = { ...rollingUpdate, ...(isPlainObject(st.rollingUpdate) ? st.rollingUpdate : {}) };
  };
  if (o.kind === 'Deployment') {
    spec.progressDeadlineSeconds ??= 600;
    rolling('strategy', { maxUnavailable: '25%', maxSurge: '25%' });
  }
  if (o.kind === 'DaemonSet') rolling('updateStrategy', { maxUnavailable: 1, maxSurge: 0 });
  if (o.kind === 'StatefulSet') {
    spec.podManagementPolicy ??= 'OrderedReady';
    rolling('updateStrategy', { partition: 0 });
  }
  const template = spec.template;
  if (isPlainObject(template)) defaultPod(template as unknown as KubeObject);
}

// --- events ---------------------------------------------------------------

const eventPrinter: Printer = {
  columns: [
    col('Last Seen', 'string', 'Time of the most recent occurrence of the event.'),
    col('Type', 'string', 'Type of this event (Normal, Warning), new types could be added in the future.'),
    col('Reason', 'string', 'This should be a short, machine understandable string that gives the reason for this event being generated.'),
    col('Object', 'string', 'The object that this event is about.'),
    col('Subobject', 'string', 'The field of the object that this event is about.', 1),
    col('Source', 'string', 'The component reporting this event.', 1),
    col('Message', 'string', 'A human-readable description of the status of this operation.'),
    col('First Seen', 'string', 'The time at which the event was first recorded.', 1),
    col('Count', 'string', 'The number of times this event has occurred.', 1),
    { ...nameColumn, priority: 1 },
  ],
  cells: (o, now) => {
    const e = o as KubeObject & {
      involvedObject?: { kind?: string; name?: string; fieldPath?: string };
      lastTimestamp?: string;
      firstTimestamp?: string;
      eventTime?: string;
      series?: { lastObservedTime?: string };
      source?: { component?: string; host?: string };
      reportingComponent?: string;
      count?: number;
    };
    const last = e.series?.lastObservedTime ?? e.lastTimestamp ?? e.eventTime ?? e.metadata.creationTimestamp;
    const first = e.firstTimestamp ?? e.eventTime ?? e.metadata.creationTimestamp;
    return [
      age(last, now),
      e.type ?? '',
      e.reason ?? '',
      `${(e.involvedObject?.kind ?? '').toLowerCase()}/${e.involvedObject?.name ?? ''}`,
      e.involvedObject?.fieldPath ?? '',
      e.source?.component ?? e.reportingComponent ?? '',
      e.message ?? '',
      age(first, now),
      String(e.count ?? 1),
      e.metadata.name,
    ];
  },
};

/**
 * events.k8s.io/v1 and core/v1 Events are one resource in kube-apiserver,
 * stored in the core shape; these are the field renames of its conversion.
 */
const eventRenames: [string, string][] = [
  ['regarding', 'involvedObject'],
  ['note', 'message'],
  ['reportingController', 'reportingComponent'],
  ['deprecatedSource', 'source'],
  ['deprecatedFirstTimestamp', 'firstTimestamp'],
  ['deprecatedLastTimestamp', 'lastTimestamp'],
  ['deprecatedCount', 'count'],
];

function renameFields(o: KubeObject, pairs: [string, string][], apiVersion: string): KubeObject {
  const out: Record<string, unknown> = {};
  const map = new Map(pairs);
  for (const [k, v] of Object.entries(o)) out[map.get(k) ?? k] = v;
  out.apiVersion = apiVersion;
  out.kind = 'Event';
  return out as KubeObject;
}

const eventFields: ResourceDef['fields'] = {
  'involvedObject.kind': field('involvedObject', 'kind'),
  'involvedObject.namespace': field('involvedObject', 'namespace'),
  'involvedObject.name': field('involvedObject', 'name'),
  'involvedObject.uid': field('involvedObject', 'uid'),
  'involvedObject.apiVersion': field('involvedObject', 'apiVersion'),
  'involvedObject.resourceVersion': field('involvedObject', 'resourceVersion'),
  'involvedObject.fieldPath': field('involvedObject', 'fieldPath'),
  reason: field('reason'),
  reportingComponent: field('reportingComponent'),
  source: field('source', 'component'),
  type: field('type'),
};

// --- timestamps -------------------------------------------------------------

const rfc3339 = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$/;

/** metav1.MicroTime serialises with exactly six fraction digits, in UTC. */
export function microTime(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  const m = rfc3339.exec(v);
  if (!m) return v;
  if (m[3] !== 'Z') return microTime(new Date(v).toISOString());
  return `${m[1]}.${(m[2] ?? '.').slice(1).padEnd(6, '0').slice(0, 6)}Z`;
}

/** metav1.Time serialises at second precision, in UTC. */
export function secondTime(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  const m = rfc3339.exec(v);
  if (!m) return v;
  if (m[3] !== 'Z') return secondTime(new Date(v).toISOString());
  return `${m[1]}Z`;
}

function normalizeTimes(o: Record<string, unknown> | undefined, micro: string[], seconds: string[]): void {
  if (!o) return;
  for (const k of micro) if (o[k] !== undefined && o[k] !== null) o[k] = microTime(o[k]);
  for (const k of seconds) if (o[k] !== undefined && o[k] !== null) o[k] = secondTime(o[k]);
}

function defaultEvent(o: KubeObject): void {
  const e = o as unknown as Record<string, unknown>;
  normalizeTimes(e, ['eventTime'], ['firstTimestamp', 'lastTimestamp', 'deprecatedFirstTimestamp', 'deprecatedLastTimestamp']);
  if (isPlainObject(e.series)) normalizeTimes(e.series, ['lastObservedTime'], []);
}

// --- the table ------------------------------------------------------------

const replicasScale: ScalePaths = {
  specReplicasPath: '.spec.replicas',
  statusReplicasPath: '.status.replicas',
  labelSelectorPath: '.status.selector',
};

const rbacNoStatus = { status: false, nameRule: 'path' as const };

export function builtinResources(): ResourceDef[] {
  return [
    // core/v1
    builtin({
      group: '',
      version: 'v1',
      resource: 'namespaces',
      kind: 'Namespace',
      namespaced: false,
      shortNames: ['ns'],
      verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
      status: true,
      nameRule: 'label',
      extraSubresources: [{ name: 'finalize', kind: 'Namespace', verbs: ['update'] }],
      initialStatus: () => ({ phase: 'Active' }),
      defaults: (o) => {
        const spec = (o.spec ??= {}) as Record<string, unknown>;
        spec.finalizers ??= ['kubernetes'];
        const labels = (o.metadata.labels ??= {});
        labels['kubernetes.io/metadata.name'] = o.metadata.name ?? '';
      },
      fields: { 'status.phase': field('status', 'phase') },
      printer: simplePrinter([{ def: col('Status', 'string', 'The status of the namespace'), cell: (o) => str(getPath(o, ['status', 'phase'])) ?? '' }]),
    }),
    builtin({
      group: '',
      version: 'v1',
      resource: 'pods',
      kind: 'Pod',
      shortNames: ['po'],
      categories: ['all'],
      status: true,
      initialStatus: (o) => ({ phase: 'Pending', qosClass: qosClass(o) }),
      defaults: defaultPod,
      validate: validatePodUpdate,
      extraSubresources: [
        { name: 'binding', kind: 'Binding', verbs: ['create'] },
        { name: 'portforward', kind: 'PodPortForwardOptions', verbs: ['create', 'get'] },
      ],
      returnDeletedObject: true,
      fields: {
        'spec.nodeName': field('spec', 'nodeName'),
        'spec.restartPolicy': field('spec', 'restartPolicy'),
        'spec.schedulerName': field('spec', 'schedulerName'),
        'spec.serviceAccountName': field('spec', 'serviceAccountName'),
        'spec.hostNetwork': (o) => String(getPath(o, ['spec', 'hostNetwork']) === true),
        'status.phase': field('status', 'phase'),
        'status.podIP': field('status', 'podIP'),
        'status.nominatedNodeName': field('status', 'nominatedNodeName'),
      },
      printer: podPrinter,
    }),
    builtin({
      group: '',
      version: 'v1',
      resource: 'nodes',
      kind: 'Node',
      namespaced: false,
      shortNames: ['no'],
      status: true,
      // The kubelet registers its node with a status; node creation keeps it.
      statusOnCreate: 'keep',
      fields: { 'spec.unschedulable': (o) => String(getPath(o, ['spec', 'unschedulable']) === true) },
      printer: nodePrinter,
      returnDeletedObject: true,
    }),
    builtin({
      group: '',
      version: 'v1',
      resource: 'services',
      kind: 'Service',
      shortNames: ['svc'],
      categories: ['all'],
      status: true,
      nameRule: 'label',
      verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
      initialStatus: () => ({ loadBalancer: {} }),
      defaults: (o) => {
        const spec = (o.spec ??= {}) as Record<string, unknown>;
        spec.type ??= 'ClusterIP';
        spec.sessionAffinity ??= 'None';
        for (const p of arr(spec.ports)) {
          if (!isPlainObject(p)) continue;
          p.protocol ??= 'TCP';
          p.targetPort ??= p.port as number;
        }
      },
      fields: { 'spec.clusterIP': field('spec', 'clusterIP'), 'spec.type': field('spec', 'type') },
      printer: servicePrinter,
      returnDeletedObject: true,
    }),
    builtin({
      group: '',
      version: 'v1',
      resource: 'endpoints',
      kind: 'Endpoints',
      singular: 'endpoints',
      shortNames: ['ep'],
      printer: simplePrinter([
        {
          def: col('Endpoints', 'string', 'Endpoints of the service'),
          cell: (o) => {
            const eps: string[] = [];
            for (const s of arr(o.subsets) as { addresses?: { ip: string }[]; ports?: { port: number }[] }[]) {
              for (const a of arr(s.addresses) as { ip: string }[]) {
                const ports = arr(s.ports) as { port: number }[];
                if (ports.length === 0) eps.push(a.ip);
                for (const p of ports) eps.push(`${a.ip}:${p.port}`);
              }
            }
            return eps.length ? eps.slice(0, 3).join(',') + (eps.length > 3 ? ` + ${eps.length - 3} more...` : '') : '<none>';
          },
        },
      ]),
    }),
    builtin({
      group: '',
      version: 'v1',
      resource: 'configmaps',
      kind: 'ConfigMap',
      validate: validateImmutableData,
      shortNames: ['cm'],
      printer: simplePrinter([
        {
          def: col('Data', 'integer', 'Data contains the configuration data.'),
          cell: (o) => Object.keys((o.data as object | undefined) ?? {}).length + Object.keys((o.binaryData as object | undefined) ?? {}).length,
        },
      ]),
    }),
    builtin({
      group: '',
      version: 'v1',
      resource: 'secrets',
      kind: 'Secret',
      validate: validateImmutableData,
      fields: { type: field('type') },
      defaults: (o) => {
        const secret = o as Record<string, unknown>;
        secret.type ??= 'Opaque';
        // stringData is write-only: the API server merges it into data.
        if (isPlainObject(secret.stringData)) {
          const data: Record<string, unknown> = isPlainObject(secret.data) ? { ...secret.data } : {};
          for (const [k, v] of Object.entries(secret.stringData)) data[k] = Buffer.from(String(v)).toString('base64');
          secret.data = data;
        }
        delete secret.stringData;
      },
      printer: simplePrinter([
        { def: col('Type', 'string', 'The type of the secret'), cell: (o) => str(o.type) ?? 'Opaque' },
        {
          def: col('Data', 'integer', 'The number of entries in the secret'),
          cell: (o) => Object.keys((o.data as object | undefined) ?? {}).length,
        },
      ]),
    }),
    builtin({
      group: '',
      version: 'v1',
      resource: 'serviceaccounts',
      kind: 'ServiceAccount',
      shortNames: ['sa'],
      printer: simplePrinter([
        { def: col('Secrets', 'integer', 'Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.'), cell: (o) => arr(o.secrets).length },
      ]),
    }),
    builtin({
      group: '',
      version: 'v1',
      resource: 'events',
      kind: 'Event',
      shortNames: ['ev'],
      storage: '/events',
      nameRule: 'path',
      fields: eventFields,
      defaults: defaultEvent,
      printer: eventPrinter,
    }),
    builtin({
      group: '',
      version: 'v1',
      resource: 'persistentvolumeclaims',
      kind: 'PersistentVolumeClaim',
      shortNames: ['pvc'],
      status: true,
      initialStatus: () => ({ phase: 'Pending' }),
      printer: simplePrinter([
        { def: col('Status', 'string', 'Phase represents the current phase of PersistentVolumeClaim.'), cell: (o) => str(getPath(o, ['status', 'phase'])) ?? '' },
        { def: col('Volume', 'string', 'VolumeName is the binding reference to the PersistentVolume backing this claim.'), cell: (o) => str(getPath(o, ['spec', 'volumeName'])) ?? '' },
        { def: col('Capacity', 'string', 'Capacity represents the actual resources of the underlying volume.'), cell: (o) => str(getPath(o, ['status', 'capacity', 'storage'])) ?? '' },
        { def: col('Access Modes', 'string', 'AccessModes contains the actual access modes the volume backing the PVC has.'), cell: () => '' },
        { def: col('StorageClass', 'string', 'StorageClassName is the name of the StorageClass required by the claim.'), cell: (o) => none(getPath(o, ['spec', 'storageClassName'])) },
        { def: col('VolumeAttributesClass', 'string', 'The name of the VolumeAttributesClass the PVC is using.'), cell: () => '<unset>' },
      ]),
    }),
    // discovery.k8s.io/v1
    builtin({
      group: 'discovery.k8s.io',
      version: 'v1',
      resource: 'endpointslices',
      kind: 'EndpointSlice',
      printer: simplePrinter([
        { def: col('AddressType', 'string', 'The IP protocol for this slice'), cell: (o) => str(o.addressType) ?? '' },
        { def: col('Ports', 'string', 'The ports allowed by this slice'), cell: (o) => arr(o.ports).map((p) => (p as { port?: number }).port).join(',') || '<unset>' },
        {
          def: col('Endpoints', 'string', 'First 3 endpoints in the slice'),
          cell: (o) => arr(o.endpoints).flatMap((e) => arr((e as { addresses?: string[] }).addresses)).slice(0, 3).join(',') || '<unset>',
        },
      ]),
    }),
    // events.k8s.io/v1
    builtin({
      group: 'events.k8s.io',
      version: 'v1',
      resource: 'events',
      kind: 'Event',
      shortNames: ['ev'],
      storage: '/events',
      nameRule: 'path',
      fields: eventFields,
      defaults: defaultEvent,
      fieldAliases: {
        'regarding.kind': 'involvedObject.kind',
        'regarding.namespace': 'involvedObject.namespace',
        'regarding.name': 'involvedObject.name',
        'regarding.uid': 'involvedObject.uid',
        'regarding.apiVersion': 'involvedObject.apiVersion',
        'regarding.resourceVersion': 'involvedObject.resourceVersion',
        'regarding.fieldPath': 'involvedObject.fieldPath',
        reportingController: 'reportingComponent',
        'deprecatedSource.component': 'source',
      },
      toStorage: (o) => renameFields(o, eventRenames, 'v1'),
      fromStorage: (o) =>
        renameFields(
          o,
          eventRenames.map(([a, b]) => [b, a]),
          'events.k8s.io/v1',
        ),
      printer: eventPrinter,
    }),
    // coordination.k8s.io/v1
    builtin({
      group: 'coordination.k8s.io',
      version: 'v1',
      resource: 'leases',
      kind: 'Lease',
      defaults: (o) => normalizeTimes(o.spec as Record<string, unknown> | undefined, ['acquireTime', 'renewTime'], []),
      printer: simplePrinter([
        { def: col('Holder', 'string', 'HolderIdentity contains the identity of the holder of a current lease.'), cell: (o) => str(getPath(o, ['spec', 'holderIdentity'])) ?? '' },
      ]),
    }),
    // apps/v1
    builtin({
      group: 'apps',
      version: 'v1',
      resource: 'deployments',
      kind: 'Deployment',
      shortNames: ['deploy'],
      categories: ['all'],
      status: true,
      scale: replicasScale,
      generation: true,
      defaults: defaultWorkload,
      validate: validateSelectorUpdate,
      printer: deploymentPrinter,
    }),
    builtin({
      group: 'apps',
      version: 'v1',
      resource: 'daemonsets',
      kind: 'DaemonSet',
      shortNames: ['ds'],
      categories: ['all'],
      status: true,
      generation: true,
      defaults: defaultWorkload,
      validate: validateSelectorUpdate,
      printer: daemonSetPrinter,
    }),
    builtin({
      group: 'apps',
      version: 'v1',
      resource: 'statefulsets',
      kind: 'StatefulSet',
      shortNames: ['sts'],
      categories: ['all'],
      status: true,
      scale: replicasScale,
      generation: true,
      defaults: defaultWorkload,
      validate: validateSelectorUpdate,
      printer: statefulSetPrinter,
    }),
    builtin({
      group: 'apps',
      version: 'v1',
      resource: 'replicasets',
      kind: 'ReplicaSet',
      shortNames: ['rs'],
      categories: ['all'],
      status: true,
      scale: replicasScale,
      generation: true,
      defaults: defaultWorkload,
      validate: validateSelectorUpdate,
      fields: { 'status.replicas': field('status', 'replicas') },
      printer: replicaSetPrinter,
    }),
    // rbac.authorization.k8s.io/v1
    builtin({ group: 'rbac.authorization.k8s.io', version: 'v1', resource: 'roles', kind: 'Role', ...rbacNoStatus, printer: simplePrinter([{ def: col('Created At', 'string', 'Time at which the object was created.'), cell: (o) => o.metadata.creationTimestamp }], false) }),
    builtin({
      group: 'rbac.authorization.k8s.io',
      version: 'v1',
      resource: 'rolebindings',
      kind: 'RoleBinding',
      ...rbacNoStatus,
      printer: simplePrinter([{ def: col('Role', 'string', 'Role is the name of the Role or ClusterRole the binding refers to.'), cell: (o) => `${str(getPath(o, ['roleRef', 'kind'])) ?? ''}/${str(getPath(o, ['roleRef', 'name'])) ?? ''}` }]),
    }),
    builtin({ group: 'rbac.authorization.k8s.io', version: 'v1', resource: 'clusterroles', kind: 'ClusterRole', namespaced: false, ...rbacNoStatus, printer: simplePrinter([{ def: col('Created At', 'string', 'Time at which the object was created.'), cell: (o) => o.metadata.creationTimestamp }], false) }),
    builtin({
      group: 'rbac.authorization.k8s.io',
      version: 'v1',
      resource: 'clusterrolebindings',
      kind: 'ClusterRoleBinding',
      namespaced: false,
      ...rbacNoStatus,
      printer: simplePrinter([{ def: col('Role', 'string', 'Role is the name of the ClusterRole the binding refers to.'), cell: (o) => `${str(getPath(o, ['roleRef', 'kind'])) ?? ''}/${str(getPath(o, ['roleRef', 'name'])) ?? ''}` }]),
    }),
    // policy/v1
    builtin({
      group: 'policy',
      version: 'v1',
      resource: 'poddisruptionbudgets',
      kind: 'PodDisruptionBudget',
      shortNames: ['pdb'],
      status: true,
      generation: true,
      printer: simplePrinter([
        { def: col('Min Available', 'string', 'The minimum number of pods that must be available simultaneously.'), cell: (o) => str(getPath(o, ['spec', 'minAvailable'])) ?? 'N/A' },
        { def: col('Max Unavailable', 'string', 'The maximum number of pods that may be unavailable simultaneously.'), cell: (o) => str(getPath(o, ['spec', 'maxUnavailable'])) ?? 'N/A' },
        { def: col('Allowed Disruptions', 'integer', 'Calculated number of pods that may be disrupted at this time.'), cell: (o) => n(getPath(o, ['status', 'disruptionsAllowed'])) },
      ]),
    }),
    // scheduling.k8s.io/v1
    builtin({
      group: 'scheduling.k8s.io',
      version: 'v1',
      resource: 'priorityclasses',
      kind: 'PriorityClass',
      namespaced: false,
      shortNames: ['pc'],
      printer: simplePrinter([
        { def: col('Value', 'integer', "The value of this priority class."), cell: (o) => n(o.value) },
        { def: col('Global-Default', 'boolean', 'globalDefault specifies whether this PriorityClass should be considered as the default priority.'), cell: (o) => o.globalDefault === true },
        { def: col('PreemptionPolicy', 'string', 'PreemptionPolicy is the Policy for preempting pods with lower priority.'), cell: (o) => str(o.preemptionPolicy) ?? 'PreemptLowerPriority' },
      ]),
    }),
    // networking.k8s.io/v1
    builtin({
      group: 'networking.k8s.io',
      version: 'v1',
      resource: 'networkpolicies',
      kind: 'NetworkPolicy',
      shortNames: ['netpol'],
      generation: true,
      printer: simplePrinter([
        {
          def: col('Pod-Selector', 'string', 'Selects the pods to which this NetworkPolicy object applies.'),
          cell: (o) => {
            const t = mapText(getPath(o, ['spec', 'podSelector', 'matchLabels']));
            return t === '<none>' ? '<none>' : t;
          },
        },
      ]),
    }),
  ];
}
