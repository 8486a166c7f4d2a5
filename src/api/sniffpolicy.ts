/**
 * SniffPolicy (podtap.io/v1alpha1): the single source of truth for the policy's
 * TypeScript types, its runtime validation, and (through scripts/gen-crds.ts)
 * the CRD's openAPIV3Schema. Field names follow DESIGN.md.
 */
import { z } from 'zod';

export const GROUP = 'podtap.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/** Kubernetes LabelSelector (apimachinery meta/v1). */
export const LabelSelectorSchema = z
  .object({
    matchLabels: z.record(z.string(), z.string()).optional(),
    matchExpressions: z
      .array(
        z.object({
          key: z.string().min(1),
          operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
          values: z.array(z.string()).optional(),
        }),
      )
      .optional(),
  })
  .meta({ description: 'Label selector: matchLabels and matchExpressions are ANDed; {} selects everything.' });
export type LabelSelector = z.infer<typeof LabelSelectorSchema>;

export const Protocols = ['TCP', 'UDP', 'ICMP', 'ICMPv6', 'SCTP'] as const;
export type Protocol = (typeof Protocols)[number];
export const TcpFlags = ['FIN', 'SYN', 'RST', 'PSH', 'ACK', 'URG', 'ECE', 'CWR'] as const;
export type TcpFlag = (typeof TcpFlags)[number];

const port = z.number().int().min(1).max(65535);

export const PortRangeSchema = z
  .object({
    port: port.meta({ description: 'First port of the range.' }),
    endPort: port.optional().meta({ description: 'Last port of the range (inclusive); defaults to port.' }),
  })
  .refine((r) => r.endPort === undefined || r.endPort >= r.port, {
    message: 'endPort must be greater than or equal to port',
    path: ['endPort'],
  });
export type PortRange = z.infer<typeof PortRangeSchema>;

export const CidrSchema = z.union([z.cidrv4(), z.cidrv6()]).meta({ description: 'An IPv4 or IPv6 CIDR.' });
export const IpSchema = z.union([z.ipv4(), z.ipv6()]).meta({ description: 'An IPv4 or IPv6 address.' });

/** Go-style duration as kubectl users write it: 30s, 10m, 1h30m. */
export const DurationSchema = z
  .string()
  .regex(/^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$/, 'a duration such as 30s, 10m or 1h30m')
  .meta({ description: 'Duration such as 30s, 10m or 1h30m.' });

export const FilterSchema = z
  .object({
    protocols: z.array(z.enum(Protocols)).optional().meta({ description: 'Protocols to capture; empty = all, including non-IP frames.' }),
    ports: z.array(PortRangeSchema).max(16).optional().meta({ description: 'TCP/UDP/SCTP ports matched at either end of the packet.' }),
    cidrs: z.array(CidrSchema).max(1024).optional().meta({ description: 'Addresses of the peer (the other end from the pod).' }),
    tcpFlags: z.array(z.enum(TcpFlags)).optional().meta({ description: 'TCP packets match when any of these flags is set; other protocols are not affected.' }),
  })
  .meta({ description: 'What to capture. Every list empty or absent means no restriction.' });
export type Filter = z.infer<typeof FilterSchema>;

export const CollectorRefSchema = z
  .object({
    address: IpSchema.optional().meta({ description: 'Collector IP address, routable from the nodes.' }),
    service: z
      .object({
        name: z.string().min(1),
        namespace: z.string().min(1).optional().meta({ description: "Defaults to the policy's namespace." }),
      })
      .optional()
      .meta({ description: "Collector Service; its endpoints' pod IPs are used (a ClusterIP is not translated for mirrored packets)." }),
    port: port.optional().meta({ description: 'UDP port of the tunnel; defaults to 6081 (Geneve) or 4789 (VXLAN).' }),
  })
  .refine((c) => (c.address === undefined) !== (c.service === undefined), {
    message: 'set exactly one of address or service',
  });
export type CollectorRef = z.infer<typeof CollectorRefSchema>;

export const TunnelProtocols = ['Geneve', 'VXLAN'] as const;
export const TunnelSchema = z.object({
  protocol: z.enum(TunnelProtocols).default('Geneve').meta({
    description: 'Geneve carries podtap metadata (exact rebuild, pod names, direction); VXLAN is for receivers that only speak VXLAN.',
  }),
  vni: z.number().int().min(0).max(16_777_215).default(0).meta({ description: 'Virtual network identifier (24 bits).' }),
});

export const SniffPolicySpecSchema = z.object({
  podSelector: LabelSelectorSchema.default({}).meta({ description: "Pods of the policy's namespace to capture; {} selects all of them." }),
  nodeSelector: LabelSelectorSchema.optional().meta({ description: 'Only pods on nodes with these labels.' }),
  direction: z.enum(['Ingress', 'Egress', 'Both']).default('Both').meta({
    description: 'Ingress: packets sent by the pod (the host-side veth receives them). Egress: packets to the pod. Both.',
  }),
  filter: FilterSchema.optional(),
  sampling: z
    .object({ oneIn: z.number().int().min(1).max(1_000_000).default(1).meta({ description: 'Mirror one matching packet in N.' }) })
    .optional(),
  snapLength: z.number().int().min(0).max(65535).default(0).meta({ description: 'Bytes kept per packet; 0 = the whole packet.' }),
  rateLimit: z
    .object({
      packetsPerSecond: z.number().int().min(0).max(10_000_000_000).default(0),
      bytesPerSecond: z.number().int().min(0).max(10_000_000_000).default(0),
    })
    .optional()
    .meta({ description: 'Cap on mirrored traffic per node; 0 = unlimited. Packets over it are counted as rate-limited.' }),
  collector: CollectorRefSchema,
  tunnel: TunnelSchema.optional(),
  mtu: z
    .number()
    .int()
    .refine((m) => m === 0 || (m >= 1280 && m <= 9216), 'mtu must be 0 (the route to the collector decides) or 1280..9216')
    .default(0)
    .meta({ description: 'Outer MTU; 0 = the MTU of the route to the collector on each node.' }),
  limits: z
    .object({
      duration: DurationSchema.optional(),
      maxPackets: z.number().int().min(0).default(0),
      maxBytes: z.number().int().min(0).default(0),
    })
    .optional()
    .meta({ description: 'The capture stops (Completed) when one is reached; 0 = no limit.' }),
});
export type SniffPolicySpec = z.infer<typeof SniffPolicySpecSchema>;
export type SniffPolicySpecInput = z.input<typeof SniffPolicySpecSchema>;

export const ObjectMetaSchema = z
  .object({
    name: z.string().min(1).optional(),
    namespace: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  })
  .loose();

export const SniffPolicySchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('SniffPolicy'),
  metadata: ObjectMetaSchema,
  spec: SniffPolicySpecSchema,
});
export type SniffPolicy = z.infer<typeof SniffPolicySchema>;

/** Parse seconds from a policy duration ("1h30m" -> 5400). */
export function durationSeconds(d: string): number {
  let total = 0;
  for (const m of d.matchAll(/([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g)) {
    const n = Number(m[1]);
    total += m[2] === 'h' ? n * 3600 : m[2] === 'm' ? n * 60 : m[2] === 's' ? n : n / 1000;
  }
  return total;
}

/** Issue list of a zod error as "field.path: reason" lines for users. */
export function describeIssues(err: z.ZodError): string[] {
  return err.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
}
