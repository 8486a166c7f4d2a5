/**
 * The tap's filter, run on real packets with BPF_PROG_TEST_RUN (bpftool prog
 * run): every policy criterion matches what it should and nothing else.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { CaptureConfigInput } from '../../src/api/index.ts';
import { readCounters, writeCidrs, writeConfig } from '../../src/datapath/bpftool.ts';
import { definesFor, loadTestObject, progRun, removePins, testConfig, testPinRoot } from '../helpers/bpf.ts';
import { buildFrame, type FrameSpec } from '../helpers/packets.ts';

const root = testPinRoot();
afterAll(() => removePins(root));

const POD = '198.18.1.2';
const PEER = '198.18.2.2';
const FAR = '192.0.2.9';
const POD6 = '2001:db8:1::2';
const PEER6 = '2001:db8:2::2';

type Case = { frame: FrameSpec; hook?: 'ingress' | 'egress'; match: boolean; why: string };

const SYN = 0x02;
const ACK = 0x10;
const RST = 0x04;

const table: { description: string; cfg: Partial<CaptureConfigInput>; cases: Case[] }[] = [
  {
    description: 'no filter: everything, including ARP',
    cfg: {},
    cases: [
      { frame: { src: POD, dst: PEER, proto: 'TCP' }, match: true, why: 'tcp' },
      { frame: { src: POD, dst: PEER, proto: 'ARP' }, match: true, why: 'arp' },
      { frame: { src: POD6, dst: PEER6, proto: 'ICMPv6' }, match: true, why: 'icmpv6' },
    ],
  },
  {
    description: 'protocols TCP and ICMP',
    cfg: { filter: { protocols: ['TCP', 'ICMP'] } },
    cases: [
      { frame: { src: POD, dst: PEER, proto: 'TCP' }, match: true, why: 'tcp' },
      { frame: { src: POD, dst: PEER, proto: 'ICMP' }, match: true, why: 'icmp' },
      { frame: { src: POD, dst: PEER, proto: 'UDP' }, match: false, why: 'udp' },
      { frame: { src: POD6, dst: PEER6, proto: 'ICMPv6' }, match: false, why: 'icmpv6 is not ICMP' },
      { frame: { src: POD, dst: PEER, proto: 'ARP' }, match: false, why: 'non-IP' },
    ],
  },
  {
    description: 'ports 443 and 8000-8100 at either end',
    cfg: { filter: { ports: [{ port: 443 }, { port: 8000, endPort: 8100 }] } },
    cases: [
      { frame: { src: POD, dst: PEER, proto: 'TCP', sport: 40000, dport: 443 }, match: true, why: 'dport 443' },
      { frame: { src: POD, dst: PEER, proto: 'TCP', sport: 443, dport: 40000 }, match: true, why: 'sport 443' },
      { frame: { src: POD, dst: PEER, proto: 'UDP', sport: 40000, dport: 8100 }, match: true, why: 'range end' },
      { frame: { src: POD, dst: PEER, proto: 'UDP', sport: 40000, dport: 8101 }, match: false, why: 'past range' },
      { frame: { src: POD, dst: PEER, proto: 'TCP', sport: 40000, dport: 442 }, match: false, why: '442' },
      { frame: { src: POD, dst: PEER, proto: 'SCTP', sport: 8050, dport: 1 }, match: true, why: 'sctp port' },
      { frame: { src: POD, dst: PEER, proto: 'ICMP' }, match: false, why: 'no ports' },
    ],
  },
  {
    description: 'peer CIDRs, by direction',
    cfg: { filter: { cidrs: ['198.18.2.0/24', '2001:db8:2::/48'] } },
    cases: [
      { frame: { src: POD, dst: PEER, proto: 'UDP' }, hook: 'ingress', match: true, why: 'sent by the pod to a peer inside' },
      { frame: { src: POD, dst: FAR, proto: 'UDP' }, hook: 'ingress', match: false, why: 'sent to a peer outside' },
      { frame: { src: PEER, dst: POD, proto: 'UDP' }, hook: 'egress', match: true, why: 'to the pod from inside' },
      { frame: { src: FAR, dst: POD, proto: 'UDP' }, hook: 'egress', match: false, why: 'to the pod from outside' },
      { frame: { src: PEER, dst: FAR, proto: 'UDP' }, hook: 'ingress', match: false, why: 'ingress peer is the destination' },
      { frame: { src: POD6, dst: PEER6, proto: 'TCP' }, hook: 'ingress', match: true, why: 'IPv6 inside' },
      { frame: { src: POD6, dst: '2001:db8:3::1', proto: 'TCP' }, hook: 'ingress', match: false, why: 'IPv6 outside' },
      { frame: { src: POD, dst: PEER, proto: 'ARP' }, match: false, why: 'non-IP has no peer' },
    ],
  },
  {
    description: 'TCP flags SYN or RST',
    cfg: { filter: { tcpFlags: ['SYN', 'RST'] } },
    cases: [
      { frame: { src: POD, dst: PEER, proto: 'TCP', tcpFlags: SYN }, match: true, why: 'syn' },
      { frame: { src: POD, dst: PEER, proto: 'TCP', tcpFlags: SYN | ACK }, match: true, why: 'syn-ack' },
      { frame: { src: POD, dst: PEER, proto: 'TCP', tcpFlags: RST }, match: true, why: 'rst' },
      { frame: { src: POD, dst: PEER, proto: 'TCP', tcpFlags: ACK }, match: false, why: 'plain ack' },
      { frame: { src: POD, dst: PEER, proto: 'UDP' }, match: true, why: 'other protocols unaffected' },
    ],
  },
  {
    description: 'all criteria together',
    cfg: { filter: { protocols: ['TCP'], ports: [{ port: 80 }], cidrs: ['198.18.2.0/24'], tcpFlags: ['SYN'] } },
    cases: [
      { frame: { src: POD, dst: PEER, proto: 'TCP', dport: 80, tcpFlags: SYN }, hook: 'ingress', match: true, why: 'all met' },
      { frame: { src: POD, dst: PEER, proto: 'TCP', dport: 81, tcpFlags: SYN }, hook: 'ingress', match: false, why: 'port' },
      { frame: { src: POD, dst: FAR, proto: 'TCP', dport: 80, tcpFlags: SYN }, hook: 'ingress', match: false, why: 'cidr' },
      { frame: { src: POD, dst: PEER, proto: 'TCP', dport: 80, tcpFlags: ACK }, hook: 'ingress', match: false, why: 'flags' },
      { frame: { src: POD, dst: PEER, proto: 'UDP', dport: 80 }, hook: 'ingress', match: false, why: 'protocol' },
    ],
  },
];

describe('tap filter (BPF_PROG_TEST_RUN)', () => {
  it.each(table)('$description', async ({ cfg, cases }) => {
    const full = testConfig(cfg);
    const obj = await loadTestObject(definesFor(full), root);
    await writeCidrs(obj.maps, full.filter.cidrs);
    // capture_ifindex 0: the clone fails (counted), the filter verdict is what we test
    await writeConfig(obj.maps, { enabled: true, captureIfindex: 0, instance: 1, routeIfindex: 0, src: '198.18.200.1', dst: '198.18.200.2' });
    for (const c of cases) {
      const before = await readCounters(obj.maps);
      const prog = (c.hook ?? 'ingress') === 'ingress' ? obj.progs.pt_tap_ingress.path : obj.progs.pt_tap_egress.path;
      const ret = await progRun(prog, buildFrame(c.frame));
      expect(ret, `${c.why}: the tap always returns TC_ACT_UNSPEC`).toBe(-1);
      const after = await readCounters(obj.maps);
      expect(after.seen.packets - before.seen.packets, c.why).toBe(1);
      expect(after.matched.packets - before.matched.packets, `${c.why}: matched`).toBe(c.match ? 1 : 0);
      expect(after.filtered.packets - before.filtered.packets, `${c.why}: filtered`).toBe(c.match ? 0 : 1);
    }
  });

  it('never taps podtap tunnel traffic to the collector, whatever the filter', async () => {
    const obj = await loadTestObject(definesFor(testConfig()), root);
    await writeConfig(obj.maps, { enabled: true, captureIfindex: 0, instance: 1, routeIfindex: 0, src: '198.18.200.1', dst: '198.18.200.2' });
    const before = await readCounters(obj.maps);
    await progRun(obj.progs.pt_tap_egress.path, buildFrame({ src: '198.18.200.1', dst: '198.18.200.2', proto: 'UDP', dport: 6081 }));
    await progRun(obj.progs.pt_tap_egress.path, buildFrame({ src: '198.18.200.1', dst: '198.18.200.3', proto: 'UDP', dport: 6081 }));
    const after = await readCounters(obj.maps);
    expect(after.skipOwn.packets - before.skipOwn.packets).toBe(1);
    expect(after.matched.packets - before.matched.packets).toBe(1);
  });

  it('passes everything untouched while disabled', async () => {
    const obj = await loadTestObject(definesFor(testConfig()), root);
    await writeConfig(obj.maps, { enabled: false, captureIfindex: 0, instance: 1, routeIfindex: 0, src: '198.18.200.1', dst: '198.18.200.2' });
    expect(await progRun(obj.progs.pt_tap_ingress.path, buildFrame({ src: POD, dst: PEER, proto: 'TCP' }))).toBe(-1);
    expect((await readCounters(obj.maps)).seen.packets).toBe(0);
  });
});
