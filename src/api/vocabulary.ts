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

/** Ingress: sent by the pod (the host-side veth receives it). Egress: to the pod. */
export const Directions = ['Ingress', 'Egress', 'Both'] as const;
export type Direction = (typeof Directions)[number];

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
