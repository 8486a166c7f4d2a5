/** The data plane's userspace arithmetic and parsing, as tables. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { statusCounters, sessionIdForPolicy } from '../../../src/agent/agent.ts';
import { defaultCollectorPort, Protocols, TcpFlags, type CaptureConfigInput } from '../../../src/api/index.ts';
import { addrBytes, ipv6Bytes } from '../../../src/datapath/bpftool.ts';
import { compileDefines, PROTO_BITS, TCP_FLAG_BITS } from '../../../src/datapath/config.ts';
import { REASONS, emptyCounters, lost, subCounters } from '../../../src/datapath/counters.ts';
import { summarizeVerifierLog } from '../../../src/datapath/verifier.ts';
import { filterProgName } from '../../../src/datapath/tc.ts';
import { missingCapabilities } from '../../../src/datapath/tools.ts';
import { testConfig } from '../../helpers/bpf.ts';
import { cConstants } from '../../helpers/c-constants.ts';

describe('compile-time constants of a policy', () => {
  // the configuration as the controller writes it: the API's defaults, the tunnel's port
  const defs = (spec: Partial<CaptureConfigInput>, address = '198.18.9.2') =>
    Object.fromEntries(
      compileDefines(testConfig({ ...spec, collector: { address, port: defaultCollectorPort(spec.tunnel?.protocol ?? 'Geneve') } }), { mtu: 1500, nrCpus: 4 }).map((d) => {
        const [k, ...v] = d.slice(2).split('=');
        return [k, v.join('=')];
      }),
    );
  it.each([
    { description: 'defaults', spec: {}, expected: { PT_PROTO_MASK: '0', PT_NPORTS: '0', PT_CIDR_FILTER: '0', PT_TCP_FLAGS: '0', PT_SAMPLE_ONE_IN: '1', PT_SNAPLEN: '0', PT_TUNNEL: '1', PT_TUNNEL_PORT: '6081', PT_OUTER_V6: '0', PT_NR_CPUS: '4' } },
    { description: 'protocols become a bit mask', spec: { filter: { protocols: ['TCP' as const, 'ICMPv6' as const, 'TCP' as const] } }, expected: { PT_PROTO_MASK: String(1 | 8) } },
    { description: 'ports become inclusive ranges', spec: { filter: { ports: [{ port: 443 }, { port: 8000, endPort: 8100 }] } }, expected: { PT_NPORTS: '2', PT_PORT_RANGES: '{{443,443},{8000,8100}}' } },
    { description: 'CIDRs switch the LPM lookup on', spec: { filter: { cidrs: ['10.0.0.0/8'] } }, expected: { PT_CIDR_FILTER: '1' } },
    { description: 'TCP flags become a mask', spec: { filter: { tcpFlags: ['SYN' as const, 'RST' as const] } }, expected: { PT_TCP_FLAGS: String(0x02 | 0x04) } },
    { description: 'VXLAN on its port 4789', spec: { tunnel: { protocol: 'VXLAN' as const, vni: 42 } }, expected: { PT_TUNNEL: '2', PT_VNI: '42', PT_TUNNEL_PORT: '4789' } },
    { description: 'rates are 64-bit literals', spec: { rateLimit: { packetsPerSecond: 1000, bytesPerSecond: 5_000_000_000 } }, expected: { PT_RATE_PPS: '1000ull', PT_RATE_BPS: '5000000000ull' } },
  ])('$description', ({ spec, expected }) => {
    expect(defs(spec)).toMatchObject(expected);
  });
  it('an IPv6 collector selects the IPv6 outer header and its cache size', () => {
    expect(defs({}, '2001:db8:9::2')).toMatchObject({ PT_OUTER_V6: '1', PT_CACHE_SIZE: '66900' });
  });
  it('refuses an MTU the data plane cannot bound', () => {
    expect(() => compileDefines(testConfig(), { mtu: 1000, nrCpus: 1 })).toThrow(/MTU 1000/);
  });
  it('has a bit for every protocol and TCP flag the API names, the C header the same bits', async () => {
    expect(Object.keys(PROTO_BITS)).toEqual([...Protocols]);
    expect(Object.keys(TCP_FLAG_BITS)).toEqual([...TcpFlags]);
    const c = await cConstants(['PT_P_TCP', 'PT_P_UDP', 'PT_P_ICMP', 'PT_P_ICMPV6', 'PT_P_SCTP'], [], ['consts.h']);
    expect(c).toEqual(Object.values(PROTO_BITS));
  });
});

describe('verifier logs', () => {
  const log = `libbpf: prog 'pt_tunnel': BPF program load failed: Permission denied
libbpf: prog 'pt_tunnel': -- BEGIN PROG LOAD LOG --
0: R1=ctx() R10=fp0
; if (bpf_skb_store_bytes(skb, PT_OUTER_LEN + p->hdr, &l->cache->data[from], @ frag.h:344
1751: (79) r3 = *(u64 *)(r10 -264)    ; R3=map_value(map=pt_cache,ks=4,vs=66923)
1758: (85) call bpf_skb_store_bytes#9
invalid access to map value, value_size=66923 off=65548 size=1376
R3 max value is outside of the allowed memory range
processed 1226 insns (limit 1000000) max_states_per_insn 1 total_states 54 peak_states 54 mark_read 0
-- END PROG LOAD LOG --
libbpf: prog 'pt_tunnel': failed to load: -13`;
  it('keeps the decisive lines: program, reason, source line, instruction count', () => {
    expect(summarizeVerifierLog(log)).toEqual({
      program: 'pt_tunnel',
      reason: 'invalid access to map value, value_size=66923 off=65548 size=1376; R3 max value is outside of the allowed memory range',
      source: 'if (bpf_skb_store_bytes(skb, PT_OUTER_LEN + p->hdr, &l->cache->data[from], @ frag.h:344',
      processed: 'processed 1226 insns (limit 1000000) max_states_per_insn 1 total_states 54 peak_states 54 mark_read 0',
    });
  });
  it('copes with a log without the usual frame', () => {
    expect(summarizeVerifierLog('something odd').reason).toBe('something odd');
  });
});

describe('addresses', () => {
  it.each([
    { input: '2001:db8::1', expected: '20010db8000000000000000000000001' },
    { input: '::', expected: '00000000000000000000000000000000' },
    { input: 'fe80::1:2', expected: 'fe800000000000000000000000010002' },
    { input: '::ffff:198.18.9.2', expected: '00000000000000000000ffffc6120902' },
    { input: '2001:db8:9::2', expected: '20010db8000900000000000000000002' },
  ])('$input', ({ input, expected }) => {
    expect(ipv6Bytes(input).toString('hex')).toBe(expected);
  });
  it('puts IPv4 in the first 4 of 16 bytes', () => {
    expect(addrBytes('198.18.9.2').toString('hex')).toBe(`c6120902${'0'.repeat(24)}`);
  });
});

describe('counters', () => {
  it('name the C enum pt_reason in its order (bpf/include/maps.h)', () => {
    const header = readFileSync(join(import.meta.dirname, '../../../bpf/include/maps.h'), 'utf8');
    const entries = [...header.matchAll(/^\s*PT_C_([A-Z_]+) = (\d+),/gm)].filter((m) => m[1] !== 'MAX');
    expect(entries.map((m) => Number(m[2]))).toEqual(entries.map((_, i) => i));
    expect(entries.length).toBe(REASONS.length);
    // the names agree too, once camelCased: PT_C_XMIT_DROP ~ xmitDrop
    const squash = (x: string) => x.replace(/_/g, '').toLowerCase();
    const aliases: Record<string, string> = { CLONE_ERR: 'cloneError', REDIRECT_ERR: 'redirectError', SHAPE_ERR: 'shapeError', CSUM_UNSUPP: 'csumUnsupported', LIMIT: 'limitReached' };
    expect(entries.map((m) => aliases[m[1]!] ?? m[1]!).map(squash)).toEqual(REASONS.map(squash));
  });
  it('adds up the loss reasons, not the choices', () => {
    const c = emptyCounters();
    c.rateLimited.packets = 3;
    c.noRoute.packets = 2;
    c.carrierLost.packets = 1;
    c.sampledOut.packets = 100; // a choice, not a loss
    c.limitReached.packets = 50;
    c.slotBusy.packets = 7; // cut at once instead: delivered
    expect(lost(c)).toBe(6);
  });
  it('reports what a restarted process counted since it started', () => {
    const a = emptyCounters();
    const b = emptyCounters();
    a.mirrored = { packets: 10, bytes: 1000 };
    b.mirrored = { packets: 4, bytes: 300 };
    expect(subCounters(a, b).mirrored).toEqual({ packets: 6, bytes: 700 });
  });
  it('maps to the assignment status, drop reasons by name', () => {
    const c = emptyCounters();
    c.matched.packets = 20;
    c.mirrored = { packets: 15, bytes: 9000 };
    c.rateLimited.packets = 5;
    expect(statusCounters(c)).toMatchObject({ matched: 20, mirrored: 15, bytes: 9000, lost: 5, dropped: { rateLimited: 5 } });
  });
});

it('names a policy session by its uid, stably', () => {
  expect(sessionIdForPolicy('3f1c')).toBe(sessionIdForPolicy('3f1c'));
  expect(sessionIdForPolicy('3f1c')).toMatch(/^a-[0-9a-f]{12}$/);
  expect(sessionIdForPolicy('3f1d')).not.toBe(sessionIdForPolicy('3f1c'));
});

describe("a tc filter's program name, with and without CAP_SYS_ADMIN", () => {
  // tc prints prog.name only when it could fetch the program by id (CAP_SYS_ADMIN);
  // the agent has not, and recognises its filters by the name tc gave them from the pin
  it.each([
    { description: 'tc fetched the program by id', input: { bpf_name: 'pt_tap_ingress:[*fsobj]', prog: { id: 7, name: 'pt_tap_ingress' } }, expected: 'pt_tap_ingress' },
    { description: 'without CAP_SYS_ADMIN: the name of the pinned file', input: { bpf_name: 'pt_tap_egress:[*fsobj]', prog: { id: 7 } }, expected: 'pt_tap_egress' },
    { description: 'a filter loaded from an object file, not a pin', input: { bpf_name: 'x.o:[classifier]', prog: { id: 7 } }, expected: undefined },
    { description: 'no name at all', input: { prog: { id: 7 } }, expected: undefined },
  ])('$description', ({ input, expected }) => {
    expect(filterProgName(input)).toBe(expected);
  });
});

describe('the capabilities the data plane needs, from a CapEff mask', () => {
  it.each([
    { description: "the chart's agent (BPF, NET_ADMIN, PERFMON, SYS_PTRACE)", input: '000000c000081000', expected: [] },
    { description: 'root with every capability', input: '000001ffffffffff', expected: [] },
    { description: 'CAP_SYS_ADMIN stands for CAP_BPF and CAP_PERFMON (before 5.8, the only way)', input: '0000000000201000', expected: [] },
    { description: 'without CAP_NET_ADMIN', input: '000000c000080000', expected: ['CAP_NET_ADMIN'] },
    { description: 'without CAP_BPF', input: '0000004000081000', expected: ['CAP_BPF'] },
    { description: 'without CAP_PERFMON', input: '0000008000081000', expected: ['CAP_PERFMON'] },
    { description: 'none', input: '0000000000000000', expected: ['CAP_NET_ADMIN', 'CAP_BPF', 'CAP_PERFMON'] },
  ])('$description', ({ input, expected }) => {
    expect(missingCapabilities(input).map((m) => m.cap)).toEqual(expected);
  });
});
