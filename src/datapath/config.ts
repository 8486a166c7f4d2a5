/**
 * What one data-plane object is compiled for, and the -D flags that say it.
 * Everything that bounds a loop or a copy (MTU, snap length) and everything the
 * filter tests is a compile-time constant; node facts that bound nothing
 * (addresses, ifindexes) go into the pt_config map at load time instead.
 */
import { isIPv6 } from 'node:net';
import { cacheValueSize, checkMtu, TUNNELS, type TunnelKind } from '../wire/sizes.ts';

/** The protocol filter's bits (PT_P_* in bpf/include/consts.h). */
export const PROTO_BITS = { TCP: 1, UDP: 2, ICMP: 4, ICMPv6: 8, SCTP: 16 } as const;
/** The TCP header's flag bits (PT_TCP_FLAGS). */
export const TCP_FLAG_BITS = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10, URG: 0x20, ECE: 0x40, CWR: 0x80 } as const;
export type FilterProtocol = keyof typeof PROTO_BITS;
export type FilterTcpFlag = keyof typeof TCP_FLAG_BITS;

/**
 * What one object is compiled for: the capture configuration as the API
 * writes it into an assignment (src/api/assignment.ts CaptureConfig, every
 * default applied; the type checker proves it fits), of which the data plane
 * reads these fields. It applies no default of its own.
 */
export interface DataplaneConfig {
  filter: {
    protocols: readonly FilterProtocol[];
    ports: readonly { port: number; endPort?: number | undefined }[];
    cidrs: readonly string[];
    tcpFlags: readonly FilterTcpFlag[];
  };
  sampling: { oneIn: number };
  snapLength: number;
  rateLimit: { packetsPerSecond: number; bytesPerSecond: number };
  tunnel: { protocol: TunnelKind; vni: number };
  collector: { address: string; port: number };
}

/** Node facts that change the compiled object. */
export interface NodeParams {
  /** L3 MTU of the path to the collector. */
  mtu: number;
  /** Possible CPUs (/sys/devices/system/cpu/possible): scratch cache entries. */
  nrCpus: number;
}

export function outerIsV6(cfg: DataplaneConfig): boolean {
  return isIPv6(cfg.collector.address);
}

/** The -D flags of one object, in a stable order (they are part of the cache key). */
export function compileDefines(cfg: DataplaneConfig, node: NodeParams): string[] {
  checkMtu(node.mtu);
  const outerV6 = outerIsV6(cfg);
  const { filter } = cfg;
  const ranges = filter.ports.map((p) => `{${p.port},${p.endPort ?? p.port}}`);
  const defs: [string, string | number][] = [
    ['PT_MTU', node.mtu],
    ['PT_NR_CPUS', node.nrCpus],
    ['PT_OUTER_V6', outerV6 ? 1 : 0],
    ['PT_TUNNEL', TUNNELS[cfg.tunnel.protocol].id],
    ['PT_VNI', cfg.tunnel.vni],
    ['PT_TUNNEL_PORT', cfg.collector.port],
    ['PT_SNAPLEN', cfg.snapLength],
    ['PT_SAMPLE_ONE_IN', cfg.sampling.oneIn],
    ['PT_RATE_PPS', `${cfg.rateLimit.packetsPerSecond}ull`],
    ['PT_RATE_BPS', `${cfg.rateLimit.bytesPerSecond}ull`],
    ['PT_PROTO_MASK', filter.protocols.reduce((m, p) => m | PROTO_BITS[p], 0)],
    ['PT_NPORTS', ranges.length],
    ['PT_PORT_RANGES', ranges.length ? `{${ranges.join(',')}}` : '{{0,0}}'],
    ['PT_CIDR_FILTER', filter.cidrs.length ? 1 : 0],
    ['PT_TCP_FLAGS', filter.tcpFlags.reduce((m, f) => m | TCP_FLAG_BITS[f], 0)],
    // PODTAP_DEBUG_CACHE_DELTA shrinks the cache below what the verifier
    // accepts: a testing aid that makes the kernel reject the program
    ['PT_CACHE_SIZE', cacheValueSize({ mtu: node.mtu, outerV6, tunnel: cfg.tunnel.protocol }) + Number(process.env.PODTAP_DEBUG_CACHE_DELTA ?? 0)],
  ];
  return defs.map(([k, v]) => `-D${k}=${v}`);
}
