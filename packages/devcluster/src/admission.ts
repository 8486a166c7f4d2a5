/**
 * What kube-apiserver itself adds to some built-in objects on write:
 * - Services get a ClusterIP from the service CIDR (10.96.0.0/12, single
 *   stack IPv4, as a default kubeadm cluster) and NodePorts from
 *   30000–32767; both are immutable once set and never handed out twice;
 * - Pods without a ServiceAccount get `default` (the ServiceAccount
 *   admission plugin; it does not mount tokens here).
 * Allocations are tracked from the store's events, so a dry run or a
 * refused write allocates nothing.
 */
import type { Admission, Api } from './api.ts';
import { invalid, type FieldError } from './errors.ts';
import { isPlainObject, type KubeObject } from './objects.ts';
import type { ResourceDef } from './registry.ts';

export const SERVICE_CIDR = '10.96.0.0/12';
const CIDR_BASE = (10 << 24) | (96 << 16);
const CIDR_SIZE = 1 << 20;
const NODE_PORT_MIN = 30000;
const NODE_PORT_MAX = 32767;

function ipToOffset(ip: string): number | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
  if (!m) return undefined;
  const n = ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
  const off = n - (CIDR_BASE >>> 0);
  return off > 0 && off < CIDR_SIZE - 1 ? off : undefined;
}

function offsetToIp(off: number): string {
  const n = ((CIDR_BASE >>> 0) + off) >>> 0;
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

interface ServiceSpec {
  type?: string;
  clusterIP?: string;
  clusterIPs?: string[];
  ipFamilies?: string[];
  ipFamilyPolicy?: string;
  ports?: { port?: number; nodePort?: number; name?: string; protocol?: string }[];
  internalTrafficPolicy?: string;
  externalTrafficPolicy?: string;
}

export class ServiceAllocator {
  private readonly ips = new Set<number>();
  private readonly nodePorts = new Set<number>();
  private nextIp = 1;
  private nextPort = NODE_PORT_MIN;

  constructor(api: Api) {
    api.store.onChange((storage, e) => {
      if (storage !== '/services') return;
      if (e.prev) this.release(e.prev);
      if (e.type !== 'DELETED') this.hold(e.object);
    });
  }

  private specOf(o: KubeObject): ServiceSpec {
    return (isPlainObject(o.spec) ? o.spec : {}) as ServiceSpec;
  }

  private hold(o: KubeObject): void {
    const s = this.specOf(o);
    for (const ip of s.clusterIPs ?? (s.clusterIP ? [s.clusterIP] : [])) {
      const off = ipToOffset(ip);
      if (off !== undefined) this.ips.add(off);
    }
    for (const p of s.ports ?? []) if (typeof p.nodePort === 'number') this.nodePorts.add(p.nodePort);
  }

  private release(o: KubeObject): void {
    const s = this.specOf(o);
    for (const ip of s.clusterIPs ?? (s.clusterIP ? [s.clusterIP] : [])) {
      const off = ipToOffset(ip);
      if (off !== undefined) this.ips.delete(off);
    }
    for (const p of s.ports ?? []) if (typeof p.nodePort === 'number') this.nodePorts.delete(p.nodePort);
  }

  private freeIp(): number {
    for (let i = 0; i < CIDR_SIZE - 2; i++) {
      const off = ((this.nextIp - 1 + i) % (CIDR_SIZE - 2)) + 1;
      if (!this.ips.has(off)) {
        this.nextIp = off + 1;
        return off;
      }
    }
    throw new Error('service CIDR exhausted');
  }

  private freePort(): number {
    const span = NODE_PORT_MAX - NODE_PORT_MIN + 1;
    for (let i = 0; i < span; i++) {
      const p = NODE_PORT_MIN + ((this.nextPort - NODE_PORT_MIN + i) % span);
      if (!this.nodePorts.has(p)) {
        this.nextPort = p + 1;
        return p;
      }
    }
    throw new Error('node port range exhausted');
  }

  readonly admit: Admission = (def, obj, old) => {
    if (def.storage !== '/services') return;
    const spec = (isPlainObject(obj.spec) ? obj.spec : (obj.spec = {})) as ServiceSpec;
    const errs: FieldError[] = [];
    const type = spec.type ?? 'ClusterIP';
    const oldSpec = old ? this.specOf(old) : undefined;
    if (type === 'ExternalName') {
      delete spec.clusterIP;
      delete spec.clusterIPs;
    } else if (oldSpec?.clusterIP) {
      // An update that leaves the ClusterIP out keeps it; changing it is refused.
      if (spec.clusterIP === undefined || spec.clusterIP === '') {
        spec.clusterIP = oldSpec.clusterIP;
        spec.clusterIPs = oldSpec.clusterIPs ?? [oldSpec.clusterIP];
      } else if (spec.clusterIP !== oldSpec.clusterIP) {
        errs.push({ type: 'FieldValueInvalid', field: 'spec.clusterIPs[0]', value: [spec.clusterIP], hasValue: true, detail: 'may not change once set' });
      }
      spec.clusterIPs ??= [spec.clusterIP];
    } else if (spec.clusterIP === 'None') {
      spec.clusterIPs = ['None'];
    } else if (spec.clusterIP) {
      const off = ipToOffset(spec.clusterIP);
      if (off === undefined) {
        errs.push({
          type: 'FieldValueInvalid',
          field: 'spec.clusterIPs',
          value: [spec.clusterIP],
          hasValue: true,
          detail: `failed to allocate IP ${spec.clusterIP}: the provided IP (${spec.clusterIP}) is not in the valid range. The range of valid IPs is ${SERVICE_CIDR}`,
        });
      } else if (this.ips.has(off)) {
        errs.push({ type: 'FieldValueInvalid', field: 'spec.clusterIPs', value: [spec.clusterIP], hasValue: true, detail: `failed to allocate IP ${spec.clusterIP}: provided IP is already allocated` });
      }
      spec.clusterIPs = [spec.clusterIP];
    } else {
      spec.clusterIP = offsetToIp(this.freeIp());
      spec.clusterIPs = [spec.clusterIP];
    }
    if (type !== 'ExternalName') {
      const families = spec.ipFamilies ?? ['IPv4'];
      families.forEach((f, i) => {
        if (f !== 'IPv4') errs.push({ type: 'FieldValueInvalid', field: `spec.ipFamilies[${i}]`, value: f, hasValue: true, detail: 'not configured on this cluster' });
      });
      spec.ipFamilies = families;
      spec.ipFamilyPolicy ??= 'SingleStack';
      spec.internalTrafficPolicy ??= 'Cluster';
    }
    if (type === 'NodePort' || type === 'LoadBalancer') {
      spec.externalTrafficPolicy ??= 'Cluster';
      (spec.ports ?? []).forEach((p, i) => {
        const before = oldSpec?.ports?.find((q) => q.port === p.port && (q.protocol ?? 'TCP') === (p.protocol ?? 'TCP'))?.nodePort;
        if (p.nodePort === undefined) p.nodePort = before ?? this.freePort();
        else if (p.nodePort !== before && this.nodePorts.has(p.nodePort)) {
          errs.push({ type: 'FieldValueInvalid', field: `spec.ports[${i}].nodePort`, value: p.nodePort, hasValue: true, detail: 'provided port is already allocated' });
        } else if (p.nodePort < NODE_PORT_MIN || p.nodePort > NODE_PORT_MAX) {
          errs.push({ type: 'FieldValueInvalid', field: `spec.ports[${i}].nodePort`, value: p.nodePort, hasValue: true, detail: `provided port is not in the valid range. The range of valid ports is ${NODE_PORT_MIN}-${NODE_PORT_MAX}` });
        }
      });
    }
    if (errs.length) throw invalid(def.group, def.kind, obj.metadata.name ?? '', errs);
  };
}

/** The ServiceAccount admission plugin's defaulting, without token mounting. */
export const defaultServiceAccount: Admission = (def: ResourceDef, obj: KubeObject, old: KubeObject | undefined) => {
  if (def.storage !== '/pods' || old) return;
  const spec = (isPlainObject(obj.spec) ? obj.spec : (obj.spec = {})) as { serviceAccountName?: string; serviceAccount?: string };
  spec.serviceAccountName ||= spec.serviceAccount || 'default';
  spec.serviceAccount = spec.serviceAccountName;
};
