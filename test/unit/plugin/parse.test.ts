/**
 * The plugin's own parsing: --filter into spec.filter, -l (the selector
 * grammar itself is tested in test/unit/k8s/labels.test.ts), the policy a
 * capture creates, and the packet counter of the progress line.
 */
import { describe, expect, it } from 'vitest';
import { PcapngWriter } from '../../../src/collector/pcapng.ts';
import { PacketCounter, capturePolicy, selectorFlag, statusLine } from '../../../src/plugin/capture.ts';
import { parseCaptureDirection } from '../../../src/plugin/direction.ts';
import { parseFilters } from '../../../src/plugin/filter.ts';
import { ExitCode } from '../../../src/util/errors.ts';
import { pattern } from '../wire/frames.ts';

describe('-l', () => {
  it('is a usage error naming the flag and what is wrong', () => {
    expect(() => selectorFlag('env in (a,b')).toThrow(expect.objectContaining({ exitCode: 2, message: '-l: cannot read the selector "env in (a,b": unbalanced parentheses' }));
    expect(selectorFlag('app=web')).toEqual({ matchLabels: { app: 'web' } });
  });
});

describe('--filter', () => {
  it.each([
    { description: 'nothing', input: [], expected: undefined },
    { description: 'protocols, any case, repeated', input: ['proto=tcp,UDP', 'proto=icmp6,tcp'], expected: { protocols: ['TCP', 'UDP', 'ICMPv6'] } },
    { description: 'ports and ranges', input: ['port=443,8000-8100'], expected: { ports: [{ port: 443 }, { port: 8000, endPort: 8100 }] } },
    { description: 'cidrs and hosts', input: ['cidr=10.0.0.0/8', 'host=198.18.0.1,2001:db8::1'], expected: { cidrs: ['10.0.0.0/8', '198.18.0.1/32', '2001:db8::1/128'] } },
    { description: 'tcp flags', input: ['tcp-flags=syn,rst'], expected: { tcpFlags: ['SYN', 'RST'] } },
  ])('$description', ({ input, expected }) => {
    expect(parseFilters(input)).toEqual(expected);
  });

  it.each([
    { description: 'no value', input: ['proto='], expected: /no value/ },
    { description: 'neither KEY=VALUE nor an expression', input: ['=tcp'], expected: /is not something podtap's filter can express/ },
    { description: 'unknown key', input: ['vlan=3'], expected: /unknown key "vlan"/ },
    { description: 'unknown protocol', input: ['proto=gre'], expected: /unknown protocol "gre"/ },
    { description: 'port out of range', input: ['port=70000'], expected: /port must be between 1 and 65535/ },
    { description: 'reversed range', input: ['port=9000-8000'], expected: /endPort must be greater/ },
    { description: 'not a cidr', input: ['cidr=10.0.0.0/33'], expected: /must be a CIDR/ },
    { description: 'not a host', input: ['host=example.com'], expected: /not an IP address/ },
    { description: 'unknown flag', input: ['tcp-flags=syn,xmas'], expected: /unknown TCP flag "xmas"/ },
  ])('refuses $description', ({ input, expected }) => {
    expect(() => parseFilters(input)).toThrow(expected);
  });
});

describe('--direction, from the pod\'s side', () => {
  it.each([
    { description: 'in: what the pod receives', input: 'in', expected: ['Ingress'] },
    { description: 'out: what the pod sends', input: 'out', expected: ['Egress'] },
    { description: 'both', input: 'both', expected: ['Ingress', 'Egress'] },
    { description: 'any case', input: 'OUT', expected: ['Egress'] },
    { description: '0.1\'s Both meant both: still taken', input: 'Both', expected: ['Ingress', 'Egress'] },
  ])('$description', ({ input, expected }) => {
    expect(parseCaptureDirection(input)).toEqual(expected);
  });

  it.each([
    { description: '0.1\'s Ingress (sent by the pod): its conversion', input: 'Ingress', expected: '--direction Ingress was removed in 0.2: it meant sent by the pod; write --direction out' },
    { description: '0.1\'s egress (sent to the pod): its conversion', input: 'egress', expected: '--direction egress was removed in 0.2: it meant sent to the pod; write --direction in' },
    { description: 'anything else: the words', input: 'sideways', expected: '--direction: in, out, both (from the pod\'s side), not "sideways"' },
    { description: 'a prototype key is not a word', input: 'constructor', expected: '--direction: in, out, both (from the pod\'s side), not "constructor"' },
  ])('refuses $description', ({ input, expected }) => {
    expect(() => parseCaptureDirection(input)).toThrow(expect.objectContaining({ message: expected, exitCode: ExitCode.usage }));
  });
});

describe('the capture policy', () => {
  const base = {
    name: 'podtap-capture-abc123', namespace: 'shop', selector: {}, pod: 'web-1', filters: [],
    policyTypes: ['Ingress' as const, 'Egress' as const], snapLength: 0, duration: '10m', maxPackets: 0, collector: { namespace: 'podtap-system', service: 'podtap-collector' }, target: 'shop/web-1',
  };
  it('is a valid SniffPolicy owned by the plugin, bounded in time, pointing at the collector Service', () => {
    const p = capturePolicy(base);
    expect(p).toMatchObject({
      apiVersion: 'podtap.io/v1alpha1', kind: 'SniffPolicy',
      metadata: { name: 'podtap-capture-abc123', namespace: 'shop', labels: { 'app.kubernetes.io/managed-by': 'kubectl-podtap' } },
      spec: { podSelector: {}, podNames: ['web-1'], policyTypes: ['Ingress', 'Egress'], snapLength: 0, collector: { service: { name: 'podtap-collector', namespace: 'podtap-system' } }, limits: { duration: '10m' } },
    });
    expect(p.metadata.annotations?.['podtap.io/captured-by']).toMatch(/@.* \(kubectl podtap capture shop\/web-1\)$/);
    expect(capturePolicy({ ...base, maxPackets: 100 }).spec.limits).toMatchObject({ maxPackets: 100 });
    // a selector instead of a pod: no podNames
    expect(capturePolicy({ ...base, pod: undefined, selector: { matchLabels: { app: 'web' } } }).spec).not.toHaveProperty('podNames');
  });

  it('refuses what the API would refuse', () => {
    expect(() => capturePolicy({ ...base, duration: 'ten minutes' })).toThrow(/limits\.duration/);
  });
});

describe('packet counter', () => {
  it('counts packets however the stream is cut', () => {
    const chunks: Buffer[] = [];
    const w = new PcapngWriter((c) => chunks.push(c), { batchSize: 1 << 17 });
    w.sectionHeader({ userappl: 'podtap' });
    const id = w.addInterface({ name: 'x' });
    for (let i = 0; i < 50; i++) w.packet(id, 0, i, pattern(1 + i * 37), 0, 1 + i * 37, 1 + i * 37, 1, i % 7 === 0 ? 'a note' : undefined);
    w.flush();
    const all = Buffer.concat(chunks);
    for (const size of [1, 3, 7, 64, 1000, all.length]) {
      const c = new PacketCounter();
      for (let p = 0; p < all.length; p += size) c.push(all.subarray(p, p + size));
      expect({ size, packets: c.packets, bytes: c.bytes }).toEqual({ size, packets: 50, bytes: all.length });
    }
  });

  it('reads the live stream\'s drop notes from packet comments', () => {
    const chunks: Buffer[] = [];
    const w = new PcapngWriter((c) => chunks.push(c), { batchSize: 1 << 17 });
    w.sectionHeader({ userappl: 'podtap' });
    const id = w.addInterface({ name: 'x' });
    w.packet(id, 0, 1, pattern(60), 0, 60, 60, 1, 'podtap: 3 packet(s) matching this stream were dropped before this one: the reader did not keep up (3 in all)');
    w.packet(id, 0, 2, pattern(61), 0, 61, 61, 1);
    w.packet(id, 0, 3, pattern(62), 0, 62, 62, 1, 'podtap: 4 packet(s) matching this stream were dropped before this one: the reader did not keep up (7 in all)');
    w.flush();
    const c = new PacketCounter();
    const all = Buffer.concat(chunks);
    for (let p = 0; p < all.length; p += 5) c.push(all.subarray(p, p + 5));
    expect({ packets: c.packets, streamDropped: c.streamDropped }).toEqual({ packets: 3, streamDropped: 7 });
  });

  it.each([
    { description: 'rates over the interval', input: { now: { packets: 300, bytes: 3_000_000, streamDropped: 2 }, before: { packets: 100, bytes: 1_000_000 }, seconds: 2, lost: 5 }, expected: /^300 packets \(100\/s\), .* \(.*\/s\), lost 5, stream dropped 2$/ },
    { description: 'lost not known yet', input: { now: { packets: 0, bytes: 0, streamDropped: 0 }, before: { packets: 0, bytes: 0 }, seconds: 1, lost: undefined }, expected: /^0 packets \(0\/s\), .*, lost \?, stream dropped 0$/ },
  ])('status line: $description', ({ input, expected }) => {
    expect(statusLine(input.now, input.before, input.seconds, input.lost)).toMatch(expected);
  });
});
