/**
 * SniffPolicy (podtap.io/v1alpha1): the single source of truth for the policy's
 * TypeScript types, its runtime validation, and (through src/api/crd.ts and
 * scripts/gen-crds.ts) the CRD's openAPIV3Schema. docs/api.md describes every field.
 *
 * Spec objects are strict: a misspelt field is an error in the CLI, as it is
 * for `kubectl apply` with server-side field validation. Status objects are
 * not, so an older reader tolerates fields a newer writer adds.
 */
import { z } from 'zod';
import { SELECTOR_OPERATORS } from '../k8s/labels.ts';
import { CountSchema, DnsLabelSchema, DroppedSchema, GenerationSchema, NodeStateSchema, ObjectNameSchema, TimestampSchema } from './common.ts';
import { ConditionSchema } from './conditions.ts';
import { isCIDR, isIPAddress } from './netaddr.ts';
import { withRule } from './rules.ts';
import {
  DEFAULT_POLICY_TYPES, DEFAULT_TUNNEL, defaultCollectorPort, DURATION_EXAMPLES, DURATION_PATTERN, LargeFrameModes, MTU_MAX, MTU_MIN, PolicyTypes, Protocols, REMOVED_DIRECTIONS, removedDirectionMessage, type RemovedDirection, TcpFlags, TunnelProtocols,
} from './vocabulary.ts';

export const GROUP = 'podtap.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

const LabelSelectorRequirementSchema = withRule(
  z.strictObject({
    key: z.string().min(1).max(317),
    operator: z.enum(SELECTOR_OPERATORS),
    values: z.array(z.string().max(63)).max(256).optional(),
  }),
  (r) => (r.operator === 'In' || r.operator === 'NotIn' ? (r.values?.length ?? 0) > 0 : (r.values?.length ?? 0) === 0),
  {
    rule: "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
    message: 'values must be set for In and NotIn, and empty for Exists and DoesNotExist',
    fieldPath: '.values',
  },
);

/** Kubernetes LabelSelector (apimachinery meta/v1). */
export const LabelSelectorSchema = z
  .strictObject({
    matchLabels: z.record(z.string(), z.string()).optional(),
    matchExpressions: z.array(LabelSelectorRequirementSchema).max(64).optional(),
  })
  .meta({ description: 'Label selector: matchLabels and matchExpressions are ANDed; {} selects everything.' });
export type LabelSelector = z.infer<typeof LabelSelectorSchema>;

const port = z.number().int().min(1, 'port must be between 1 and 65535').max(65535, 'port must be between 1 and 65535');

export const PortRangeSchema = withRule(
  z.strictObject({
    port: port.meta({ description: 'First port of the range.' }),
    endPort: port.optional().meta({ description: 'Last port of the range (inclusive); defaults to port.' }),
  }),
  (r) => r.endPort === undefined || r.endPort >= r.port,
  { rule: '!has(self.endPort) || self.endPort >= self.port', message: 'endPort must be greater than or equal to port', fieldPath: '.endPort' },
);
export type PortRange = z.infer<typeof PortRangeSchema>;

// maxLength bounds the estimated cost of the CEL rules (the API server refuses
// a CRD whose rules could run too long on a maximal object).
export const CidrSchema = withRule(z.string().max(49), isCIDR, {
  rule: 'isCIDR(self)',
  message: 'must be a CIDR such as 10.0.0.0/8 or fd00::/8',
}).meta({ description: 'An IPv4 or IPv6 CIDR.' });
export const IpSchema = withRule(z.string().max(45), isIPAddress, {
  rule: 'isIP(self)',
  message: 'must be an IP address such as 198.18.1.2 or 2001:db8::1',
}).meta({ description: 'An IPv4 or IPv6 address.' });

/** A duration as kubectl users write it, or in days (vocabulary.ts: DURATION_PATTERN). */
export const DurationSchema = z
  .string()
  .max(32)
  .regex(DURATION_PATTERN, `must be a duration such as ${DURATION_EXAMPLES}`)
  .meta({ description: `Duration such as ${DURATION_EXAMPLES}.` });

/**
 * The filter's lists and what each means: optional in a policy (FilterSchema),
 * present in the capture configuration the controller writes (assignment.ts).
 */
export const FILTER_LISTS = {
  protocols: {
    schema: z.array(z.enum(Protocols, { error: `protocol must be one of ${Protocols.join(', ')}` })).max(Protocols.length),
    description: `Protocols to capture (${Protocols.join(', ')}); empty = all, including non-IP frames.`,
  },
  ports: { schema: z.array(PortRangeSchema).max(16), description: 'TCP/UDP/SCTP ports matched at either end of the packet (at most 16 ranges).' },
  cidrs: { schema: z.array(CidrSchema).max(1024), description: 'Addresses of the peer (the other end from the pod); at most 1024.' },
  tcpFlags: {
    schema: z.array(z.enum(TcpFlags, { error: `TCP flag must be one of ${TcpFlags.join(', ')}` })).max(TcpFlags.length),
    description: 'TCP packets match when any of these flags is set; other protocols are not affected.',
  },
};

export const FilterSchema = z
  .strictObject({
    protocols: FILTER_LISTS.protocols.schema.optional().meta({ description: FILTER_LISTS.protocols.description }),
    ports: FILTER_LISTS.ports.schema.optional().meta({ description: FILTER_LISTS.ports.description }),
    cidrs: FILTER_LISTS.cidrs.schema.optional().meta({ description: FILTER_LISTS.cidrs.description }),
    tcpFlags: FILTER_LISTS.tcpFlags.schema.optional().meta({ description: FILTER_LISTS.tcpFlags.description }),
  })
  .meta({ description: 'What to capture. Every list empty or absent means no restriction.' });
export type Filter = z.infer<typeof FilterSchema>;

export const ServiceRefSchema = z
  .strictObject({
    name: DnsLabelSchema.meta({ description: 'Service name.' }),
    namespace: DnsLabelSchema.optional().meta({ description: "Defaults to the policy's namespace." }),
  })
  .meta({ description: "Collector Service; its endpoints' pod IPs are used (a ClusterIP is not translated for mirrored packets)." });
export type ServiceRef = z.infer<typeof ServiceRefSchema>;

export const CollectorRefSchema = withRule(
  z.strictObject(
    {
      address: IpSchema.optional().meta({ description: 'Collector IP address, routable from the nodes.' }),
      service: ServiceRefSchema.optional(),
      port: port
        .optional()
        .meta({ description: `UDP port of the tunnel; defaults to ${TunnelProtocols.map((t) => `${defaultCollectorPort(t)} (${t})`).join(' or ')}.` }),
    },
    { error: (iss) => (iss.input === undefined ? 'collector is required: set address or service' : undefined) },
  ),
  (c) => (c.address === undefined) !== (c.service === undefined),
  { rule: 'has(self.address) != has(self.service)', message: 'set exactly one of address or service' },
).meta({ description: 'Where the mirrored packets go: an address or a Service, not both.' });
export type CollectorRef = z.infer<typeof CollectorRefSchema>;

export const TunnelSchema = z
  .strictObject({
    protocol: z.enum(TunnelProtocols, { error: `tunnel protocol must be ${TunnelProtocols.join(' or ')}` }).default(DEFAULT_TUNNEL).meta({
      description: 'Geneve carries podtap metadata (exact rebuild, pod names, direction); VXLAN is for receivers that only speak VXLAN.',
    }),
    vni: z.number().int().min(0).max(16_777_215, 'vni must be less than 2^24 (16777216)').default(0).meta({ description: 'Virtual network identifier (24 bits).' }),
    largeFrames: z.enum(LargeFrameModes, { error: 'largeFrames must be Segment or Fragment' }).default('Segment').meta({
      description:
        'Frames larger than the MTU. Segment: a TCP super-packet (GSO) leaves once and the kernel or the NIC cuts it into TCP segments, each a complete tunnel packet (the collector rebuilds the super-packet); other frames travel as inner IP fragments. Fragment: every such frame travels as inner IP fragments, for receivers that reassemble IP fragments rather than TCP streams.',
    }),
  })
  .meta({ description: 'Encapsulation of the mirrored packets.' });
export type Tunnel = z.infer<typeof TunnelSchema>;

export const PolicyTypeSchema = z.enum(PolicyTypes, { error: `policy type must be ${PolicyTypes.join(' or ')}` });

export const PolicyTypesSchema = withRule(
  z
    .array(PolicyTypeSchema)
    .min(1, 'name Ingress, Egress or both, or leave policyTypes out to capture both')
    .max(PolicyTypes.length, `at most ${PolicyTypes.length} policy types, each once`),
  (types) => new Set(types).size === types.length,
  // (two items at most, so a duplicate is two items that are both the same type)
  { rule: `size(self) < 2 || !(${PolicyTypes.map((t) => `self.all(t, t == '${t}')`).join(' || ')})`, message: 'each policy type at most once' },
).meta({
  description:
    'What to capture, named from the pod\'s side as NetworkPolicy names it: Ingress = traffic to the pod (it receives), Egress = traffic from the pod (it sends). Default: both.',
});

/** podtap 0.1's spec.direction, kept in the schema only to be refused with its conversion (vocabulary.ts: REMOVED_DIRECTIONS). */
const RemovedDirectionSchema = z
  .string()
  .max(32)
  .optional()
  .meta({
    description:
      'Removed in 0.2: its Ingress meant sent by the pod, the opposite of NetworkPolicy. Ingress and Egress are refused with their conversion; Both (what 0.1 stored by default) is accepted beside both policy types. Write spec.policyTypes instead.',
  });

/**
 * A spec with spec.direction is refused, one rule per old value so that each
 * message names the conversion (a CEL rule's message is fixed), plus one for
 * any other value. `Both` is accepted beside both policy types (what a
 * policy stored by 0.1 reads as: its CRD defaulted direction to Both, and
 * policyTypes defaults to both), refused beside one. The rules live on the
 * spec: a field's own rules do not run when the field is absent.
 */
function refuseDirection<T extends z.ZodType<{ direction?: string | undefined; policyTypes: readonly string[] }>>(schema: T): T {
  const oldValues = Object.keys(REMOVED_DIRECTIONS) as RemovedDirection[];
  let out = schema;
  for (const v of oldValues) {
    const both = v === 'Both';
    out = withRule(out, (s) => s.direction !== v || (both && s.policyTypes.length === PolicyTypes.length), {
      rule: `!has(self.direction) || self.direction != '${v}'${both ? ` || size(self.policyTypes) == ${PolicyTypes.length}` : ''}`,
      message: removedDirectionMessage(v),
      fieldPath: '.direction',
    });
  }
  return withRule(out, (s) => s.direction === undefined || (oldValues as string[]).includes(s.direction), {
    rule: `!has(self.direction) || self.direction in [${oldValues.map((v) => `'${v}'`).join(', ')}]`,
    message: removedDirectionMessage(undefined),
    fieldPath: '.direction',
  });
}

export const SamplingSchema = z
  .strictObject({
    oneIn: z.number().int().min(1).max(1_000_000).default(1).meta({ description: 'Mirror one matching packet in N (1..1000000).' }),
  })
  .meta({ description: 'Sampling of matching packets; sampled-out packets are counted, not lost.' });
export type Sampling = z.infer<typeof SamplingSchema>;

export const SnapLengthSchema = z
  .number()
  .int()
  .min(0)
  .max(65535, 'snapLength must be at most 65535')
  .meta({ description: 'Bytes kept per packet; 0 = the whole packet (max 65535).' });

const rate = z.number().int().min(0).max(10_000_000_000).default(0).meta({ format: 'int64' });
export const RateLimitSchema = z
  .strictObject({
    packetsPerSecond: rate.meta({ description: 'Packets per second per node; 0 = unlimited.' }),
    bytesPerSecond: rate.meta({ description: 'Bytes per second per node; 0 = unlimited.' }),
  })
  .meta({ description: 'Cap on mirrored traffic per node; 0 = unlimited. Packets over it are counted as rateLimited.' });
export type RateLimit = z.infer<typeof RateLimitSchema>;

export const MtuSchema = withRule(z.number().int(), (m) => m === 0 || (m >= MTU_MIN && m <= MTU_MAX), {
  rule: `self == 0 || (self >= ${MTU_MIN} && self <= ${MTU_MAX})`,
  message: `mtu must be 0 (the route to the collector decides) or ${MTU_MIN}..${MTU_MAX}`,
}).meta({ description: 'Outer MTU; 0 = the MTU of the route to the collector on each node.' });

export const LimitsSchema = z
  .strictObject({
    duration: DurationSchema.optional().meta({ description: 'Stop after this long (from the first attachment); absent = no limit.' }),
    maxPackets: CountSchema.default(0).meta({ description: 'Stop after this many mirrored packets (all nodes); 0 = no limit.' }),
    maxBytes: CountSchema.default(0).meta({ description: 'Stop after this many mirrored bytes (all nodes); 0 = no limit.' }),
  })
  .meta({ description: 'The capture stops (Completed) when one is reached.' });
export type Limits = z.infer<typeof LimitsSchema>;

export const SniffPolicySpecSchema = refuseDirection(
  z.strictObject({
    podSelector: LabelSelectorSchema.default({}).meta({ description: "Pods of the policy's namespace to capture; {} selects all of them." }),
    podNames: z
      .array(ObjectNameSchema)
      .min(1, 'name at least one pod, or leave podNames out to capture every selected pod')
      .max(64, 'at most 64 pod names; select more pods with podSelector')
      .optional()
      .meta({
        description:
          'Only the pods of these names among those podSelector selects: one pod, exactly, without labelling it (what kubectl podtap capture POD uses). Absent = every selected pod.',
      }),
    nodeSelector: LabelSelectorSchema.optional().meta({ description: 'Only pods on nodes with these labels.' }),
    policyTypes: PolicyTypesSchema.default([...DEFAULT_POLICY_TYPES]),
    direction: RemovedDirectionSchema,
    filter: FilterSchema.optional(),
    sampling: SamplingSchema.optional(),
    snapLength: SnapLengthSchema.default(0),
    rateLimit: RateLimitSchema.optional(),
    collector: CollectorRefSchema,
    tunnel: TunnelSchema.prefault({}),
    mtu: MtuSchema.default(0),
    limits: LimitsSchema.optional(),
  }),
).meta({ description: 'What to capture and where to send it.' });
export type SniffPolicySpec = z.infer<typeof SniffPolicySpecSchema>;
export type SniffPolicySpecInput = z.input<typeof SniffPolicySpecSchema>;

/** One node's part of the capture, aggregated from its SniffAssignment. */
export const NodeStatusSchema = z.object({
  node: z.string().min(1).meta({ description: 'Node name.' }),
  state: NodeStateSchema,
  message: z.string().optional().meta({ description: 'Why the node is not Attached, from the agent.' }),
  pods: CountSchema.optional().meta({ description: 'Selected pods on this node.' }),
  interfaces: CountSchema.optional().meta({ description: 'Interfaces the program is attached to.' }),
  packets: CountSchema.optional().meta({ description: 'Packets mirrored.' }),
  bytes: CountSchema.optional().meta({ description: 'Bytes mirrored (original packet lengths).' }),
  lost: CountSchema.optional().meta({ description: 'Packets matched but not delivered whole.' }),
  lastReportTime: TimestampSchema.optional().meta({ description: "The agent's last report." }),
});
export type NodeStatus = z.infer<typeof NodeStatusSchema>;

/**
 * At most this many nodes in status.nodes, those not Attached first. Why a
 * bound: the list was one entry per node, rewritten by every status write; at
 * 1,000 nodes and 100 policies the first status writes alone took half of
 * kube-apiserver's CPU for 3 s (a profile of bench/controlplane.ts), and a
 * policy on 10,000 nodes would pass etcd's 1.5 MiB. Why 20: what `kubectl
 * describe` can show, and enough to see every node of a small cluster.
 */
export const MAX_STATUS_NODES = 20;

export const SniffPolicyStatusSchema = z
  .object({
    observedGeneration: GenerationSchema.optional().meta({ description: 'The metadata.generation this status describes.' }),
    conditions: z
      .array(ConditionSchema)
      .optional()
      .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'], description: 'Ready, Progressing, Degraded, Completed.' }),
    selectedPods: CountSchema.optional().meta({ description: 'Running pods the policy selects.' }),
    nodesReady: CountSchema.optional().meta({ description: 'Nodes where the capture is Attached.' }),
    nodesTotal: CountSchema.optional().meta({ description: 'Nodes with selected pods.' }),
    nodeSummary: z.string().optional().meta({ description: 'nodesReady/nodesTotal, e.g. "2/3" (printer column).' }),
    collector: z
      .string()
      .optional()
      .meta({ description: 'Where the agents send the copies, address:port, after the Service it was resolved from when spec.collector names one (printer column).' }),
    attachedInterfaces: CountSchema.optional().meta({ description: 'Pod interfaces captured, all nodes.' }),
    packets: CountSchema.optional().meta({ description: 'Packets mirrored, all nodes.' }),
    bytes: CountSchema.optional().meta({ description: 'Bytes mirrored (original packet lengths), all nodes.' }),
    fragments: CountSchema.optional().meta({ description: 'Pieces sent for packets split to fit the MTU.' }),
    lost: CountSchema.optional().meta({ description: 'Packets matched but not delivered whole, all nodes.' }),
    dropped: DroppedSchema.optional(),
    startTime: TimestampSchema.optional().meta({ description: 'First attachment.' }),
    completionTime: TimestampSchema.optional().meta({ description: 'When a limit was reached.' }),
    nodes: z
      .array(NodeStatusSchema)
      .max(MAX_STATUS_NODES)
      .optional()
      .meta({
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['node'],
        description: `Nodes with selected pods, at most ${MAX_STATUS_NODES}: those not Attached first. nodesTotal counts them all; every node's state is in its SniffNodeAssignment.`,
      }),
  })
  .meta({ description: 'Written by the controller.' });
export type SniffPolicyStatus = z.infer<typeof SniffPolicyStatusSchema>;

export const OwnerReferenceSchema = z.object({
  apiVersion: z.string(),
  kind: z.string(),
  name: z.string(),
  uid: z.string(),
  controller: z.boolean().optional(),
  blockOwnerDeletion: z.boolean().optional(),
});
export type OwnerReference = z.infer<typeof OwnerReferenceSchema>;

/** The parts of ObjectMeta podtap reads; other fields pass through. */
export const ObjectMetaSchema = z
  .object({
    name: z.string().min(1).optional(),
    generateName: z.string().optional(),
    namespace: z.string().optional(),
    uid: z.string().optional(),
    resourceVersion: z.string().optional(),
    generation: z.number().int().optional(),
    creationTimestamp: z.string().optional(),
    deletionTimestamp: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
    ownerReferences: z.array(OwnerReferenceSchema).optional(),
    finalizers: z.array(z.string()).optional(),
  })
  .loose();
export type ObjectMeta = z.infer<typeof ObjectMetaSchema>;

export const SniffPolicySchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('SniffPolicy'),
  metadata: ObjectMetaSchema,
  spec: SniffPolicySpecSchema,
  status: SniffPolicyStatusSchema.optional(),
});
export type SniffPolicy = z.infer<typeof SniffPolicySchema>;
export type SniffPolicyInput = z.input<typeof SniffPolicySchema>;

/** The UDP port the collector listens on for this spec. */
export function collectorPort(spec: Pick<SniffPolicySpec, 'collector' | 'tunnel'>): number {
  return spec.collector.port ?? defaultCollectorPort(spec.tunnel.protocol);
}

/** A zod issue path as users read it: spec.filter.ports[0].endPort. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out === '' ? '(root)' : out;
}

/** Issue list of a zod error as "field.path: reason" lines for users. */
export function describeIssues(err: z.ZodError): string[] {
  return err.issues.flatMap((i) =>
    i.code === 'unrecognized_keys'
      ? i.keys.map((k) => `${formatPath([...i.path, k])}: unknown field`)
      : [`${formatPath(i.path)}: ${i.message}`],
  );
}
