import { describe, expect, it } from 'vitest';
import { encodeFrame, pieceSizes } from '../../helpers/encode.ts';
import { encodeAnnouncement } from '../../../src/wire/announce.ts';
import { Flag, Kind, META_LEN, MetaOff, parseTunnelDatagram, type MalformedReason } from '../../../src/wire/format.ts';
import { ipv4Frame, ipv6Frame, rawFrame } from './frames.ts';

// offsets in a Geneve datagram with podtap's option: base 0-7, option header
// 8-11, struct pt_meta from 12 (META_LEN bytes), then the inner frame
const M = 12;
const OPT_WORDS = META_LEN / 4;

function mutate(d: Buffer, f: (b: Buffer) => void): Buffer {
  const b = Buffer.from(d);
  f(b);
  return b;
}

const small = encodeFrame(ipv4Frame({ proto: 'UDP', payload: 64 }), { seq: 9, cpu: 1, instance: 2, ifindex: 33 })[0]!;
const big = encodeFrame(ipv4Frame({ proto: 'TCP', payload: 5000 }), { seq: 10 });
const v6 = encodeFrame(ipv6Frame({ proto: 'UDP', payload: 5000 }), {});
const raw = encodeFrame(rawFrame(4000), {});
const announce = encodeAnnouncement({
  v: 2, node: 'n', source: '198.18.0.1', sender: 'agent', senderId: 's', instance: 1, tunnel: 'Geneve', policy: null,
  clock: { monoNs: '1', realtimeNs: '2' }, interfaces: [],
});

describe('parseTunnelDatagram', () => {
  it('decodes every field of struct pt_meta', () => {
    const d = encodeFrame(ipv4Frame({ proto: 'TCP', payload: 3000 }), {
      seq: 0xfffffff0, cpu: 300, instance: 0xbeef, ifindex: 0x01020304, toPod: true, tstamp: 0x1122334455667788n, flow: 13,
    })[1]!;
    const p = parseTunnelDatagram(d, 'geneve');
    // IPv4 pieces: 34-byte prefix, chunks of the largest multiple of 8 that fits
    const chunk = (pieceSizes({}).pieceMax - 34) & ~7;
    expect(p.type).toBe('piece');
    if (p.type !== 'piece') return;
    expect(p.tstamp).toBe(0x1122334455667788n);
    expect(p.meta).toMatchObject({
      version: 2, flags: Flag.toPod | Flag.frag, kind: Kind.ipv4, flow: 13, cpu: 300, instance: 0xbeef, seq: 0xfffffff0,
      ifindex: 0x01020304, origLen: 3054, capLen: 3054, pieceOff: 34 + chunk, hdrLen: 34, l3Off: 14,
    });
    expect(p.inner.length).toBe(34 + chunk);
  });

  it('recognises VXLAN, and an announcement on the VXLAN port', () => {
    const d = encodeFrame(ipv4Frame({ proto: 'UDP', payload: 64 }), { tunnel: 'vxlan', vni: 0x123456 })[0]!;
    expect(parseTunnelDatagram(d, 'vxlan')).toMatchObject({ type: 'vxlan', vni: 0x123456 });
    expect(parseTunnelDatagram(announce, 'vxlan').type).toBe('announce');
  });

  const cases: { description: string; input: { d: Buffer; mode?: 'geneve' | 'vxlan' }; expected: MalformedReason }[] = [
    { description: 'empty', input: { d: Buffer.alloc(0) }, expected: 'short' },
    { description: 'seven bytes', input: { d: small.subarray(0, 7) }, expected: 'short' },
    { description: 'Geneve version 1', input: { d: mutate(small, (b) => (b[0] = 0x40 | (OPT_WORDS + 1))) }, expected: 'bad-version' },
    { description: 'options longer than the datagram', input: { d: small.subarray(0, 40) }, expected: 'bad-options' },
    { description: 'option TLV overruns the option area', input: { d: mutate(small, (b) => (b[11] = OPT_WORDS + 1)) }, expected: 'bad-options' },
    { description: 'unknown critical option with C set', input: { d: mutate(small, (b) => { b[1] = 0x40; b[8] = 0x01; b[10] = 0x80; }) }, expected: 'critical-option' },
    { description: 'protocol IPv4 (not carried)', input: { d: mutate(small, (b) => b.writeUInt16BE(0x0800, 2)) }, expected: 'unknown-protocol' },
    { description: 'another vendor\'s option only', input: { d: mutate(small, (b) => b.writeUInt16BE(0x0102, 8)) }, expected: 'no-meta' },
    { description: 'podtap option of the wrong length', input: { d: mutate(small, (b) => { b[0] = 2; b[11] = 1; }) }, expected: 'meta-length' },
    { description: 'metadata version 1 (before flows, segments and the CSUM flag)', input: { d: mutate(small, (b) => (b[M + MetaOff.version] = 1)) }, expected: 'meta-version' },
    { description: 'kind 6', input: { d: mutate(small, (b) => (b[M + MetaOff.kind] = 6)) }, expected: 'unknown-kind' },
    { description: 'RAW kind with the Ethernet protocol', input: { d: mutate(raw[0]!, (b) => b.writeUInt16BE(0x6558, 2)) }, expected: 'protocol-mismatch' },
    { description: 'Ethernet kind with the raw protocol', input: { d: mutate(small, (b) => b.writeUInt16BE(0x88b5, 2)) }, expected: 'protocol-mismatch' },
    { description: 'cap_len 0', input: { d: mutate(small, (b) => b.writeUInt32BE(0, M + MetaOff.capLen)) }, expected: 'bad-lengths' },
    { description: 'cap_len above orig_len', input: { d: mutate(small, (b) => b.writeUInt32BE(10, M + MetaOff.origLen)) }, expected: 'bad-lengths' },
    { description: 'cap_len above 65549', input: { d: mutate(big[0]!, (b) => { b.writeUInt32BE(70000, M + MetaOff.origLen); b.writeUInt32BE(70000, M + MetaOff.capLen); }) }, expected: 'bad-lengths' },
    { description: 'hdr_len beyond the inner frame', input: { d: mutate(big[3]!, (b) => b.writeUInt16BE(2000, M + MetaOff.hdrLen)) }, expected: 'bad-lengths' },
    { description: 'IPv4 prefix shorter than an IPv4 header', input: { d: mutate(big[0]!, (b) => b.writeUInt16BE(20, M + MetaOff.hdrLen)) }, expected: 'bad-lengths' },
    { description: 'RAW with a prefix', input: { d: mutate(raw[0]!, (b) => b.writeUInt16BE(8, M + MetaOff.hdrLen)) }, expected: 'bad-lengths' },
    { description: 'IPv6 new: next-header offset outside the prefix', input: { d: mutate(v6[0]!, (b) => b.writeUInt16BE(60, M + MetaOff.fix + 2)) }, expected: 'bad-lengths' },
    { description: 'IPv6 new: next-header value above 255', input: { d: mutate(v6[0]!, (b) => b.writeUInt16BE(300, M + MetaOff.fix + 4)) }, expected: 'bad-lengths' },
    { description: 'chunk beyond cap_len', input: { d: mutate(big[1]!, (b) => b.writeUInt32BE(4000, M + MetaOff.pieceOff)) }, expected: 'outside-frame' },
    { description: 'chunk inside the prefix', input: { d: mutate(big[1]!, (b) => b.writeUInt32BE(10, M + MetaOff.pieceOff)) }, expected: 'outside-frame' },
    { description: 'WHOLE piece that is not the whole frame', input: { d: small.subarray(0, small.length - 1) }, expected: 'outside-frame' },
    { description: 'control bit with a data protocol', input: { d: mutate(small, (b) => (b[1] = 0x80)) }, expected: 'unknown-control' },
    { description: 'announcement option version 1 (a bearer token in the JSON: no longer taken)', input: { d: mutate(announce, (b) => (b[12] = 1)) }, expected: 'bad-announcement' },
    { description: 'announcement option version 3', input: { d: mutate(announce, (b) => (b[12] = 3)) }, expected: 'bad-announcement' },
    { description: 'VXLAN without the I flag', input: { d: mutate(encodeFrame(rawFrame(100), { tunnel: 'vxlan' })[0]!, (b) => (b[0] = 0)), mode: 'vxlan' }, expected: 'vxlan-flags' },
    { description: 'a DNS query on the Geneve port', input: { d: Buffer.from('12340100000100000000000003777777076578616d706c6503636f6d0000010001', 'hex') }, expected: 'bad-options' },
  ];
  it.each(cases)('malformed: $description → $expected', ({ input, expected }) => {
    expect(parseTunnelDatagram(input.d, input.mode ?? 'geneve')).toEqual({ type: 'malformed', reason: expected });
  });

  it('never throws on random bytes', () => {
    let x = 1;
    for (let i = 0; i < 5000; i++) {
      const len = i % 200;
      const b = Buffer.alloc(len);
      for (let j = 0; j < len; j++) {
        x = (x * 1103515245 + 12345) >>> 0;
        b[j] = x >>> 24;
      }
      if (len > 1) b[0]! &= 0x3f; // mostly Geneve version 0: reach the deeper checks
      expect(() => parseTunnelDatagram(b, i % 2 ? 'geneve' : 'vxlan')).not.toThrow();
    }
  });
});
