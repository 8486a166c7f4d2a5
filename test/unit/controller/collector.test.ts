import { describe, expect, it } from 'vitest';
import { SniffPolicySpecSchema } from '../../../src/api/index.ts';
import { compareAddresses, resolveCollector } from '../../../src/controller/collector.ts';
import { worldFrom } from '../../../src/controller/world.ts';
import type { KubeObject } from '../../../src/k8s/index.ts';
import { NS, service, slice } from './fixtures.ts';

const svcRef = (extra: Record<string, unknown> = {}) => ({ collector: { service: { name: 'collector' }, ...extra } });

interface Case {
  description: string;
  spec: Record<string, unknown>;
  objects: { services?: KubeObject[]; slices?: KubeObject[] };
  current?: string;
  expected: { ok: true; address: string; port: number } | { ok: false; message: string };
  excluded?: { ips: string[]; pods: string[] };
}

const cases: Case[] = [
  {
    description: 'an address is used as written, with the Geneve port by default',
    spec: { collector: { address: '198.18.1.2' } },
    objects: {},
    expected: { ok: true, address: '198.18.1.2', port: 6081 },
    excluded: { ips: ['198.18.1.2'], pods: [] },
  },
  {
    description: 'an address with VXLAN defaults to 4789',
    spec: { collector: { address: '2001:db8::2' }, tunnel: { protocol: 'VXLAN' } },
    objects: {},
    expected: { ok: true, address: '2001:db8::2', port: 4789 },
  },
  {
    description: 'an explicit port wins',
    spec: { collector: { address: '198.18.1.2', port: 7000 } },
    objects: {},
    expected: { ok: true, address: '198.18.1.2', port: 7000 },
  },
  {
    description: 'a missing Service is CollectorNotFound',
    spec: svcRef(),
    objects: {},
    expected: { ok: false, message: `collector Service ${NS}/collector does not exist` },
  },
  {
    description: 'a Service without ready endpoints is CollectorNotFound, its endpoints still excluded',
    spec: svcRef(),
    objects: { services: [service('collector')], slices: [slice('c-1', 'collector', [{ ip: '198.18.5.1', ready: false, pod: 'col-0' }])] },
    expected: { ok: false, message: `collector Service ${NS}/collector has no ready endpoints` },
    excluded: { ips: ['198.18.5.1'], pods: [`${NS}/col-0`] },
  },
  {
    description: 'a Service without any slice is CollectorNotFound',
    spec: svcRef(),
    objects: { services: [service('collector')] },
    expected: { ok: false, message: `collector Service ${NS}/collector has no ready endpoints` },
  },
  {
    description: 'the lowest ready address across slices (not the ClusterIP), the port named geneve',
    spec: svcRef(),
    objects: {
      services: [service('collector')],
      slices: [
        slice('c-1', 'collector', [{ ip: '198.18.5.30' }, { ip: '198.18.5.4', ready: false }], [{ name: 'geneve', port: 16081, protocol: 'UDP' }]),
        slice('c-2', 'collector', [{ ip: '198.18.5.20', pod: 'col-1' }], [{ name: 'metrics', port: 9090 }, { name: 'geneve', port: 16082, protocol: 'UDP' }]),
      ],
    },
    expected: { ok: true, address: '198.18.5.20', port: 16082 },
    excluded: { ips: ['198.18.5.30', '198.18.5.4', '198.18.5.20'], pods: [`${NS}/col-1`] },
  },
  {
    description: 'the address in use is kept while it is ready',
    spec: svcRef(),
    current: '198.18.5.30',
    objects: { services: [service('collector')], slices: [slice('c-1', 'collector', [{ ip: '198.18.5.30' }, { ip: '198.18.5.20' }])] },
    expected: { ok: true, address: '198.18.5.30', port: 6081 },
  },
  {
    description: 'the address in use is replaced when it is no longer ready',
    spec: svcRef(),
    current: '198.18.5.30',
    objects: { services: [service('collector')], slices: [slice('c-1', 'collector', [{ ip: '198.18.5.30', ready: false }, { ip: '198.18.5.40' }])] },
    expected: { ok: true, address: '198.18.5.40', port: 6081 },
  },
  {
    description: 'VXLAN picks the port named vxlan over tunnel',
    spec: { ...svcRef(), tunnel: { protocol: 'VXLAN' } },
    objects: {
      services: [service('collector')],
      slices: [slice('c-1', 'collector', [{ ip: '198.18.5.1' }], [{ name: 'tunnel', port: 1000, protocol: 'UDP' }, { name: 'vxlan', port: 1001, protocol: 'UDP' }])],
    },
    expected: { ok: true, address: '198.18.5.1', port: 1001 },
  },
  {
    description: 'no named port: the first UDP one; TCP ports never count',
    spec: svcRef(),
    objects: {
      services: [service('collector')],
      slices: [slice('c-1', 'collector', [{ ip: '198.18.5.1' }], [{ name: 'http', port: 80 }, { name: 'data', port: 5555, protocol: 'UDP' }])],
    },
    expected: { ok: true, address: '198.18.5.1', port: 5555 },
  },
  {
    description: 'spec.collector.port wins over the slice',
    spec: svcRef({ port: 7777 }),
    objects: { services: [service('collector')], slices: [slice('c-1', 'collector', [{ ip: '198.18.5.1' }], [{ name: 'geneve', port: 16081, protocol: 'UDP' }])] },
    expected: { ok: true, address: '198.18.5.1', port: 7777 },
  },
  {
    description: 'a Service in another namespace',
    spec: { collector: { service: { name: 'collector', namespace: 'podtap-system' } } },
    objects: { services: [service('collector', 'podtap-system')], slices: [slice('c-1', 'collector', [{ ip: '198.18.7.1' }], [], 'podtap-system')] },
    expected: { ok: true, address: '198.18.7.1', port: 6081 },
  },
];

describe('resolveCollector', () => {
  it.each(cases)('$description', ({ spec, objects, current, expected, excluded }) => {
    const { world } = worldFrom(objects);
    const r = resolveCollector(SniffPolicySpecSchema.parse(spec), NS, world, current);
    if (expected.ok) {
      expect(r).toMatchObject({ ok: true, address: expected.address, port: expected.port });
    } else {
      expect(r).toMatchObject({ ok: false, reason: 'CollectorNotFound', message: expected.message });
    }
    if (excluded) {
      expect([...r.exclude.ips].sort()).toEqual([...excluded.ips].sort());
      expect([...r.exclude.pods]).toEqual(excluded.pods);
    }
  });
});

describe('compareAddresses', () => {
  it.each([
    { description: 'numeric, not textual', input: ['198.18.0.10', '198.18.0.9'], expected: 1 },
    { description: 'IPv4 before IPv6', input: ['2001:db8::1', '198.18.0.1'], expected: 1 },
    { description: 'IPv6 by value', input: ['2001:db8::2', '2001:db8::10'], expected: -1 },
  ])('$description', ({ input, expected }) => {
    expect(Math.sign(compareAddresses(input[0]!, input[1]!))).toBe(expected);
  });
});
