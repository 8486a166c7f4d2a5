/**
 * Test frames for the wire format: Ethernet + IPv4/IPv6 (with extension
 * headers and pod-made fragments) + L4, with deterministic payload bytes so
 * that any misplaced byte shows. Addresses from 198.18.0.0/15 and 2001:db8::/32.
 */

const MAC_A = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B = [0x02, 0, 0, 0, 0, 0x0b];

function eth(type: number): Buffer {
  const b = Buffer.alloc(14);
  b.set(MAC_B, 0);
  b.set(MAC_A, 6);
  b.writeUInt16BE(type, 12);
  return b;
}

/** n bytes of a pattern that differs at every offset and per seed. */
export function pattern(n: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

function checksum(b: Buffer): number {
  let s = 0;
  for (let i = 0; i < b.length; i += 2) s += (b[i]! << 8) | (b[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

export type L4 = 'TCP' | 'UDP' | 'ICMP' | 'ICMPv6';
const PROTO = { TCP: 6, UDP: 17, ICMP: 1, ICMPv6: 58 } as const;

function l4(proto: L4, payload: number, seed: number): Buffer {
  let h: Buffer;
  if (proto === 'TCP') {
    h = Buffer.alloc(20);
    h.writeUInt16BE(40000, 0);
    h.writeUInt16BE(443, 2);
    h.writeUInt32BE(seed, 4);
    h[12] = 5 << 4;
    h[13] = 0x18;
    h.writeUInt16BE(64240, 14);
  } else if (proto === 'UDP') {
    h = Buffer.alloc(8);
    h.writeUInt16BE(40000, 0);
    h.writeUInt16BE(5353, 2);
    h.writeUInt16BE((8 + payload) & 0xffff, 4);
  } else {
    h = Buffer.from([proto === 'ICMP' ? 8 : 128, 0, 0, 0, 0, 1, 0, seed & 0xff]);
  }
  return Buffer.concat([h, pattern(payload, seed)]);
}

export interface V4Spec {
  proto: L4;
  /** L4 payload bytes */
  payload: number;
  /** IP options bytes (multiple of 4) */
  options?: number;
  id?: number;
  df?: boolean;
  /** pod-made fragment: offset in bytes (multiple of 8) and MF */
  fragOffset?: number;
  more?: boolean;
  seed?: number;
}

export function ipv4Frame(s: V4Spec): Buffer {
  const seed = s.seed ?? 7;
  const body = l4(s.proto, s.payload, seed);
  const opt = s.options ?? 0;
  const ip = Buffer.alloc(20 + opt);
  ip[0] = 0x40 | ((20 + opt) / 4);
  ip.writeUInt16BE((ip.length + body.length) & 0xffff, 2);
  ip.writeUInt16BE(s.id ?? 0x1234, 4);
  ip.writeUInt16BE((s.df ? 0x4000 : 0) | (s.more ? 0x2000 : 0) | ((s.fragOffset ?? 0) >> 3), 6);
  ip[8] = 64;
  ip[9] = PROTO[s.proto];
  ip.set([198, 18, 0, 10], 12);
  ip.set([198, 18, 1, 2], 16);
  for (let i = 20; i < ip.length; i++) ip[i] = 1; // NOP options
  ip.writeUInt16BE(checksum(ip), 10);
  return Buffer.concat([eth(0x0800), ip, body]);
}

export type V6Ext = 'hop' | 'routing' | 'dst' | 'frag';

export interface V6Spec {
  proto: L4;
  payload: number;
  /** extension headers in order; 'frag' makes it a pod-made fragment */
  ext?: V6Ext[];
  fragOffset?: number;
  more?: boolean;
  seed?: number;
}

export function ipv6Frame(s: V6Spec): Buffer {
  const seed = s.seed ?? 9;
  const exts = s.ext ?? [];
  const parts: Buffer[] = [];
  const codes = { hop: 0, routing: 43, dst: 60, frag: 44 } as const;
  for (let i = 0; i < exts.length; i++) {
    const next = i + 1 < exts.length ? codes[exts[i + 1]!] : PROTO[s.proto];
    const e = exts[i]!;
    if (e === 'frag') {
      const f = Buffer.alloc(8);
      f[0] = next;
      f.writeUInt16BE(((s.fragOffset ?? 0) & 0xfff8) | (s.more ? 1 : 0), 2);
      f.writeUInt32BE(0xabcdef01, 4);
      parts.push(f);
    } else {
      const len = e === 'routing' ? 24 : 16; // (hdr ext len + 1) * 8
      const h = Buffer.alloc(len);
      h[0] = next;
      h[1] = len / 8 - 1;
      if (e === 'routing') h[2] = 253; // RFC 4727 experimental type, segments left 0
      h.fill(0x5a, 4);
      parts.push(h);
    }
  }
  const body = Buffer.concat([...parts, l4(s.proto, s.payload, seed)]);
  const ip = Buffer.alloc(40);
  ip[0] = 0x60;
  ip.writeUInt16BE(body.length & 0xffff, 4);
  ip[6] = exts.length ? codes[exts[0]!] : PROTO[s.proto];
  ip[7] = 64;
  ip.set([0x20, 0x01, 0x0d, 0xb8], 8);
  ip[23] = 0x10;
  ip.set([0x20, 0x01, 0x0d, 0xb8], 24);
  ip[39] = 0x20;
  return Buffer.concat([eth(0x86dd), ip, body]);
}

/** A non-IP frame (IEEE 802 local experimental ethertype). */
export function rawFrame(len: number, seed = 3): Buffer {
  return Buffer.concat([eth(0x88b5), pattern(len - 14, seed)]);
}
