/**
 * The CRD must refuse exactly what zod refuses: the policy table runs through
 * the generated openAPIV3Schema as the API server would apply it (defaults,
 * unknown fields, OpenAPI keywords, CEL rules evaluated with @bufbuild/cel).
 */
import { describe, expect, it } from 'vitest';
import { buildCrds, type JsonSchema } from '../../../src/api/crd.ts';
import { SniffPolicySchema, formatPath } from '../../../src/api/sniffpolicy.ts';
import { SniffNodeAssignmentSchema } from '../../../src/api/assignment.ts';
import { isCIDR, isIPAddress } from '../../../src/api/netaddr.ts';
import { applyDefaults, celViolations, eachSchemaNode, keywordErrors, unknownFields, type CelRule } from './k8s-schema.ts';
import { policy, policyCases } from './policy-cases.ts';

function schemaOf(index: number): JsonSchema {
  const crd = buildCrds()[index] as { spec: { versions: { schema: { openAPIV3Schema: JsonSchema } }[] } };
  return crd.spec.versions[0]!.schema.openAPIV3Schema;
}
const policySchema = schemaOf(0);
const assignmentSchema = schemaOf(1);

/** What the API server would say about an object: defaulted value, schema-keyword paths, CEL failures. */
function admit(schema: JsonSchema, input: unknown, onRule?: (rule: string, passed: boolean) => void) {
  const value = applyDefaults(schema, input);
  return {
    value: value as { spec: unknown },
    keywords: [...keywordErrors(schema, value), ...unknownFields(schema, value)],
    cel: celViolations(schema, value, onRule).map((v) => `${v.path}: ${v.message}`),
  };
}

const outcomes = new Map<string, Set<boolean>>();
const record = (rule: string, passed: boolean) => {
  if (!outcomes.has(rule)) outcomes.set(rule, new Set());
  outcomes.get(rule)!.add(passed);
};

describe('SniffPolicy CRD agrees with zod', () => {
  it.each(policyCases)('$description', ({ input, expected }) => {
    const got = admit(policySchema, policy(input), record);
    if (expected === 'valid') {
      expect(got.keywords).toEqual([]);
      expect(got.cel).toEqual([]);
      // The API server's defaulting and zod's produce the same spec.
      expect(got.value.spec).toEqual(SniffPolicySchema.parse(policy(input)).spec);
    } else if (got.cel.length > 0) {
      // A CEL rule caught it: same path, same message as zod, nothing else.
      expect(got.cel).toEqual([`${expected.path}: ${expected.message}`]);
      expect(got.keywords).toEqual([]);
    } else {
      // A plain keyword (bounds, enum, pattern, required) or an unknown field caught it, at zod's path.
      expect([...new Set(got.keywords)]).toEqual([expected.path]);
    }
  });

  it('exercises every CEL rule of the policy CRD both ways', () => {
    const rules = new Set<string>();
    eachSchemaNode(policySchema, (node) => {
      for (const r of (node['x-kubernetes-validations'] ?? []) as CelRule[]) rules.add(r.rule);
    });
    expect(rules.size).toBeGreaterThanOrEqual(5);
    for (const rule of rules) expect([rule, [...(outcomes.get(rule) ?? [])].sort()]).toEqual([rule, [false, true]]);
  });
});

const CONFIG_ID = '0123456789abcdef';
const assignment = {
  apiVersion: 'podtap.io/v1alpha1',
  kind: 'SniffNodeAssignment',
  metadata: { name: 'node-a', namespace: 'podtap-system' },
  spec: {
    nodeName: 'node-a',
    configs: [
      {
        id: CONFIG_ID,
        config: {
          hooks: ['ingress', 'egress'],
          filter: { ports: [{ port: 443 }], cidrs: ['198.18.0.0/15'] },
          snapLength: 0,
          tunnel: { protocol: 'Geneve', vni: 0, largeFrames: 'Segment' },
          mtu: 0,
          collector: { address: '198.18.9.2', port: 6081 },
        },
      },
    ],
    entries: [
      {
        policy: { namespace: 'shop', name: 'web-debug', uid: '6b1f0c5e-0000-4000-8000-000000000001', generation: 3 },
        config: CONFIG_ID,
        pods: [{ name: 'web-0', uid: 'u-1', ips: ['198.18.5.10', '2001:db8::a'] }],
        limits: { maxPackets: 0, maxBytes: 0 },
        stopped: false,
        since: '2025-01-02T03:00:00Z',
      },
    ],
  },
  status: {
    observedGeneration: 2,
    entries: [
      {
        policyUid: '6b1f0c5e-0000-4000-8000-000000000001',
        state: 'Attached',
        attachedInterfaces: 1,
        interfaces: [{ pod: 'web-0', name: 'veth1a2b', ifindex: 12, policyTypes: ['Ingress', 'Egress'] }],
        counters: { seen: 10, matched: 9, mirrored: 9, bytes: 5400, dropped: { rateLimited: 0 } },
        collectorReachable: true,
        lastReportTime: '2025-01-02T03:04:05Z',
      },
    ],
  },
};

describe('SniffNodeAssignment CRD agrees with zod', () => {
  const entry = assignment.spec.entries[0]!;
  const config = assignment.spec.configs[0]!;
  const withEntry = (over: object) => ({ ...assignment, spec: { ...assignment.spec, entries: [{ ...entry, ...over }] } });
  const withConfig = (over: object) => ({ ...assignment, spec: { ...assignment.spec, configs: [{ ...config, ...over }] } });
  it.each([
    { description: 'a full node object with status', input: assignment, expected: [] },
    { description: 'a pod IP that is not one', input: withEntry({ pods: [{ name: 'web-0', uid: 'u-1', ips: ['198.18.5.300'] }] }), expected: ['spec.entries[0].pods[0].ips[0]'] },
    { description: 'an mtu out of range', input: withConfig({ config: { ...config.config, mtu: 600 } }), expected: ['spec.configs[0].config.mtu'] },
    { description: 'a config id that is no hash', input: withEntry({ config: 'web' }), expected: ['spec.entries[0].config'] },
    { description: 'an entry without the time it was given', input: withEntry({ since: undefined }), expected: ['spec.entries[0].since'] },
    { description: 'more entries than the bound', input: { ...assignment, spec: { ...assignment.spec, entries: Array.from({ length: 65 }, () => entry) } }, expected: ['spec.entries'] },
    { description: 'a status entry naming no policy', input: { ...assignment, status: { entries: [{ state: 'Attached' }] } }, expected: ['status.entries[0].policyUid'] },
  ])('$description', ({ input, expected }) => {
    const got = admit(assignmentSchema, JSON.parse(JSON.stringify(input)));
    expect([...got.keywords, ...got.cel.map((l) => l.split(':')[0])]).toEqual(expected);
    const zod = SniffNodeAssignmentSchema.safeParse(JSON.parse(JSON.stringify(input)));
    expect(zod.error?.issues.map((i) => formatPath(i.path)) ?? []).toEqual(expected);
  });
});

describe('Kubernetes isIP / isCIDR semantics', () => {
  it.each([
    { input: '198.18.9.2', expected: true },
    { input: '0.0.0.0', expected: true },
    { input: '255.255.255.255', expected: true },
    { input: '198.18.9', expected: false },
    { input: '198.18.9.2.1', expected: false },
    { input: '198.18.09.2', expected: false },
    { input: '198.18.9.256', expected: false },
    { input: ' 198.18.9.2', expected: false },
    { input: '::', expected: true },
    { input: '::1', expected: true },
    { input: '2001:db8::1', expected: true },
    { input: '2001:DB8:0:0:0:0:0:1', expected: true },
    { input: '1:2:3:4:5:6:7::', expected: true },
    { input: '1:2:3:4:5:6:7:8', expected: true },
    { input: '1:2:3:4:5:6:7:8:9', expected: false },
    { input: '1:2:3:4:5:6:7', expected: false },
    { input: '1::2::3', expected: false },
    { input: ':::1', expected: false },
    { input: '2001:db8::12345', expected: false },
    { input: '::198.18.9.2', expected: true },
    { input: '::ffff:198.18.9.2', expected: false },
    { input: '::ffff:c612:902', expected: false },
    { input: '198.18.9.2::', expected: false },
    { input: 'fe80::1%eth0', expected: false },
    { input: '', expected: false },
  ])('isIP($input) = $expected', ({ input, expected }) => {
    expect(isIPAddress(input)).toBe(expected);
  });

  it.each([
    { input: '10.0.0.0/8', expected: true },
    { input: '10.0.0.1/8', expected: true },
    { input: '0.0.0.0/0', expected: true },
    { input: '10.0.0.0/32', expected: true },
    { input: '10.0.0.0/33', expected: false },
    { input: '10.0.0.0/08', expected: false },
    { input: '10.0.0.0/', expected: false },
    { input: '10.0.0.0', expected: false },
    { input: 'fd00::/8', expected: true },
    { input: '::/0', expected: true },
    { input: 'fd00::/128', expected: true },
    { input: 'fd00::/129', expected: false },
    { input: '::ffff:10.0.0.0/104', expected: false },
    { input: 'fe80::%eth0/64', expected: false },
  ])('isCIDR($input) = $expected', ({ input, expected }) => {
    expect(isCIDR(input)).toBe(expected);
  });
});
