/**
 * Where a policy may send copies is the cluster admin's decision, not the
 * policy author's (docs/security.md). The admin lists the collector Services
 * (`namespace/name`) and the networks (CIDR) a policy may name; by default
 * only the install's own collector Service. The API server refuses any other
 * destination at admission (the chart's ValidatingAdmissionPolicy
 * `<release>-destinations`, rendered from the same chart values as the
 * controller's flags); the controller checks again here, so a policy admitted
 * before the list changed, or on a cluster without the admission policy, does
 * not mirror anywhere the admin did not allow: it is refused with reason
 * DestinationNotAllowed and its running assignments are removed.
 */
import { isCIDR, parseIP, type SniffPolicySpec } from '../api/index.ts';

/** The collector Service of an install, when the admin lists nothing (the chart's name for release "podtap"). */
export const DEFAULT_COLLECTOR_SERVICE = 'podtap-collector';

export interface DestinationAllowList {
  /** Collector Services a policy may name, `namespace/name`. */
  services: readonly string[];
  /** Networks a policy may name by `spec.collector.address`. */
  cidrs: readonly string[];
}

/** Only the install's own collector. */
export function defaultAllowList(installNamespace: string): DestinationAllowList {
  return { services: [`${installNamespace}/${DEFAULT_COLLECTOR_SERVICE}`], cidrs: [] };
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * The allow list from flag values (each may hold several, comma-separated).
 * Throws naming the entry that is neither `namespace/name` nor a CIDR.
 */
export function parseAllowList(services: readonly string[], cidrs: readonly string[]): DestinationAllowList {
  const split = (xs: readonly string[]) => xs.flatMap((x) => x.split(',')).map((x) => x.trim()).filter((x) => x !== '');
  const svc = split(services);
  for (const s of svc) {
    const [ns, name, ...rest] = s.split('/');
    if (rest.length || !ns || !name || !DNS_LABEL.test(ns) || !DNS_LABEL.test(name) || ns.length > 63 || name.length > 63) {
      throw new Error(`allowed collector Service "${s}" is not NAMESPACE/NAME`);
    }
  }
  const nets = split(cidrs);
  for (const c of nets) if (!isCIDR(c)) throw new Error(`allowed collector network "${c}" is not a CIDR (such as 198.18.0.0/15 or 2001:db8::/32)`);
  return { services: svc, cidrs: nets };
}

/** Whether `address` lies in `cidr` (same family; prefix bits compared). */
export function cidrContains(cidr: string, address: string): boolean {
  const slash = cidr.indexOf('/');
  const net = parseIP(cidr.slice(0, slash));
  const ip = parseIP(address);
  const bits = Number(cidr.slice(slash + 1));
  if (!net || !ip || net.length !== ip.length) return false;
  for (let i = 0; i < net.length && bits > i * 8; i++) {
    const take = Math.min(8, bits - i * 8);
    const mask = (0xff << (8 - take)) & 0xff;
    if ((net[i]! & mask) !== (ip[i]! & mask)) return false;
  }
  return true;
}

/**
 * Undefined when the policy's destination is allowed; otherwise the message
 * of its DestinationNotAllowed condition (the same words the admission
 * policy uses).
 */
export function destinationRefusal(spec: Pick<SniffPolicySpec, 'collector'>, namespace: string, allow: DestinationAllowList): string | undefined {
  const { collector } = spec;
  if (collector.address !== undefined) {
    if (allow.cidrs.some((c) => cidrContains(c, collector.address!))) return undefined;
    const where = allow.cidrs.length ? `allowed networks: ${allow.cidrs.join(', ')}` : 'no address is allowed, only a collector Service';
    return `spec.collector.address ${collector.address} is not an allowed destination (${where}; the cluster admin sets them: chart value destinations)`;
  }
  const ref = collector.service!;
  const key = `${ref.namespace ?? namespace}/${ref.name}`;
  if (allow.services.includes(key)) return undefined;
  const where = allow.services.length ? `allowed: ${allow.services.join(', ')}` : 'no Service is allowed';
  return `spec.collector.service ${key} is not an allowed destination (${where}; the cluster admin sets them: chart value destinations)`;
}
