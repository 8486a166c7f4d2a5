/**
 * The words of the capture configuration, declared once for every part of
 * podtap above the data plane: the schemas (and so the CRDs), the controller,
 * the agent, `podtap sniff` and `kubectl podtap` take them from here.
 *
 * The tunnels, their UDP ports and the MTU bounds are facts of the wire
 * format and of the data plane's arithmetic: they are declared in the single
 * size module (src/wire/sizes.ts, checked against bpf/include/consts.h) and
 * the API names them here.
 */
import { MTU_MAX, MTU_MIN, TUNNEL_KINDS, TUNNELS, type TunnelKind } from '../wire/sizes.ts';

export { MTU_MAX, MTU_MIN };

/** Encapsulations of the mirrored packets. */
export const TunnelProtocols = TUNNEL_KINDS as readonly TunnelKind[];
export type TunnelProtocol = TunnelKind;
export const DEFAULT_TUNNEL: TunnelProtocol = 'Geneve';

/** The collector's UDP port when the policy names none: the tunnel's IANA port. */
export function defaultCollectorPort(protocol: TunnelProtocol): number {
  return TUNNELS[protocol].port;
}

/**
 * What a policy captures, named from the pod's side as NetworkPolicy names it
 * (and as the pcapng direction flags say it): Ingress = traffic to the pod
 * (the pod receives it, pcapng "inbound"), Egress = traffic from the pod (it
 * sends it, "outbound").
 */
export const PolicyTypes = ['Ingress', 'Egress'] as const;
export type PolicyType = (typeof PolicyTypes)[number];
export const DEFAULT_POLICY_TYPES: readonly PolicyType[] = PolicyTypes;

/** The tc hooks of a pod's host-side veth, in the data plane's words. */
export const TcHooks = ['ingress', 'egress'] as const;
export type TcHook = (typeof TcHooks)[number];

/**
 * The one place the two namings meet: the host-side veth's peer is the pod,
 * so what the pod sends arrives at the host side's tc ingress hook and what
 * the pod receives leaves through its tc egress hook. Hence the names cross.
 */
export const TC_HOOK_OF: { readonly [T in PolicyType]: TcHook } = { Ingress: 'egress', Egress: 'ingress' };

/** The tc hooks that see @policyTypes, in the data plane's order (ingress first), each once. */
export function tcHooksFor(policyTypes: readonly PolicyType[]): TcHook[] {
  const wanted = new Set(policyTypes.map((t) => TC_HOOK_OF[t]));
  return TcHooks.filter((h) => wanted.has(h));
}

/** The policy types a set of tc hooks captures, in PolicyTypes' order (the inverse of tcHooksFor). */
export function policyTypesOf(hooks: readonly TcHook[]): PolicyType[] {
  return PolicyTypes.filter((t) => hooks.includes(TC_HOOK_OF[t]));
}

/**
 * `spec.direction` (podtap 0.1) named the tc hook of the host-side veth, so
 * its Ingress meant "sent by the pod": the opposite of NetworkPolicy. It was
 * removed in 0.2 rather than flipped, so that a policy written for the old
 * meaning is refused instead of capturing the other direction. Each old value,
 * what it meant and what to write instead. `Both` alone is still accepted: it
 * means what it meant, and 0.1's CRD defaulted it into every stored policy,
 * so refusing it would stop every capture of the cluster on upgrade.
 */
export const REMOVED_DIRECTIONS = {
  Ingress: { meant: 'sent by the pod', write: 'write spec.policyTypes: [Egress]' },
  Egress: { meant: 'sent to the pod', write: 'write spec.policyTypes: [Ingress]' },
  // refused only beside spec.policyTypes that say otherwise
  Both: { meant: 'both ways', write: 'delete it, spec.policyTypes says otherwise' },
} as const;
export type RemovedDirection = keyof typeof REMOVED_DIRECTIONS;
export const REMOVED_IN = '0.2';

/**
 * Why a policy with spec.direction is refused, naming the conversion; it
 * follows the field's path ("spec.direction: removed in 0.2: …") and stays
 * within 100 characters, as every CRD rule's message.
 */
export function removedDirectionMessage(value: unknown): string {
  const head = `removed in ${REMOVED_IN}`;
  const old = typeof value === 'string' && Object.hasOwn(REMOVED_DIRECTIONS, value) ? REMOVED_DIRECTIONS[value as RemovedDirection] : undefined;
  if (!old) return `${head}: write spec.policyTypes (Ingress: traffic to the pod, Egress: traffic from the pod)`;
  return `${head}: its ${value} meant ${old.meant}; ${old.write}`;
}

export const Protocols = ['TCP', 'UDP', 'ICMP', 'ICMPv6', 'SCTP'] as const;
export type Protocol = (typeof Protocols)[number];

export const TcpFlags = ['FIN', 'SYN', 'RST', 'PSH', 'ACK', 'URG', 'ECE', 'CWR'] as const;
export type TcpFlag = (typeof TcpFlags)[number];

const DURATION_UNITS_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * A duration as kubectl users write them, plus days: 30s, 10m, 1h30m, 250ms,
 * 7d. The policy schema (limits.duration, and so the CRD's pattern) and every
 * command-line flag that takes a duration accept exactly this.
 */
export const DURATION_PATTERN = /^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$/;
export const DURATION_EXAMPLES = '30s, 10m, 1h30m or 7d';

/** "1h30m" → 5400000 ms; undefined when it is not a duration (DURATION_PATTERN). */
export function parseDuration(s: string): number | undefined {
  if (!DURATION_PATTERN.test(s)) return undefined;
  let ms = 0;
  for (const m of s.matchAll(/([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)/g)) ms += Number(m[1]) * DURATION_UNITS_MS[m[2] as keyof typeof DURATION_UNITS_MS];
  return Math.round(ms);
}
