/**
 * The Kubernetes CEL library functions added to @bufbuild/cel, with the
 * semantics of k8s.io/apiserver/pkg/cel/library (ip.go, cidr.go).
 */
import { describe, expect, it } from 'vitest';
import { compileRule, evaluateRule, formatAddr, parseAddr } from '../src/cel.ts';

function run(rule: string, self: unknown = null): boolean | string {
  const r = evaluateRule(compileRule({ rule, message: 'failed' }), self, undefined);
  return r.ok ? true : r.message;
}

describe('Kubernetes CEL IP and CIDR library', () => {
  it.each([
    { description: 'isIP v4', input: 'isIP("198.18.0.1")', expected: true },
    { description: 'isIP v6', input: 'isIP("2001:db8::1")', expected: true },
    { description: 'isIP refuses leading zeros', input: '!isIP("198.018.0.1")', expected: true },
    { description: 'isIP refuses IPv4-mapped IPv6', input: '!isIP("::ffff:198.18.0.1")', expected: true },
    { description: 'isIP refuses a zone', input: '!isIP("fe80::1%eth0")', expected: true },
    { description: 'isIP refuses a CIDR', input: '!isIP("10.0.0.0/8")', expected: true },
    { description: 'family 4', input: 'ip("198.18.0.1").family() == 4', expected: true },
    { description: 'family 6', input: 'ip("2001:db8::1").family() == 6', expected: true },
    { description: 'ip equality is canonical', input: 'ip("2001:db8:0::1") == ip("2001:db8::1")', expected: true },
    { description: 'isLoopback', input: 'ip("127.0.0.1").isLoopback() && ip("::1").isLoopback()', expected: true },
    { description: 'isGlobalUnicast', input: 'ip("198.18.0.1").isGlobalUnicast() && !ip("fe80::1").isGlobalUnicast()', expected: true },
    { description: 'isCIDR', input: 'isCIDR("10.0.0.0/8") && isCIDR("fd00::/8") && !isCIDR("10.0.0.0/33") && !isCIDR("10.0.0.0")', expected: true },
    { description: 'isCIDR accepts host bits (like netip.ParsePrefix)', input: 'isCIDR("10.0.0.1/8")', expected: true },
    { description: 'prefixLength', input: 'cidr("10.0.0.0/8").prefixLength() == 8', expected: true },
    { description: 'cidr ip()', input: 'cidr("10.1.2.3/8").ip() == ip("10.1.2.3")', expected: true },
    { description: 'masked', input: 'cidr("10.1.2.3/8").masked() == cidr("10.0.0.0/8")', expected: true },
    { description: 'containsIP', input: 'cidr("198.18.0.0/15").containsIP("198.19.255.1") && !cidr("198.18.0.0/15").containsIP(ip("198.20.0.1"))', expected: true },
    { description: 'containsIP across families', input: '!cidr("10.0.0.0/8").containsIP("2001:db8::1")', expected: true },
    { description: 'containsCIDR', input: 'cidr("2001:db8::/32").containsCIDR("2001:db8:1::/48") && !cidr("2001:db8::/32").containsCIDR("2001::/16")', expected: true },
    { description: 'ip() of garbage is an evaluation error', input: 'ip("nope").family() == 4', expected: 'failed: IP Address "nope" parse error during conversion from string: ParseAddr("nope"): unable to parse IP' },
    { description: 'strings extension', input: '"Both".lowerAscii() == "both"', expected: true },
    { description: 'matches and startsWith', input: 'self.all(x, x.startsWith("eth")) && self.exists(x, x.matches("^eth[0-9]+$"))', self: ['eth0', 'ethx'], expected: true },
  ])('$description', ({ input, expected, self }) => {
    expect(run(input, self ?? null)).toBe(expected);
  });
});

describe('address formatting', () => {
  it.each([
    { input: '2001:db8:0:0:0:0:0:1', expected: '2001:db8::1' },
    { input: '2001:0:0:1:0:0:0:1', expected: '2001:0:0:1::1' },
    { input: '::', expected: '::' },
    { input: '::192.0.2.1', expected: '::c000:201' },
    { input: '198.18.0.1', expected: '198.18.0.1' },
  ])('$input → $expected', ({ input, expected }) => {
    expect(formatAddr(parseAddr(input)!)).toBe(expected);
  });
});
