/**
 * The data plane loads in every supported configuration, the scratch cache is
 * exactly as large as the verifier needs, and a rejection reads well.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { cacheValueSize } from '../../src/wire/sizes.ts';
import { VerifierError } from '../../src/datapath/verifier.ts';
import { definesFor, loadTestObject, removePins, testConfig, testPinRoot } from '../helpers/bpf.ts';

const root = testPinRoot();
afterAll(() => removePins(root));

describe('the data plane loads', () => {
  const table = [
    { description: 'Geneve over IPv4, MTU 1500', cfg: {}, node: { mtu: 1500 } },
    { description: 'Geneve over IPv4, MTU 1280', cfg: {}, node: { mtu: 1280 } },
    { description: 'Geneve over IPv4, MTU 9000', cfg: {}, node: { mtu: 9000 } },
    { description: 'Geneve over IPv6, MTU 1500', cfg: { collector: { address: '2001:db8:200::2', port: 6081 } }, node: { mtu: 1500 } },
    { description: 'Geneve over IPv6, MTU 9216', cfg: { collector: { address: '2001:db8:200::2', port: 6081 } }, node: { mtu: 9216 } },
    { description: 'VXLAN over IPv4', cfg: { tunnel: { protocol: 'VXLAN' as const, vni: 42 }, collector: { address: '198.18.200.2', port: 4789 } }, node: { mtu: 1500 } },
    { description: 'VXLAN over IPv6', cfg: { tunnel: { protocol: 'VXLAN' as const }, collector: { address: '2001:db8:200::2', port: 4789 } }, node: { mtu: 1500 } },
    {
      description: 'every filter, sampling, snap length and rate limit',
      cfg: {
        filter: {
          protocols: ['TCP' as const, 'UDP' as const, 'ICMP' as const],
          ports: [{ port: 80 }, { port: 8000, endPort: 8100 }],
          cidrs: ['198.18.0.0/15', '2001:db8::/32'],
          tcpFlags: ['SYN' as const, 'RST' as const],
        },
        sampling: { oneIn: 10 },
        snapLength: 128,
        rateLimit: { packetsPerSecond: 1000, bytesPerSecond: 1_000_000 },
      },
      node: { mtu: 1500 },
    },
  ];
  it.each(table)('$description', async ({ cfg, node }) => {
    const obj = await loadTestObject(definesFor(testConfig(cfg), node), root);
    expect(obj.progs.pt_tap_ingress.id).toBeGreaterThan(0);
    expect(obj.progs.pt_tap_egress.id).toBeGreaterThan(0);
    expect(obj.progs.pt_tunnel.id).toBeGreaterThan(0);
  });
});

describe('the scratch cache size', () => {
  const table = [
    { description: 'IPv4 Geneve MTU 1500', mtu: 1500, collector: '198.18.200.2', tunnel: 'Geneve' as const },
    { description: 'IPv6 Geneve MTU 9000', mtu: 9000, collector: '2001:db8:200::2', tunnel: 'Geneve' as const },
    { description: 'IPv4 VXLAN MTU 1280', mtu: 1280, collector: '198.18.200.2', tunnel: 'VXLAN' as const },
  ];
  it.each(table)('is enough and tight: $description', async ({ mtu, collector, tunnel }) => {
    const cfg = testConfig({ tunnel: { protocol: tunnel }, collector: { address: collector, port: 6081 } });
    const size = cacheValueSize({ mtu, outerV6: collector.includes(':'), tunnel });
    const defines = definesFor(cfg, { mtu });
    expect(defines).toContain(`-DPT_CACHE_SIZE=${size}`);
    await expect(loadTestObject(defines, root)).resolves.toBeTruthy();

    const smaller = defines.map((d) => (d.startsWith('-DPT_CACHE_SIZE=') ? `-DPT_CACHE_SIZE=${size - 1}` : d));
    const err = await loadTestObject(smaller, root).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(VerifierError);
    const v = err as VerifierError;
    expect(v.summary.program).toBe('pt_tunnel');
    expect(v.summary.reason).toMatch(new RegExp(`invalid access to map value, value_size=${size - 1} off=\\d+ size=\\d+`));
    // the message quotes the decisive lines, not the whole log
    expect(v.message.split('\n').length).toBeLessThanOrEqual(3);
    expect(v.message).toMatch(/frag\.h:\d+/);
    expect(v.logPath).toBeTruthy();
  });
});
