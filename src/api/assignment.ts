/**
 * SniffAssignment (podtap.io/v1alpha1): the controller's work order for one
 * node and one policy. Internal — users read SniffPolicy.status. It lives in
 * the install's namespace (where podtap runs), never in the policy's: there
 * only podtap's own components may read or write it, each agent is granted
 * that one namespace, and a tenant who owns the policy's namespace cannot
 * forge or edit a work order (docs/security.md). It names its policy in
 * spec.policy (namespace, name, uid) and carries the node and the policy as
 * labels, so each agent watches only its own with a label selector. No owner
 * reference: Kubernetes forbids one across namespaces (the garbage collector
 * would treat it as absent and delete the assignment), so the controller
 * deletes a policy's assignments itself.
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from '../util/json.ts';
import { z } from 'zod';
import { podNamespace } from '../k8s/index.ts';
import { DNS_SUBDOMAIN } from '../k8s/names.ts';
import { CountSchema, DnsLabelSchema, DroppedSchema, GenerationSchema, NodeStateSchema, ObjectNameSchema, TimestampSchema } from './common.ts';
import {
  API_VERSION,
  FILTER_LISTS,
  IpSchema,
  MtuSchema,
  ObjectMetaSchema,
  RateLimitSchema,
  SamplingSchema,
  SnapLengthSchema,
  TunnelSchema,
  PolicyTypeSchema,
  type SniffPolicySpec,
} from './sniffpolicy.ts';
import { TcHooks, tcHooksFor } from './vocabulary.ts';
import { byCodePoint } from '../util/compare.ts';

export const ASSIGNMENT_KIND = 'SniffAssignment';
export const LABEL_NODE = 'podtap.io/node';
export const LABEL_POLICY = 'podtap.io/policy';
export const LABEL_POLICY_NAMESPACE = 'podtap.io/policy-namespace';

/** Where podtap is installed when nothing says otherwise (the chart's and the lab's namespace). */
export const DEFAULT_INSTALL_NAMESPACE = 'podtap-system';

/** The install namespace of this process: $POD_NAMESPACE, its service account's, else the default. */
export function installNamespace(env: NodeJS.ProcessEnv = process.env): string {
  return podNamespace(env) ?? DEFAULT_INSTALL_NAMESPACE;
}

export const ResolvedCollectorSchema = z
  .object({
    address: IpSchema.meta({ description: 'Collector IP (a Service reference resolved to an endpoint by the controller).' }),
    port: z.number().int().min(1).max(65535).meta({ description: 'UDP port of the tunnel.' }),
  })
  .meta({ description: 'The collector, resolved.' });
export type ResolvedCollector = z.infer<typeof ResolvedCollectorSchema>;

/** The policy's filter with every list present: empty = no restriction. */
export const CaptureFilterSchema = z
  .object({
    protocols: FILTER_LISTS.protocols.schema.default([]).meta({ description: FILTER_LISTS.protocols.description }),
    ports: FILTER_LISTS.ports.schema.default([]).meta({ description: FILTER_LISTS.ports.description }),
    cidrs: FILTER_LISTS.cidrs.schema.default([]).meta({ description: FILTER_LISTS.cidrs.description }),
    tcpFlags: FILTER_LISTS.tcpFlags.schema.default([]).meta({ description: FILTER_LISTS.tcpFlags.description }),
  })
  .meta({ description: 'What to capture. An empty list means no restriction.' });

/**
 * What the agent (or `podtap sniff`) captures with: the policy's data-plane
 * fields with every default applied and the collector resolved to an address
 * and a port. The controller writes it into each assignment as it is; the
 * data plane takes it with the node's own facts (its MTU, its CPUs) and
 * applies no default of its own. Parsing an assignment written before a field
 * existed fills in that field's default.
 */
/**
 * The tc hooks of each pod's host-side veth the program runs at, in the data
 * plane's words (ingress there: packets the pod sends). The controller maps
 * spec.policyTypes onto them (captureConfig, vocabulary.ts: TC_HOOK_OF), so an
 * assignment says exactly where it attaches. Required: an assignment written
 * by podtap 0.1 (config.direction, which named the same hooks) is refused by
 * the agent until the controller rewrites it, never run with a guessed default.
 */
export const CaptureHooksSchema = z
  .array(z.enum(TcHooks, { error: `hook must be ${TcHooks.join(' or ')}` }))
  .min(1)
  .max(TcHooks.length)
  .meta({ description: "tc hooks of the pod's host-side interface: ingress sees what the pod sends (policy type Egress), egress what it receives (Ingress)." });

export const CaptureConfigSchema = z
  .object({
    hooks: CaptureHooksSchema,
    filter: CaptureFilterSchema.prefault({}),
    sampling: SamplingSchema.prefault({}),
    snapLength: SnapLengthSchema,
    rateLimit: RateLimitSchema.prefault({}),
    tunnel: TunnelSchema,
    mtu: MtuSchema,
    collector: ResolvedCollectorSchema,
  })
  .meta({ description: 'The capture configuration the agent compiles.' });
export type CaptureConfig = z.infer<typeof CaptureConfigSchema>;
export type CaptureConfigInput = z.input<typeof CaptureConfigSchema>;

export const AssignedPodSchema = z.object({
  name: ObjectNameSchema.meta({ description: "Pod name (in the policy's namespace)." }),
  uid: z.string().min(1).meta({ description: 'Pod UID: a recreated pod with the same name is another pod.' }),
  ips: z.array(IpSchema).max(8).meta({ description: 'status.podIPs, to find the host-side interface.' }),
});
export type AssignedPod = z.infer<typeof AssignedPodSchema>;

export const AssignmentLimitsSchema = z
  .object({
    deadline: TimestampSchema.optional().meta({ description: 'Detach at this time (from spec.limits.duration).' }),
    maxPackets: CountSchema.meta({ description: 'Packets this node may still mirror; 0 = no limit.' }),
    maxBytes: CountSchema.meta({ description: 'Bytes this node may still mirror; 0 = no limit.' }),
  })
  .meta({ description: 'Limits the agent enforces locally, between reports.' });
export type AssignmentLimits = z.infer<typeof AssignmentLimitsSchema>;

export const SniffAssignmentSpecSchema = z.object({
  nodeName: ObjectNameSchema.meta({ description: 'The node whose agent acts on this assignment.' }),
  policy: z
    .object({
      namespace: DnsLabelSchema.meta({ description: "The policy's namespace (the assignment itself lives in the install's)." }),
      name: ObjectNameSchema,
      uid: z.string().min(1),
      generation: GenerationSchema,
      creationTimestamp: TimestampSchema.optional().meta({
        description: "The policy's metadata.creationTimestamp: where a node's --max-sessions leaves policies waiting, the older one is attached first.",
      }),
    })
    .meta({ description: 'The SniffPolicy this assignment comes from.' }),
  config: CaptureConfigSchema,
  pods: z.array(AssignedPodSchema).max(1024).meta({ description: 'Selected pods on the node.' }),
  limits: AssignmentLimitsSchema,
  stopped: z.boolean().meta({ description: 'The policy completed: the agent detaches and keeps the final counters.' }),
});
export type SniffAssignmentSpec = z.infer<typeof SniffAssignmentSpecSchema>;

export const AttachedInterfaceSchema = z.object({
  pod: z.string().min(1).meta({ description: 'Pod name.' }),
  name: z.string().min(1).meta({ description: 'Host-side interface name.' }),
  ifindex: z.number().int().min(1),
  policyTypes: z.array(PolicyTypeSchema).max(2).meta({ description: 'What is captured on it, named from the pod\'s side: Ingress = traffic to the pod, Egress = traffic from it.' }),
});
export type AttachedInterface = z.infer<typeof AttachedInterfaceSchema>;

export const CountersSchema = z
  .object({
    seen: CountSchema.meta({ description: 'Packets the tap program ran on.' }),
    matched: CountSchema.meta({ description: 'Packets that matched the filter.' }),
    mirrored: CountSchema.meta({ description: 'Packets delivered to the collector, whole or in pieces.' }),
    bytes: CountSchema.meta({ description: 'Bytes mirrored (original packet lengths).' }),
    fragmented: CountSchema.meta({ description: 'Packets split to fit the MTU.' }),
    pieces: CountSchema.meta({ description: 'Pieces sent for split packets.' }),
    truncated: CountSchema.meta({ description: 'Packets cut to snapLength or to the largest frame.' }),
    oversize: CountSchema.meta({ description: 'Frames larger than 65535 + L2 bytes (BIG TCP).' }),
    lost: CountSchema.meta({ description: 'Packets matched but not delivered whole.' }),
    dropped: DroppedSchema,
  })
  .partial()
  .meta({ description: "The program's counters since attachment (monotonic)." });
export type Counters = z.infer<typeof CountersSchema>;

export const SniffAssignmentStatusSchema = z
  .object({
    observedGeneration: GenerationSchema.optional().meta({ description: 'The assignment metadata.generation acted on.' }),
    state: NodeStateSchema.optional(),
    reason: z.string().optional().meta({ description: 'CamelCase reason, one of the policy condition reasons.' }),
    message: z.string().optional(),
    attachedInterfaces: CountSchema.optional().meta({ description: 'len(interfaces) (printer column).' }),
    interfaces: z
      .array(AttachedInterfaceSchema)
      .optional()
      .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'], description: 'Interfaces the program is attached to.' }),
    counters: CountersSchema.optional(),
    collectorReachable: z.boolean().optional().meta({ description: 'The node has a route to the collector.' }),
    lastReportTime: TimestampSchema.optional(),
  })
  .meta({ description: 'Written by the agent (status subresource).' });
export type SniffAssignmentStatus = z.infer<typeof SniffAssignmentStatusSchema>;

export const SniffAssignmentSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(ASSIGNMENT_KIND),
  metadata: ObjectMetaSchema,
  spec: SniffAssignmentSpecSchema,
  status: SniffAssignmentStatusSchema.optional(),
});
export type SniffAssignment = z.infer<typeof SniffAssignmentSchema>;


/**
 * SniffNodeAssignment: what the API server stores. One object per node (and
 * a second, third… past MAX_NODE_OBJECT_BYTES, as EndpointSlices split a
 * Service), holding an entry per policy with pods on that node, and each
 * distinct capture config once. Why not an object per (policy, node), as
 * podtap 0.1 had: at 1,000 nodes and 100 policies that is 10,000 objects, and
 * kube-apiserver's cost is mostly per object (bench/objects.ts, run
 * objects-2026-12-06T09-47-55-180Z: 3.0 ms of server CPU for a 926-byte
 * assignment, 10 ms for one of 9,176 bytes); 10,000 took 28.5–37.1 s to
 * write, 1,000 node objects take a few seconds (docs/controller.md).
 *
 * Inside podtap every component still works with one SniffAssignment per
 * (policy, node) — the unit of work, of status and of admission — expanded
 * from the stored objects by assignmentsOfNode and folded back by
 * foldNodeAssignments. The agent writes the status of all its entries at
 * once, in the same object.
 */
export const NODE_ASSIGNMENT_KIND = 'SniffNodeAssignment';

/** A capture config's id inside one object: the first 16 hex digits of the SHA-256 of its JSON. */
export const ConfigIdSchema = z.string().regex(/^[0-9a-f]{16}$/).meta({ description: "Key of a capture config in spec.configs (a hash of it)." });

export const PolicyRefSchema = SniffAssignmentSpecSchema.shape.policy;
export type PolicyRef = z.infer<typeof PolicyRefSchema>;

/**
 * At most this many entries (policies) in one object, and as many configs;
 * a node with more goes on in a second object. Why 64: the API server bounds
 * the estimated cost of the CRD's CEL rules by its lists' maxItems, and the
 * pods' IP rule under 256 entries × 1,024 pods × 8 IPs was refused, 4.0×
 * over the budget (kube-apiserver 1.34).
 */
export const MAX_ENTRIES_PER_OBJECT = 64;

export const AssignmentEntrySchema = z.object({
  policy: PolicyRefSchema,
  config: ConfigIdSchema,
  pods: SniffAssignmentSpecSchema.shape.pods,
  limits: AssignmentLimitsSchema,
  stopped: SniffAssignmentSpecSchema.shape.stopped,
  since: TimestampSchema.meta({ description: 'When the node was given this policy: the agent is stale if it has not reported some time after.' }),
});
export type AssignmentEntry = z.infer<typeof AssignmentEntrySchema>;

export const SniffNodeAssignmentSpecSchema = z.object({
  nodeName: ObjectNameSchema.meta({ description: 'The node whose agent acts on this object.' }),
  configs: z
    .array(z.object({ id: ConfigIdSchema, config: CaptureConfigSchema }))
    .max(MAX_ENTRIES_PER_OBJECT)
    .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['id'], description: 'Each distinct capture config of the entries, once.' }),
  entries: z
    .array(AssignmentEntrySchema)
    .max(MAX_ENTRIES_PER_OBJECT)
    .meta({ 'x-kubernetes-list-type': 'atomic', description: 'One per SniffPolicy with selected pods on the node.' }),
});
export type SniffNodeAssignmentSpec = z.infer<typeof SniffNodeAssignmentSpecSchema>;

export const EntryStatusSchema = SniffAssignmentStatusSchema.omit({ observedGeneration: true }).extend({
  policyUid: z.string().min(1).meta({ description: 'The entry this status is of (spec.entries[].policy.uid).' }),
});
export type EntryStatus = z.infer<typeof EntryStatusSchema>;

export const SniffNodeAssignmentStatusSchema = z
  .object({
    observedGeneration: GenerationSchema.optional().meta({ description: 'The metadata.generation the agent acted on (for every entry).' }),
    entries: z
      .array(EntryStatusSchema)
      .max(MAX_ENTRIES_PER_OBJECT)
      .optional()
      .meta({ 'x-kubernetes-list-type': 'atomic', description: 'Per entry: what the agent attached and counted.' }),
  })
  .meta({ description: 'Written by the agent (status subresource), all entries at once.' });
export type SniffNodeAssignmentStatus = z.infer<typeof SniffNodeAssignmentStatusSchema>;

export const SniffNodeAssignmentSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(NODE_ASSIGNMENT_KIND),
  metadata: ObjectMetaSchema,
  spec: SniffNodeAssignmentSpecSchema,
  status: SniffNodeAssignmentStatusSchema.optional(),
});
export type SniffNodeAssignment = z.infer<typeof SniffNodeAssignmentSchema>;

/**
 * An object's spec stays under this many bytes of JSON; past it, the node's
 * entries go on in a second object. Why 256 KiB: etcd refuses requests over
 * 1.5 MiB, and the status the agent adds (interfaces and counters per entry)
 * must fit beside the spec; a full entry (1,024 pods) is about 130 KB, so
 * one always fits.
 */
export const MAX_NODE_OBJECT_BYTES = 256 * 1024;

/**
 * The id of a capture config (ConfigIdSchema), from its canonical JSON: a
 * config read back from the API server (keys sorted) has the id of the same
 * config built here. (With JSON.stringify it did not, and every node the
 * controller wrote again got a second copy of its config: 150–390 needless
 * writes at 1,000 nodes.)
 */
export function configId(config: CaptureConfig): string {
  return createHash('sha256').update(canonicalJson(config)).digest('hex').slice(0, 16);
}

/**
 * The name of part @part (0, 1, …) of a node's assignments: the node's name,
 * then `<node>.part<N>-<hash>`. Why the hash: a plain `<node>.1` is also the
 * name of a node called `<node>.1`, whose first object would be the other
 * node's second; a node would have to be named after the SHA-256 of another
 * node's name to collide now (and nodes are named by their kubelets'
 * credentials).
 */
export function nodeAssignmentName(nodeName: string, part = 0): string {
  if (part === 0 && DNS_SUBDOMAIN.test(nodeName)) return nodeName;
  return hashedName(`${nodeName}.part${part}`, `${nodeName}\u0000${part}`, MAX_NAME);
}

/** Labels of a node's objects: the agent lists its own by LABEL_NODE. */
export function nodeAssignmentLabels(nodeName: string): Record<string, string> {
  return { [LABEL_NODE]: labelValue(nodeName), 'app.kubernetes.io/managed-by': 'podtap' };
}

/** What an entry of a stored object says, as one assignment (the virtual SniffAssignment every component works with). */
export function assignmentsOfNode(obj: Pick<SniffNodeAssignment, 'metadata' | 'spec' | 'status'>): SniffAssignment[] {
  const spec = obj.spec;
  if (!spec || !Array.isArray(spec.entries)) return [];
  const configs = new Map((spec.configs ?? []).map((c) => [c.id, c.config]));
  const statuses = new Map((obj.status?.entries ?? []).map((e) => [e.policyUid, e]));
  const out: SniffAssignment[] = [];
  for (const e of spec.entries) {
    const config = configs.get(e.config);
    if (!config || !e.policy) continue;
    const name = assignmentName(e.policy.namespace, e.policy.name, spec.nodeName);
    const a: SniffAssignment = {
      apiVersion: API_VERSION,
      kind: ASSIGNMENT_KIND,
      metadata: {
        name,
        namespace: obj.metadata.namespace,
        labels: assignmentLabels(e.policy.namespace, e.policy.name, spec.nodeName),
        annotations: { [ANNOTATION_OBJECT]: obj.metadata.name ?? '' },
        creationTimestamp: e.since,
        ...(obj.metadata.generation !== undefined ? { generation: obj.metadata.generation } : {}),
        ...(obj.metadata.resourceVersion !== undefined ? { resourceVersion: obj.metadata.resourceVersion } : {}),
      },
      spec: { nodeName: spec.nodeName, policy: e.policy, config, pods: e.pods, limits: e.limits, stopped: e.stopped },
    };
    const st = statuses.get(e.policy.uid);
    if (st || obj.status?.observedGeneration !== undefined) {
      const { policyUid: _uid, ...rest } = st ?? {};
      a.status = { ...rest, ...(obj.status?.observedGeneration !== undefined ? { observedGeneration: obj.status.observedGeneration } : {}) };
    }
    out.push(a);
  }
  return out;
}

/** On an expanded assignment: the name of the stored object it came from. */
export const ANNOTATION_OBJECT = 'podtap.io/object';

/**
 * A node's assignments as the specs of its objects, in order: entries sorted
 * by policy (namespace, name), packed into parts of at most
 * MAX_NODE_OBJECT_BYTES and MAX_ENTRIES_PER_OBJECT, each part with the configs
 * its entries use. `since` gives each entry's assignment time.
 */
export function foldNodeAssignments(nodeName: string, assignments: readonly { spec: SniffAssignmentSpec; since: string }[]): SniffNodeAssignmentSpec[] {
  const sorted = [...assignments].sort((a, b) => byCodePoint(a.spec.policy.namespace, b.spec.policy.namespace) || byCodePoint(a.spec.policy.name, b.spec.policy.name));
  const parts: SniffNodeAssignmentSpec[] = [];
  let cur: SniffNodeAssignmentSpec | undefined;
  let bytes = 0;
  for (const { spec, since } of sorted) {
    const id = configId(spec.config);
    const entry: AssignmentEntry = { policy: spec.policy, config: id, pods: spec.pods, limits: spec.limits, stopped: spec.stopped, since };
    const entryBytes = JSON.stringify(entry).length + 1;
    const needsConfig = !cur?.configs.some((c) => c.id === id);
    const configBytes = needsConfig ? JSON.stringify(spec.config).length + 30 : 0;
    if (!cur || cur.entries.length >= MAX_ENTRIES_PER_OBJECT || bytes + entryBytes + configBytes > MAX_NODE_OBJECT_BYTES) {
      cur = { nodeName, configs: [], entries: [] };
      parts.push(cur);
      bytes = 100;
    }
    if (!cur.configs.some((c) => c.id === id)) {
      cur.configs.push({ id, config: spec.config });
      bytes += JSON.stringify(spec.config).length + 30;
    }
    cur.entries.push(entry);
    bytes += entryBytes;
  }
  return parts;
}

const MAX_NAME = 253;
const HASH_LEN = 10;

/**
 * The assignment's name, unique in the install namespace across every
 * policy namespace: `<namespace>.<policy>.<node>` when that is unambiguous
 * and fits (namespaces are DNS labels, so without a dot; policy names
 * without a dot; total ≤ 253); otherwise a prefix of it plus a hash of the
 * three names. Deterministic, a valid DNS-1123 subdomain.
 */
export function assignmentName(policyNamespace: string, policyName: string, nodeName: string): string {
  const plain = `${policyNamespace}.${policyName}.${nodeName}`;
  if (!policyNamespace.includes('.') && !policyName.includes('.') && plain.length <= MAX_NAME && DNS_SUBDOMAIN.test(plain)) return plain;
  return hashedName(plain, `${policyNamespace}\u0000${policyName}\u0000${nodeName}`, MAX_NAME);
}

/** A label value (≤ 63 characters) naming `name`: itself, or a prefix and a hash. */
export function labelValue(name: string): string {
  if (name.length <= 63 && /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(name)) return name;
  return hashedName(name, name, 63);
}

/** Labels of a policy's assignment on a node. */
export function assignmentLabels(policyNamespace: string, policyName: string, nodeName: string): Record<string, string> {
  return {
    [LABEL_POLICY_NAMESPACE]: labelValue(policyNamespace),
    [LABEL_POLICY]: labelValue(policyName),
    [LABEL_NODE]: labelValue(nodeName),
    'app.kubernetes.io/managed-by': 'podtap',
  };
}

/**
 * The capture configuration of a policy spec, every default applied (by the
 * schema: the defaults are declared once), with the collector resolved.
 */
export function captureConfig(
  spec: Pick<SniffPolicySpec, 'policyTypes' | 'filter' | 'sampling' | 'snapLength' | 'rateLimit' | 'tunnel' | 'mtu'>,
  collector: ResolvedCollector,
): CaptureConfig {
  return CaptureConfigSchema.parse({
    hooks: tcHooksFor(spec.policyTypes),
    filter: spec.filter ?? {},
    sampling: spec.sampling ?? {},
    snapLength: spec.snapLength,
    rateLimit: spec.rateLimit ?? {},
    tunnel: spec.tunnel,
    mtu: spec.mtu,
    collector,
  });
}

/** `<prefix>-<hash>` within `max` characters, a DNS-1123 subdomain (so also a valid label value). */
function hashedName(readable: string, key: string, max: number): string {
  const hash = createHash('sha256').update(key).digest('hex').slice(0, HASH_LEN);
  const prefix = cleanSubdomain(cleanSubdomain(readable).slice(0, max - HASH_LEN - 1));
  return prefix === '' ? hash : `${prefix}-${hash}`;
}

function cleanSubdomain(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, '-')
    .split('.')
    .map((label) => label.replace(/^-+|-+$/g, ''))
    .filter(Boolean)
    .join('.');
}
