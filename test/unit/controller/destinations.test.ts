import { describe, expect, it } from 'vitest';
import { parseControllerArgs } from '../../../src/controller/cli.ts';
import { cidrContains, defaultAllowList, destinationRefusal, parseAllowList } from '../../../src/controller/destinations.ts';

const ALLOW = { services: ['podtap-system/podtap-collector'], cidrs: ['198.18.0.0/15', '2001:db8::/32'] };

describe('destinationRefusal: the controller re-checks what admission allowed', () => {
  it.each([
    { description: 'the install collector by Service', input: { service: { name: 'podtap-collector', namespace: 'podtap-system' } }, expected: undefined },
    { description: 'an address in an allowed network', input: { address: '198.19.255.1' }, expected: undefined },
    { description: 'an IPv6 address in an allowed network', input: { address: '2001:db8:9::2' }, expected: undefined },
    { description: 'just outside the network', input: { address: '198.20.0.1' }, expected: 'spec.collector.address 198.20.0.1 is not an allowed destination' },
    { description: 'the cloud metadata address', input: { address: '169.254.169.254' }, expected: 'spec.collector.address 169.254.169.254 is not an allowed destination' },
    { description: 'an IPv6 address outside', input: { address: '2001:db9::1' }, expected: 'is not an allowed destination' },
    { description: "the same name in the tenant's namespace", input: { service: { name: 'podtap-collector' } }, expected: 'spec.collector.service shop/podtap-collector is not an allowed destination (allowed: podtap-system/podtap-collector;' },
    { description: 'kube-dns', input: { service: { name: 'kube-dns', namespace: 'kube-system' } }, expected: 'spec.collector.service kube-system/kube-dns is not' },
  ])('$description', ({ input, expected }) => {
    const r = destinationRefusal({ collector: input }, 'shop', ALLOW);
    if (expected === undefined) expect(r).toBeUndefined();
    else expect(r).toContain(expected);
  });

  it('by default only the install collector: no address at all', () => {
    const def = defaultAllowList('podtap-system');
    expect(def).toEqual({ services: ['podtap-system/podtap-collector'], cidrs: [] });
    expect(destinationRefusal({ collector: { address: '198.18.0.1' } }, 'shop', def)).toContain('no address is allowed, only a collector Service');
  });

  it.each([
    { description: 'IPv4 /15', input: ['198.18.0.0/15', '198.19.1.1'], expected: true },
    { description: 'IPv4 /32 exact', input: ['10.0.0.1/32', '10.0.0.1'], expected: true },
    { description: 'IPv4 /32 other', input: ['10.0.0.1/32', '10.0.0.2'], expected: false },
    { description: 'a /0 takes every address of its family', input: ['0.0.0.0/0', '8.8.8.8'], expected: true },
    { description: 'never the other family', input: ['0.0.0.0/0', '2001:db8::1'], expected: false },
    { description: 'IPv6 /33 boundary', input: ['2001:db8::/33', '2001:db8:8000::1'], expected: false },
  ])('cidrContains: $description', ({ input, expected }) => {
    expect(cidrContains(input[0]!, input[1]!)).toBe(expected);
  });
});

describe('the controller flags', () => {
  it.each([
    { description: 'no flag: the default list (decided at start, from --namespace)', input: [], expected: undefined },
    { description: 'repeated and comma-separated', input: ['--allowed-collector-service', 'a/b,c/d', '--allowed-collector-cidr', '10.0.0.0/8', '--allowed-collector-cidr', '2001:db8::/32'], expected: { services: ['a/b', 'c/d'], cidrs: ['10.0.0.0/8', '2001:db8::/32'] } },
    { description: 'a CIDR list alone allows no Service', input: ['--allowed-collector-cidr', '10.0.0.0/8'], expected: { services: [], cidrs: ['10.0.0.0/8'] } },
  ])('$description', ({ input, expected }) => {
    const r = parseControllerArgs(input);
    expect(r.help).toBe(false);
    if (!r.help) expect(r.options.destinations).toEqual(expected);
  });

  it.each([
    { description: 'a Service without namespace', input: ['--allowed-collector-service', 'collector'], expected: 'allowed collector Service "collector" is not NAMESPACE/NAME' },
    { description: 'a path', input: ['--allowed-collector-service', 'a/b/c'], expected: '"a/b/c" is not NAMESPACE/NAME' },
    { description: 'an address without prefix', input: ['--allowed-collector-cidr', '10.0.0.1'], expected: 'allowed collector network "10.0.0.1" is not a CIDR' },
  ])('refuses $description, naming it', ({ input, expected }) => {
    expect(() => parseControllerArgs(input)).toThrow(expected);
  });

  it.each([
    { description: 'no ceiling by default', input: [], expected: { packetsPerSecond: 0, bytesPerSecond: 0 } },
    { description: 'both ceilings', input: ['--max-packets-per-second', '10000', '--max-bytes-per-second', '5000000'], expected: { packetsPerSecond: 10000, bytesPerSecond: 5000000 } },
  ])('rate ceiling: $description', ({ input, expected }) => {
    const r = parseControllerArgs(input);
    if (!r.help) expect(r.options.rateCeiling).toEqual(expected);
  });

  it('refuses a rate ceiling that is not a whole number, naming it', () => {
    expect(() => parseControllerArgs(['--max-packets-per-second', '1e3'])).toThrow('--max-packets-per-second: expected a whole number (0 = no ceiling), got "1e3"');
  });

  it('parseAllowList trims and drops empty entries', () => {
    expect(parseAllowList([' a/b , '], [''])).toEqual({ services: ['a/b'], cidrs: [] });
  });
});
