/**
 * Where a policy's copies go. `spec.collector.address` is used as written. A
 * Service is resolved to the address of one ready endpoint, not its
 * ClusterIP: the agents' program sends the copies from the node's tc layer,
 * after the point where kube-proxy/iptables would translate a ClusterIP, so a
 * ClusterIP would go nowhere.
 *
 * Which endpoint: the one the policy's assignments already use while it
 * stays ready (a capture is not split between collectors because a new
 * endpoint appeared), otherwise the lowest address (IPv4 before IPv6, then
 * by value), so every reconcile and every controller replica picks the same.
 *
 * The port: spec.collector.port, else the slice's UDP port named for the
 * tunnel (geneve or vxlan after the policy's protocol, then "tunnel"), else
 * its first UDP port, else the protocol's default (6081 Geneve, 4789 VXLAN).
 *
 * Every address and pod behind the collector (ready or not) is reported so
 * selection can leave them out: podtap never mirrors its own tunnel.
 */
import { defaultCollectorPort, parseIP, type SniffPolicySpec } from '../api/index.ts';
import type { ServiceInfo, SliceInfo, SlicePort } from './objects.ts';
import { byCodePoint } from '../util/compare.ts';

export interface CollectorExclusions {
  /** Addresses of the collector: pods with one of these IPs are not captured. */
  ips: ReadonlySet<string>;
  /** Pods (`namespace/name`) backing the collector Service. */
  pods: ReadonlySet<string>;
}

export type CollectorResolution =
  | { ok: true; address: string; port: number; exclude: CollectorExclusions }
  | { ok: false; reason: 'CollectorNotFound'; message: string; exclude: CollectorExclusions };

export interface CollectorLookup {
  service(namespace: string, name: string): ServiceInfo | undefined;
  endpointSlices(namespace: string, service: string): readonly SliceInfo[];
}

/** Compare addresses: IPv4 before IPv6, then byte by byte. Unparsable ones last. */
export function compareAddresses(a: string, b: string): number {
  const pa = parseIP(a);
  const pb = parseIP(b);
  if (!pa || !pb) return pa ? -1 : pb ? 1 : byCodePoint(a, b);
  if (pa.length !== pb.length) return pa.length - pb.length;
  for (let i = 0; i < pa.length; i++) if (pa[i] !== pb[i]) return pa[i]! - pb[i]!;
  return 0;
}

function tunnelPort(ports: readonly SlicePort[], protocol: SniffPolicySpec['tunnel']['protocol']): number | undefined {
  const udp = ports.filter((p) => p.protocol === 'UDP' && p.port !== undefined);
  const names = protocol === 'VXLAN' ? ['vxlan', 'tunnel', 'geneve'] : ['geneve', 'tunnel', 'vxlan'];
  for (const n of names) {
    const hit = udp.find((p) => p.name?.toLowerCase() === n);
    if (hit) return hit.port;
  }
  return udp[0]?.port;
}

/**
 * Resolve `spec.collector` for a policy in `namespace`. `current` is the
 * address the policy's assignments use now (kept while it stays ready).
 */
export function resolveCollector(spec: Pick<SniffPolicySpec, 'collector' | 'tunnel'>, namespace: string, lookup: CollectorLookup, current?: string): CollectorResolution {
  const { collector, tunnel } = spec;
  if (collector.address) {
    return {
      ok: true,
      address: collector.address,
      port: collector.port ?? defaultCollectorPort(tunnel.protocol),
      exclude: { ips: new Set([collector.address]), pods: new Set() },
    };
  }
  const ref = collector.service!;
  const svcNs = ref.namespace ?? namespace;
  const svcName = `${svcNs}/${ref.name}`;
  const { exclude, ready } = serviceEndpoints(lookup, svcNs, ref.name);
  if (!lookup.service(svcNs, ref.name)) {
    return { ok: false, reason: 'CollectorNotFound', message: `collector Service ${svcName} does not exist`, exclude };
  }
  if (ready.size === 0) {
    return { ok: false, reason: 'CollectorNotFound', message: `collector Service ${svcName} has no ready endpoints`, exclude };
  }
  const address = current !== undefined && ready.has(current) ? current : [...ready.keys()].sort(compareAddresses)[0]!;
  const port = collector.port ?? tunnelPort(ready.get(address)!.ports, tunnel.protocol) ?? defaultCollectorPort(tunnel.protocol);
  return { ok: true, address, port, exclude };
}

/** Every address and pod behind a Service (ready or not), and its ready addresses with their slice. */
function serviceEndpoints(lookup: CollectorLookup, namespace: string, name: string): { exclude: { ips: Set<string>; pods: Set<string> }; ready: Map<string, SliceInfo> } {
  const ips = new Set<string>();
  const pods = new Set<string>();
  const ready = new Map<string, SliceInfo>(); // address -> its slice (for the port)
  for (const s of lookup.endpointSlices(namespace, name)) {
    if (s.addressType === 'FQDN') continue;
    for (const e of s.endpoints) {
      for (const a of e.addresses) {
        ips.add(a);
        if (e.ready && !ready.has(a)) ready.set(a, s);
      }
      if (e.pod) pods.add(e.pod);
    }
  }
  return { exclude: { ips, pods }, ready };
}

/**
 * @own plus everything behind every collector Service policies may name
 * (`namespace/name`): no policy taps any podtap destination, so two policies
 * cannot mirror each other's copies back and forth.
 */
export function excludeDestinations(own: CollectorExclusions, services: readonly string[], lookup: CollectorLookup): CollectorExclusions {
  const ips = new Set(own.ips);
  const pods = new Set(own.pods);
  for (const key of services) {
    const [ns = '', name = ''] = key.split('/');
    const { exclude } = serviceEndpoints(lookup, ns, name);
    for (const ip of exclude.ips) ips.add(ip);
    for (const p of exclude.pods) pods.add(p);
  }
  return { ips, pods };
}
