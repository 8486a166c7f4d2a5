import { describe, expect, it } from 'vitest';
import {
  decodeAnnouncement,
  encodeAnnouncement,
  encodeAnnouncements,
  monotonicRealtimePair,
  nodeNameOf,
  splitAnnouncement,
  type Announcement,
} from '../../../src/wire/announce.ts';
import { announcementMac, deriveNodeKey } from '../../../src/wire/auth.ts';
import { GENEVE_PROTO_ANNOUNCE, OPT_CLASS, OPT_TYPE_ANNOUNCE } from '../../../src/wire/format.ts';

const base: Announcement = {
  v: 2,
  node: 'node-a',
  source: '198.18.0.1',
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

const SECRET = 'install-secret-of-this-test';

/** An unsigned announcement datagram carrying `json` as it is (what a forger writes by hand). */
function withJson(json: string): Buffer {
  const b = encodeAnnouncement(base);
  const j = Buffer.from(json);
  const out = Buffer.concat([b.subarray(0, 44), j]);
  out.writeUInt16BE(j.length, 18);
  return out;
}

describe('announcements', () => {
  it('encode: Geneve control message, protocol 0x88B6, option 0xFF70/0x02 version 2, envelope, JSON', () => {
    const b = encodeAnnouncement(base, { timeMs: 1_764_100_000_123, nonce: Buffer.alloc(16, 7) });
    expect(b[0]).toBe(2); // version 0, two option words
    expect(b[1]).toBe(0x80); // O bit
    expect(b.readUInt16BE(2)).toBe(GENEVE_PROTO_ANNOUNCE);
    expect(b.readUInt16BE(8)).toBe(OPT_CLASS);
    expect(b[10]).toBe(OPT_TYPE_ANNOUNCE);
    expect(b[11]).toBe(1);
    expect([...b.subarray(12, 16)]).toEqual([2, 0, 0, 0]);
    const json = Buffer.from(JSON.stringify(base));
    expect(b[16]).toBe(0); // scheme none
    expect(b[17]).toBe(0); // no key id
    expect(b.readUInt16BE(18)).toBe(json.length);
    expect(b.readBigUInt64BE(20)).toBe(1_764_100_000_123n);
    expect(b.subarray(28, 44)).toEqual(Buffer.alloc(16, 7));
    expect(JSON.parse(b.subarray(44).toString('utf8'))).toEqual(base);
    expect(b.length).toBe(44 + json.length);
  });

  it('encode signed: the node name as key id, then the JSON, then a 32-byte MAC over everything before it', () => {
    const key = { id: 'node-a', key: deriveNodeKey(SECRET, 'node-a') };
    const b = encodeAnnouncement(base, { key });
    expect(b[16]).toBe(1);
    expect(b[17]).toBe(6);
    expect(b.subarray(44, 50).toString()).toBe('node-a');
    const macAt = b.length - 32;
    expect(b.subarray(macAt)).toEqual(announcementMac(key.key, b.subarray(0, macAt)));
    // a key signs only its own node's announcements
    expect(() => encodeAnnouncement({ ...base, node: 'node-b' }, { key })).toThrow(/node-a/);
  });

  it('round trips', () => {
    expect(decodeAnnouncement(encodeAnnouncement(base))).toMatchObject({ ok: true, announcement: base });
    const sniff = { ...base, sender: 'sniff' as const, policy: null };
    expect(decodeAnnouncement(encodeAnnouncement(sniff, { key: { id: 'node-a', key: Buffer.alloc(32, 1) } }))).toMatchObject({ ok: true, announcement: sniff });
  });

  it.each([
    { description: 'not JSON', input: 'hello', expected: /not JSON/ },
    { description: 'wrong version', input: JSON.stringify({ ...base, v: 1 }), expected: /v/ },
    { description: 'a v1 token instead of a source', input: JSON.stringify({ ...base, source: undefined, token: 't' }), expected: /source/ },
    { description: 'bigint as a number', input: JSON.stringify({ ...base, clock: { monoNs: 5, realtimeNs: '1' } }), expected: /monoNs/ },
    { description: 'ifindex 0', input: JSON.stringify({ ...base, interfaces: [{ ...base.interfaces[0], ifindex: 0 }] }), expected: /ifindex/ },
    { description: 'unknown sender', input: JSON.stringify({ ...base, sender: 'other' }), expected: /sender/ },
  ])('decode refuses $description', ({ input, expected }) => {
    const r = decodeAnnouncement(withJson(input));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(expected);
  });

  // names become directories and file names on the collector: only Kubernetes' own rules pass
  const pod0 = base.interfaces[0]!;
  it.each([
    { description: 'a policy name with ../', input: { ...base, policy: { ...base.policy!, name: '../../etc/cron.d/x' } }, expected: /policy.name/ },
    { description: 'a policy name with a slash', input: { ...base, policy: { ...base.policy!, name: 'a/b' } }, expected: /policy.name/ },
    { description: 'a policy namespace that is no DNS label', input: { ...base, policy: { ...base.policy!, namespace: 'a.b' } }, expected: /policy.namespace/ },
    { description: 'a namespace of 64 characters', input: { ...base, policy: { ...base.policy!, namespace: 'a'.repeat(64) } }, expected: /policy.namespace/ },
    { description: 'an upper-case policy name', input: { ...base, policy: { ...base.policy!, name: 'Web' } }, expected: /policy.name/ },
    { description: 'a policy name of 254 characters', input: { ...base, policy: { ...base.policy!, name: 'a'.repeat(254) } }, expected: /policy.name/ },
    { description: 'a pod name with ..', input: { ...base, interfaces: [{ ...pod0, pod: { namespace: 'demo', name: '..' } }] }, expected: /interfaces/ },
    { description: 'a pod namespace with a slash', input: { ...base, interfaces: [{ ...pod0, pod: { namespace: 'de/mo', name: 'web-1' } }] }, expected: /interfaces/ },
    { description: 'a node name with a slash', input: { ...base, node: '../node' }, expected: /node/ },
    { description: 'an interface name with a slash', input: { ...base, interfaces: [{ ...pod0, name: 'veth/../x' }] }, expected: /interfaces/ },
    { description: 'an interface name of 16 characters', input: { ...base, interfaces: [{ ...pod0, name: 'v'.repeat(16) }] }, expected: /interfaces/ },
    { description: 'a uid with a slash', input: { ...base, policy: { ...base.policy!, uid: 'a/b' } }, expected: /uid/ },
  ])('decode refuses $description', ({ input, expected }) => {
    const r = decodeAnnouncement(withJson(JSON.stringify(input)));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(expected);
  });

  it.each([
    { input: 'node-a', expected: 'node-a' },
    { input: 'Build_01.Lab', expected: 'build-01.lab' },
    { input: '-x-.', expected: 'x' },
    { input: '___', expected: 'localhost' },
    { input: `${'a'.repeat(70)}.b`, expected: `${'a'.repeat(63)}.b` },
  ])('the host name $input is announced as node $expected', ({ input, expected }) => {
    expect(nodeNameOf(input)).toBe(expected);
    expect(() => encodeAnnouncement({ ...base, node: nodeNameOf(input) })).not.toThrow();
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
