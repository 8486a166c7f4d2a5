/**
 * What one data-plane object is compiled for, and the -D flags that say it.
 * Everything that bounds a loop or a copy (MTU, snap length) and everything the
 * filter tests is a compile-time constant; node facts that bound nothing
 * (addresses, ifindexes) go into the pt_config map at load time instead.
 */
import { isIPv6 } from 'node:net';
import type { Filter, LargeFrameMode, Protocol, SniffPolicySpec, TcpFlag } from '../api/sniffpolicy.ts';
import { cacheValueSize, checkMtu, type TunnelKind } from './sizes.ts';

export type Direction = 'Ingress' | 'Egress' | 'Both';

export interface DataplaneConfig {
  direction: Direction;
  protocols: Protocol[];
  ports: { port: number; endPort?: number | undefined }[];
  cidrs: string[];
  tcpFlags: TcpFlag[];
  oneIn: number;
  snapLength: number;
  rateLimit: { packetsPerSecond: number; bytesPerSecond: number };
  tunnel: TunnelKind;
  vni: number;
  largeFrames: LargeFrameMode;
  collector: { address: string; port: number };
}

/** Node facts that change the compiled object. */
export interface NodeParams {
  /** L3 MTU of the route to the collector. */
  mtu: number;
  /** Possible CPUs (/sys/devices/system/cpu/possible): scratch cache entries. */
  nrCpus: number;
}

export const DEFAULT_PORT: Record<TunnelKind, number> = { Geneve: 6081, VXLAN: 4789 };

/** A policy spec (collector already resolved to an address) as a data-plane config. */
export function configFromSpec(
  spec: Pick<SniffPolicySpec, 'direction' | 'filter' | 'sampling' | 'snapLength' | 'rateLimit' | 'tunnel'>,
  collector: { address: string; port?: number | undefined },
): DataplaneConfig {
  const tunnel = spec.tunnel?.protocol ?? 'Geneve';
  const filter: Filter = spec.filter ?? {};
  return {
    direction: spec.direction ?? 'Both',
    protocols: [...new Set(filter.protocols ?? [])],
    ports: filter.ports ?? [],
    cidrs: filter.cidrs ?? [],
    tcpFlags: [...new Set(filter.tcpFlags ?? [])],
    oneIn: spec.sampling?.oneIn ?? 1,
    snapLength: spec.snapLength ?? 0,
    rateLimit: {
      packetsPerSecond: spec.rateLimit?.packetsPerSecond ?? 0,
      bytesPerSecond: spec.rateLimit?.bytesPerSecond ?? 0,
    },
    tunnel,
    vni: spec.tunnel?.vni ?? 0,
    largeFrames: spec.tunnel?.largeFrames ?? 'Segment',
    collector: { address: collector.address, port: collector.port ?? DEFAULT_PORT[tunnel] },
  };
}

const PROTO_BITS: Record<Protocol, number> = { TCP: 1, UDP: 2, ICMP: 4, ICMPv6: 8, SCTP: 16 };
const TCP_FLAG_BITS: Record<TcpFlag, number> = {
  FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10, URG: 0x20, ECE: 0x40, CWR: 0x80,
};

export function outerIsV6(cfg: DataplaneConfig): boolean {
  return isIPv6(cfg.collector.address);
}

/** The -D flags of one object, in a stable order (they are part of the cache key). */
export function compileDefines(cfg: DataplaneConfig, node: NodeParams): string[] {
  checkMtu(node.mtu);
  const outerV6 = outerIsV6(cfg);
  const ranges = cfg.ports.map((p) => `{${p.port},${p.endPort ?? p.port}}`);
  const defs: [string, string | number][] = [
    ['PT_MTU', node.mtu],
    ['PT_NR_CPUS', node.nrCpus],
    ['PT_OUTER_V6', outerV6 ? 1 : 0],
    ['PT_TUNNEL', cfg.tunnel === 'Geneve' ? 1 : 2],
    ['PT_VNI', cfg.vni],
    // kernels whose bpf_skb_adjust_room() lacks the encapsulation flags
    // (before 5.12) refuse it at run time: the program then fragments
    ['PT_SEGMENT_TCP', cfg.largeFrames === 'Segment' ? 1 : 0],
    ['PT_TUNNEL_PORT', cfg.collector.port],
    ['PT_SNAPLEN', cfg.snapLength],
    ['PT_SAMPLE_ONE_IN', cfg.oneIn],
    ['PT_RATE_PPS', `${cfg.rateLimit.packetsPerSecond}ull`],
    ['PT_RATE_BPS', `${cfg.rateLimit.bytesPerSecond}ull`],
    ['PT_PROTO_MASK', cfg.protocols.reduce((m, p) => m | PROTO_BITS[p], 0)],
    ['PT_NPORTS', ranges.length],
    ['PT_PORT_RANGES', ranges.length ? `{${ranges.join(',')}}` : '{{0,0}}'],
    ['PT_CIDR_FILTER', cfg.cidrs.length ? 1 : 0],
    ['PT_TCP_FLAGS', cfg.tcpFlags.reduce((m, f) => m | TCP_FLAG_BITS[f], 0)],
    // PODTAP_DEBUG_CACHE_DELTA shrinks the cache below what the verifier
    // accepts: a testing aid that makes the kernel reject the program
    ['PT_CACHE_SIZE', cacheValueSize({ mtu: node.mtu, outerV6, tunnel: cfg.tunnel }) + Number(process.env.PODTAP_DEBUG_CACHE_DELTA ?? 0)],
  ];
  return defs.map(([k, v]) => `-D${k}=${v}`);
}

/** Which tap programs a direction attaches: host-side ingress = sent by the pod. */
export function hooksFor(direction: Direction): ('ingress' | 'egress')[] {
  return direction === 'Both' ? ['ingress', 'egress'] : direction === 'Ingress' ? ['ingress'] : ['egress'];
}
