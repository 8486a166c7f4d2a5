import { describe, expect, it } from 'vitest';
import {
  decodeAnnouncement,
  encodeAnnouncement,
  encodeAnnouncements,
  monotonicRealtimePair,
  splitAnnouncement,
  type Announcement,
} from '../../../src/wire/announce.ts';
import { GENEVE_PROTO_ANNOUNCE, OPT_CLASS, OPT_TYPE_ANNOUNCE } from '../../../src/wire/format.ts';

const base: Announcement = {
  v: 1,
  token: 'tok',
  node: 'node-a',
  sender: 'agent',
  senderId: 'c0ffee',
  instance: 7,
  tunnel: 'Geneve',
  policy: { namespace: 'demo', name: 'web-debug', uid: '1b2c' },
  clock: { monoNs: '123456789', realtimeNs: '1764100000000000000' },
  interfaces: [
    { ifindex: 12, name: 'veth1a2b', pod: { namespace: 'demo', name: 'web-1' }, directions: ['Ingress', 'Egress'] },
    { ifindex: 13, name: 'veth3c4d', pod: null, directions: ['Egress'] },
  ],
};

describe('announcements', () => {
  it('encode: Geneve control message, protocol 0x88B6, option 0xFF70/0x02 version 1, JSON', () => {
    const b = encodeAnnouncement(base);
    expect(b[0]).toBe(2); // version 0, two option words
    expect(b[1]).toBe(0x80); // O bit
    expect(b.readUInt16BE(2)).toBe(GENEVE_PROTO_ANNOUNCE);
    expect(b.readUInt16BE(8)).toBe(OPT_CLASS);
    expect(b[10]).toBe(OPT_TYPE_ANNOUNCE);
    expect(b[11]).toBe(1);
    expect([...b.subarray(12, 16)]).toEqual([1, 0, 0, 0]);
    expect(JSON.parse(b.subarray(16).toString('utf8'))).toEqual(base);
  });

  it('round trips', () => {
    expect(decodeAnnouncement(encodeAnnouncement(base))).toEqual({ ok: true, announcement: base });
    const sniff = { ...base, sender: 'sniff' as const, policy: null, token: '' };
    expect(decodeAnnouncement(encodeAnnouncement(sniff))).toEqual({ ok: true, announcement: sniff });
  });

  it.each([
    { description: 'not JSON', input: 'hello', expected: /not JSON/ },
    { description: 'wrong version', input: JSON.stringify({ ...base, v: 2 }), expected: /v/ },
    { description: 'bigint as a number', input: JSON.stringify({ ...base, clock: { monoNs: 5, realtimeNs: '1' } }), expected: /monoNs/ },
    { description: 'ifindex 0', input: JSON.stringify({ ...base, interfaces: [{ ...base.interfaces[0], ifindex: 0 }] }), expected: /ifindex/ },
    { description: 'unknown sender', input: JSON.stringify({ ...base, sender: 'other' }), expected: /sender/ },
  ])('decode refuses $description', ({ input, expected }) => {
    const b = encodeAnnouncement(base);
    const d = Buffer.concat([b.subarray(0, 16), Buffer.from(input)]);
    const r = decodeAnnouncement(d);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(expected);
  });

  it('decode refuses a data packet', () => {
    expect(decodeAnnouncement(Buffer.alloc(8)).ok).toBe(false);
  });

  it('encode validates', () => {
    expect(() => encodeAnnouncement({ ...base, instance: 70000 })).toThrow();
  });

  it('splits large interface lists under the size limit, keeping every interface once', () => {
    const interfaces = Array.from({ length: 500 }, (_, i) => ({
      ifindex: i + 1, name: `veth${i.toString(16).padStart(8, '0')}`, pod: { namespace: 'team-with-a-long-namespace', name: `pod-${i}` }, directions: ['Ingress' as const],
    }));
    const parts = splitAnnouncement({ ...base, interfaces });
    expect(parts.length).toBeGreaterThan(1);
    for (const p of parts) expect(Buffer.byteLength(JSON.stringify(p))).toBeLessThanOrEqual(8000);
    expect(parts.flatMap((p) => p.interfaces)).toEqual(interfaces);
    const wire = encodeAnnouncements({ ...base, interfaces });
    expect(wire.map((w) => decodeAnnouncement(w).ok)).toEqual(parts.map(() => true));
    expect(splitAnnouncement(base)).toEqual([base]);
  });

  it('monotonicRealtimePair pairs CLOCK_MONOTONIC with wall time', () => {
    const c = monotonicRealtimePair();
    const mono = BigInt(c.monoNs);
    const real = BigInt(c.realtimeNs);
    expect(Number(real / 1_000_000n)).toBeGreaterThan(Date.now() - 1000);
    expect(Number(real / 1_000_000n)).toBeLessThanOrEqual(Date.now() + 1);
    const now = process.hrtime.bigint();
    expect(now >= mono && now - mono < 1_000_000_000n).toBe(true);
  });
});
