/** The examples users copy must be valid for the CLI (zod) and for the API server (the CRD). */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { buildCrds, type JsonSchema } from '../../../src/api/crd.ts';
import { parseSniffPolicyYaml } from '../../../src/api/parse.ts';
import { applyDefaults, celViolations, keywordErrors, unknownFields } from './k8s-schema.ts';

const root = join(import.meta.dirname, '..', '..', '..');
const crd = buildCrds()[0] as { spec: { versions: { schema: { openAPIV3Schema: JsonSchema } }[] } };
const schema = crd.spec.versions[0]!.schema.openAPIV3Schema;

describe('examples/', () => {
  it.each([
    {
      input: 'examples/sniffpolicy.yaml',
      expected: {
        metadata: { name: 'web-debug', namespace: 'demo' },
        spec: {
          podSelector: { matchLabels: { app: 'web' } },
          policyTypes: ['Ingress', 'Egress'],
          snapLength: 0,
          collector: { address: '198.18.9.2', port: 6081 },
          tunnel: { protocol: 'Geneve', vni: 0 },
          mtu: 0,
        },
      },
    },
    {
      input: 'examples/sniffpolicy-filtered.yaml',
      expected: {
        spec: {
          filter: { protocols: ['TCP'], ports: [{ port: 80 }, { port: 443 }], cidrs: ['10.0.0.0/8', 'fd00::/8'] },
          sampling: { oneIn: 10 },
          snapLength: 256,
          rateLimit: { packetsPerSecond: 2000, bytesPerSecond: 4000000 },
        },
      },
    },
    {
      input: 'examples/sniffpolicy-service.yaml',
      expected: {
        spec: {
          collector: { service: { name: 'podtap-collector', namespace: 'podtap-system' } },
          tunnel: { protocol: 'VXLAN', vni: 42 },
          limits: { duration: '10m', maxPackets: 100000, maxBytes: 0 },
        },
      },
    },
  ])('$input', async ({ input, expected }) => {
    const text = await readFile(join(root, input), 'utf8');
    const { policies } = parseSniffPolicyYaml(text, input);
    expect(policies).toHaveLength(1);
    expect(policies[0]).toMatchObject(expected);
    if (input.endsWith('/sniffpolicy.yaml')) expect(policies[0]!.spec.limits).toBeUndefined();

    const value = applyDefaults(schema, parse(text));
    expect([...keywordErrors(schema, value), ...unknownFields(schema, value)]).toEqual([]);
    expect(celViolations(schema, value)).toEqual([]);
  });
});
