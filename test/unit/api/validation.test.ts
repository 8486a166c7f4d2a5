import { describe, expect, it } from 'vitest';
import { SniffPolicySchema, describeIssues, collectorPort } from '../../../src/api/sniffpolicy.ts';
import { parseSniffPolicyYaml } from '../../../src/api/parse.ts';
import { UserError, ExitCode } from '../../../src/util/errors.ts';
import { policy, policyCases } from './policy-cases.ts';

describe('SniffPolicy validation (zod)', () => {
  it.each(policyCases)('$description', ({ input, expected }) => {
    const result = SniffPolicySchema.safeParse(policy(input));
    if (expected === 'valid') {
      expect(result.error ? describeIssues(result.error) : []).toEqual([]);
    } else {
      expect(result.success).toBe(false);
      expect(describeIssues(result.error!)).toEqual([`${expected.path}: ${expected.message}`]);
    }
  });

  it('applies the defaults of a minimal policy', () => {
    const parsed = SniffPolicySchema.parse(policy({ collector: { address: '198.18.9.2' } }));
    expect(parsed.spec).toEqual({
      podSelector: {},
      policyTypes: ['Ingress', 'Egress'],
      snapLength: 0,
      collector: { address: '198.18.9.2' },
      tunnel: { protocol: 'Geneve', vni: 0 },
      mtu: 0,
    });
  });

  it.each([
    { description: 'limits: zero counts', input: { limits: { duration: '10m' } }, expected: { duration: '10m', maxPackets: 0, maxBytes: 0 } },
    { description: 'tunnel: vni alone', input: { tunnel: { vni: 7 } }, expected: { protocol: 'Geneve', vni: 7 } },
    { description: 'sampling: oneIn 1', input: { sampling: {} }, expected: { oneIn: 1 } },
    { description: 'rateLimit: unlimited', input: { rateLimit: { packetsPerSecond: 10 } }, expected: { packetsPerSecond: 10, bytesPerSecond: 0 } },
  ])('nested defaults: $description', ({ input, expected }) => {
    const parsed = SniffPolicySchema.parse(policy({ collector: { address: '198.18.9.2' }, ...input }));
    const key = Object.keys(input)[0] as keyof typeof parsed.spec;
    expect(parsed.spec[key]).toEqual(expected);
  });

  it.each([
    { description: 'Geneve default port', input: { protocol: 'Geneve' as const, port: undefined }, expected: 6081 },
    { description: 'VXLAN default port', input: { protocol: 'VXLAN' as const, port: undefined }, expected: 4789 },
    { description: 'explicit port wins', input: { protocol: 'VXLAN' as const, port: 9999 }, expected: 9999 },
  ])('collectorPort: $description', ({ input, expected }) => {
    expect(collectorPort({ collector: { address: '198.18.9.2', port: input.port }, tunnel: { protocol: input.protocol, vni: 0 } })).toBe(expected);
  });
});

const good = `apiVersion: podtap.io/v1alpha1
kind: SniffPolicy
metadata: {name: web-debug, namespace: demo}
spec:
  podSelector: {matchLabels: {app: web}}
  collector: {address: 198.18.9.2}
`;

const service = `apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
`;

function message(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).exitCode).toBe(ExitCode.badInput);
    return (err as Error).message;
  }
  throw new Error('expected a UserError');
}

describe('parseSniffPolicyYaml', () => {
  it.each([
    { description: 'one policy', input: good, expected: ['web-debug'] },
    { description: 'policy among other kinds', input: `${service}---\n${good}`, expected: ['web-debug'] },
    { description: 'two policies and empty documents', input: `---\n${good}---\n---\n${good.replace('web-debug', 'second')}`, expected: ['web-debug', 'second'] },
    {
      description: 'a kind: List',
      input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [{ apiVersion: 'podtap.io/v1alpha1', kind: 'SniffPolicy', metadata: { name: 'in-list' }, spec: { collector: { address: '2001:db8::9' } } }] }),
      expected: ['in-list'],
    },
  ])('reads $description', ({ input, expected }) => {
    const { policies } = parseSniffPolicyYaml(input, 'p.yaml');
    expect(policies.map((p) => p.metadata.name)).toEqual(expected);
    expect(policies[0]!.spec.tunnel).toEqual({ protocol: 'Geneve', vni: 0 });
  });

  it.each([
    {
      description: 'every issue of an invalid policy, with its path',
      input: good.replace('collector: {address: 198.18.9.2}', 'collector: {address: 198.18.9.2}\n  mtu: 1000\n  filter: {ports: [{port: 90, endPort: 80}], cidrs: [10.0.0.0/40]}'),
      expected: [
        'p.yaml: invalid SniffPolicy web-debug:',
        '  spec.filter.ports[0].endPort: endPort must be greater than or equal to port',
        '  spec.filter.cidrs[0]: must be a CIDR such as 10.0.0.0/8 or fd00::/8',
        '  spec.mtu: mtu must be 0 (the route to the collector decides) or 1280..9216',
      ].join('\n'),
    },
    {
      description: 'the document of each invalid policy in a stream',
      input: `${good}---\n${good.replace('web-debug', 'bad').replace('198.18.9.2', '198.18.9.999')}`,
      expected: 'p.yaml, document 2: invalid SniffPolicy bad:\n  spec.collector.address: must be an IP address such as 198.18.1.2 or 2001:db8::1',
    },
    { description: 'no SniffPolicy, only other kinds', input: service, expected: 'p.yaml: no SniffPolicy found (found Service)' },
    { description: 'an empty file', input: '', expected: 'p.yaml: no SniffPolicy found' },
    { description: 'a YAML syntax error with its position', input: 'kind: SniffPolicy\nspec: {collector: [}\n', expected: /^p\.yaml:2:\d+: invalid YAML: / },
    { description: 'a wrong apiVersion', input: good.replace('v1alpha1', 'v1'), expected: /apiVersion: Invalid input: expected "podtap.io\/v1alpha1"/ },
    { description: 'a document that is not a mapping', input: `${good}---\n- a\n- b\n`, expected: 'p.yaml: document 2 is not a mapping' },
  ])('refuses $description', ({ input, expected }) => {
    const text = message(() => parseSniffPolicyYaml(input, 'p.yaml'));
    if (typeof expected === 'string') expect(text).toBe(expected);
    else expect(text).toMatch(expected);
  });
});
