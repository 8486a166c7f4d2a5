/**
 * One table of SniffPolicy specs, valid and invalid, shared by the zod test
 * (validation.test.ts) and the CRD test (cel.test.ts) so both validators are
 * held to the same answers.
 */

export interface PolicyCase {
  description: string;
  /** The spec (the collector defaults to an address unless the case sets one). */
  input: Record<string, unknown>;
  /** `valid`, or the one issue expected: path as `spec.filter.ports[0].endPort`. */
  expected: 'valid' | { path: string; message: string };
}

const collector = { address: '198.18.9.2' };

function spec(fields: Record<string, unknown>): Record<string, unknown> {
  return { collector, ...fields };
}

export function policy(specValue: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: 'podtap.io/v1alpha1', kind: 'SniffPolicy', metadata: { name: 'web-debug', namespace: 'demo' }, spec: specValue };
}

const ip = 'must be an IP address such as 198.18.1.2 or 2001:db8::1';
const cidr = 'must be a CIDR such as 10.0.0.0/8 or fd00::/8';
const portRange = 'port must be between 1 and 65535';
const exactlyOne = 'set exactly one of address or service';
const mtu = 'mtu must be 0 (the route to the collector decides) or 1280..9216';
const values = 'values must be set for In and NotIn, and empty for Exists and DoesNotExist';

export const policyCases: PolicyCase[] = [
  // valid
  { description: 'minimal: a collector address', input: spec({}), expected: 'valid' },
  {
    description: 'filtered: ports, CIDRs, flags, sampling, snapLength, rate limit, limits',
    input: spec({
      podSelector: { matchLabels: { app: 'web' }, matchExpressions: [{ key: 'tier', operator: 'In', values: ['front'] }] },
      policyTypes: ['Egress'],
      filter: {
        protocols: ['TCP', 'UDP'],
        ports: [{ port: 80 }, { port: 8000, endPort: 8100 }],
        cidrs: ['10.0.0.0/8', 'fd00::/8', '198.18.0.1/15'],
        tcpFlags: ['SYN', 'RST'],
      },
      sampling: { oneIn: 10 },
      snapLength: 256,
      rateLimit: { packetsPerSecond: 5000, bytesPerSecond: 10_000_000 },
      limits: { duration: '1h30m', maxPackets: 100000 },
    }),
    expected: 'valid',
  },
  { description: 'endPort equal to port', input: spec({ filter: { ports: [{ port: 443, endPort: 443 }] } }), expected: 'valid' },
  { description: 'IPv6 collector address', input: spec({ collector: { address: '2001:db8::2', port: 4789 } }), expected: 'valid' },
  {
    description: 'collector by Service, VXLAN',
    input: spec({ collector: { service: { name: 'podtap-collector', namespace: 'podtap-system' } }, tunnel: { protocol: 'VXLAN', vni: 42 } }),
    expected: 'valid',
  },
  { description: 'mtu 1280 (smallest)', input: spec({ mtu: 1280 }), expected: 'valid' },
  { description: 'mtu 9216 (largest)', input: spec({ mtu: 9216 }), expected: 'valid' },
  { description: 'vni 2^24-1', input: spec({ tunnel: { vni: 16_777_215 } }), expected: 'valid' },
  { description: 'snapLength 65535', input: spec({ snapLength: 65535 }), expected: 'valid' },
  { description: 'Exists without values', input: spec({ podSelector: { matchExpressions: [{ key: 'app', operator: 'Exists' }] } }), expected: 'valid' },
  { description: 'sampling without oneIn (defaults to 1)', input: spec({ sampling: {} }), expected: 'valid' },
  { description: 'podNames: one pod by name', input: spec({ podNames: ['web-1'] }), expected: 'valid' },
  { description: 'policyTypes: Ingress (to the pod)', input: spec({ policyTypes: ['Ingress'] }), expected: 'valid' },
  { description: 'policyTypes: both, Egress first', input: spec({ policyTypes: ['Egress', 'Ingress'] }), expected: 'valid' },
  // what a policy stored by 0.1 reads as (its CRD defaulted direction: Both): it means what it meant, and is not refused
  { description: 'direction Both of podtap 0.1, alone', input: spec({ direction: 'Both' }), expected: 'valid' },
  { description: 'direction Both of podtap 0.1, beside both types', input: spec({ direction: 'Both', policyTypes: ['Ingress', 'Egress'] }), expected: 'valid' },

  // invalid: one issue each
  { description: 'podNames: not an object name', input: spec({ podNames: ['web-1', 'Web_2'] }), expected: { path: 'spec.podNames[1]', message: 'must be a lowercase DNS-1123 name' } },
  { description: 'podNames: empty', input: spec({ podNames: [] }), expected: { path: 'spec.podNames', message: 'name at least one pod, or leave podNames out to capture every selected pod' } },
  { description: 'CIDR prefix too long', input: spec({ filter: { cidrs: ['10.0.0.0/8', '10.0.0.0/33'] } }), expected: { path: 'spec.filter.cidrs[1]', message: cidr } },
  { description: 'CIDR octet out of range', input: spec({ filter: { cidrs: ['10.0.0.300/8'] } }), expected: { path: 'spec.filter.cidrs[0]', message: cidr } },
  { description: 'CIDR without prefix', input: spec({ filter: { cidrs: ['10.0.0.0'] } }), expected: { path: 'spec.filter.cidrs[0]', message: cidr } },
  { description: 'IPv6 CIDR prefix 129', input: spec({ filter: { cidrs: ['fd00::/129'] } }), expected: { path: 'spec.filter.cidrs[0]', message: cidr } },
  { description: 'port 0', input: spec({ filter: { ports: [{ port: 0 }] } }), expected: { path: 'spec.filter.ports[0].port', message: portRange } },
  { description: 'port 70000', input: spec({ filter: { ports: [{ port: 70000 }] } }), expected: { path: 'spec.filter.ports[0].port', message: portRange } },
  {
    description: 'endPort below port',
    input: spec({ filter: { ports: [{ port: 443 }, { port: 8100, endPort: 8000 }] } }),
    expected: { path: 'spec.filter.ports[1].endPort', message: 'endPort must be greater than or equal to port' },
  },
  {
    description: 'unknown protocol',
    input: spec({ filter: { protocols: ['TCP', 'IGMP'] } }),
    expected: { path: 'spec.filter.protocols[1]', message: 'protocol must be one of TCP, UDP, ICMP, ICMPv6, SCTP' },
  },
  { description: 'unknown tunnel protocol', input: spec({ tunnel: { protocol: 'GRE' } }), expected: { path: 'spec.tunnel.protocol', message: 'tunnel protocol must be Geneve or VXLAN' } },
  { description: 'snapLength 65536', input: spec({ snapLength: 65536 }), expected: { path: 'spec.snapLength', message: 'snapLength must be at most 65535' } },
  { description: 'vni 2^24', input: spec({ tunnel: { vni: 16_777_216 } }), expected: { path: 'spec.tunnel.vni', message: 'vni must be less than 2^24 (16777216)' } },
  {
    description: 'collector with both address and service',
    input: spec({ collector: { address: '198.18.9.2', service: { name: 'podtap-collector' } } }),
    expected: { path: 'spec.collector', message: exactlyOne },
  },
  { description: 'collector with neither address nor service', input: spec({ collector: { port: 6081 } }), expected: { path: 'spec.collector', message: exactlyOne } },
  { description: 'no collector', input: { policyTypes: ['Ingress'] }, expected: { path: 'spec.collector', message: 'collector is required: set address or service' } },
  { description: 'collector address octet 256', input: spec({ collector: { address: '198.18.9.256' } }), expected: { path: 'spec.collector.address', message: ip } },
  { description: 'collector address with leading zero', input: spec({ collector: { address: '198.18.09.2' } }), expected: { path: 'spec.collector.address', message: ip } },
  { description: 'collector address IPv4-mapped IPv6', input: spec({ collector: { address: '::ffff:198.18.9.2' } }), expected: { path: 'spec.collector.address', message: ip } },
  { description: 'collector address with a zone', input: spec({ collector: { address: 'fe80::1%eth0' } }), expected: { path: 'spec.collector.address', message: ip } },
  { description: 'collector address is a host name', input: spec({ collector: { address: 'collector.local' } }), expected: { path: 'spec.collector.address', message: ip } },
  { description: 'bad duration', input: spec({ limits: { duration: '10 minutes' } }), expected: { path: 'spec.limits.duration', message: 'must be a duration such as 30s, 10m, 1h30m or 7d' } },
  { description: 'mtu 1000', input: spec({ mtu: 1000 }), expected: { path: 'spec.mtu', message: mtu } },
  { description: 'mtu 9217', input: spec({ mtu: 9217 }), expected: { path: 'spec.mtu', message: mtu } },
  { description: 'In without values', input: spec({ podSelector: { matchExpressions: [{ key: 'app', operator: 'In' }] } }), expected: { path: 'spec.podSelector.matchExpressions[0].values', message: values } },
  {
    description: 'Exists with values',
    input: spec({ nodeSelector: { matchExpressions: [{ key: 'zone', operator: 'Exists', values: ['a'] }] } }),
    expected: { path: 'spec.nodeSelector.matchExpressions[0].values', message: values },
  },
  { description: 'misspelt field', input: spec({ snaplength: 64 }), expected: { path: 'spec.snaplength', message: 'unknown field' } },
  { description: 'policyTypes: empty', input: spec({ policyTypes: [] }), expected: { path: 'spec.policyTypes', message: 'name Ingress, Egress or both, or leave policyTypes out to capture both' } },
  { description: 'policyTypes: in lower case', input: spec({ policyTypes: ['ingress'] }), expected: { path: 'spec.policyTypes[0]', message: 'policy type must be Ingress or Egress' } },
  { description: 'policyTypes: Both is not a type', input: spec({ policyTypes: ['Egress', 'Both'] }), expected: { path: 'spec.policyTypes[1]', message: 'policy type must be Ingress or Egress' } },
  { description: 'policyTypes: twice the same', input: spec({ policyTypes: ['Egress', 'Egress'] }), expected: { path: 'spec.policyTypes', message: 'each policy type at most once' } },
  // podtap 0.1's spec.direction meant the host-side veth's tc hook (Ingress = sent by the pod):
  // refused with its conversion, never read with NetworkPolicy's meaning nor pruned silently
  { description: 'removed direction: Ingress', input: spec({ direction: 'Ingress' }), expected: { path: 'spec.direction', message: 'removed in 0.2: its Ingress meant sent by the pod; write spec.policyTypes: [Egress]' } },
  { description: 'removed direction: Egress', input: spec({ direction: 'Egress' }), expected: { path: 'spec.direction', message: 'removed in 0.2: its Egress meant sent to the pod; write spec.policyTypes: [Ingress]' } },
  {
    description: 'removed direction: Both beside one policy type',
    input: spec({ direction: 'Both', policyTypes: ['Ingress'] }),
    expected: { path: 'spec.direction', message: 'removed in 0.2: its Both meant both ways; delete it, spec.policyTypes says otherwise' },
  },
  {
    description: 'removed direction: any other value',
    input: spec({ direction: 'both' }),
    expected: { path: 'spec.direction', message: 'removed in 0.2: write spec.policyTypes (Ingress: traffic to the pod, Egress: traffic from the pod)' },
  },
  { description: 'sampling oneIn 0', input: spec({ sampling: { oneIn: 0 } }), expected: { path: 'spec.sampling.oneIn', message: 'Too small: expected number to be >=1' } },
  { description: 'negative maxPackets', input: spec({ limits: { maxPackets: -1 } }), expected: { path: 'spec.limits.maxPackets', message: 'Too small: expected number to be >=0' } },
  { description: 'fractional port', input: spec({ filter: { ports: [{ port: 80.5 }] } }), expected: { path: 'spec.filter.ports[0].port', message: 'Invalid input: expected int, received number' } },
];
