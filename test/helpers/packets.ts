/** Minimal frame builder for BPF_PROG_TEST_RUN tests. */
import { isIPv6 } from 'node:net';
import { ipv6Bytes } from '../../src/datapath/bpftool.ts';

export interface FrameSpec {
  src: string;
  dst: string;
  proto: 'TCP' | 'UDP' | 'ICMP' | 'ICMPv6' | 'SCTP' | 'ARP';
  sport?: number;
  dport?: number;
  tcpFlags?: number;
  payload?: number;
  /** an IP fragment: offset in bytes (a later fragment carries no L4 header), more fragments, identification */
  frag?: { offset: number; more: boolean; id: number };
}

const PROTO_NUM = { TCP: 6, UDP: 17, ICMP: 1, ICMPv6: 58, SCTP: 132 } as const;

function addr(ip: string): Buffer {
  return isIPv6(ip) ? ipv6Bytes(ip) : Buffer.from(ip.split('.').map(Number));
}

export function buildFrame(f: FrameSpec): Buffer {
  const eth = Buffer.alloc(14);
  Buffer.from([2, 0, 0, 0, 0, 2]).copy(eth, 0);
  Buffer.from([2, 0, 0, 0, 0, 1]).copy(eth, 6);
  if (f.proto === 'ARP') {
    eth.writeUInt16BE(0x0806, 12);
    return Buffer.concat([eth, Buffer.alloc(28)]);
  }
  const payload = Buffer.alloc(f.payload ?? 16, 0xab);
  let l4: Buffer;
  switch (f.proto) {
    case 'TCP':
      l4 = Buffer.alloc(20);
      l4.writeUInt16BE(f.sport ?? 40000, 0);
      l4.writeUInt16BE(f.dport ?? 80, 2);
      l4[12] = 5 << 4;
      l4[13] = f.tcpFlags ?? 0x10;
      break;
    case 'UDP':
    case 'SCTP':
      l4 = Buffer.alloc(f.proto === 'UDP' ? 8 : 12);
      l4.writeUInt16BE(f.sport ?? 40000, 0);
      l4.writeUInt16BE(f.dport ?? 53, 2);
      if (f.proto === 'UDP') l4.writeUInt16BE(8 + payload.length, 4);
      break;
    default:
      l4 = Buffer.from([8, 0, 0, 0, 0, 1, 0, 1]);
  }
  const body = f.frag && f.frag.offset > 0 ? payload : Buffer.concat([l4, payload]);
  const v6 = isIPv6(f.src);
  let ip: Buffer;
  if (v6) {
    eth.writeUInt16BE(0x86dd, 12);
    ip = Buffer.alloc(f.frag ? 48 : 40);
    ip[0] = 0x60;
    ip.writeUInt16BE(ip.length - 40 + body.length, 4);
    ip[6] = f.frag ? 44 : PROTO_NUM[f.proto];
    ip[7] = 64;
    addr(f.src).copy(ip, 8);
    addr(f.dst).copy(ip, 24);
    if (f.frag) {
      ip[40] = PROTO_NUM[f.proto];
      ip.writeUInt16BE((f.frag.offset & 0xfff8) | (f.frag.more ? 1 : 0), 42);
      ip.writeUInt32BE(f.frag.id, 44);
    }
  } else {
    eth.writeUInt16BE(0x0800, 12);
    ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + body.length, 2);
    if (f.frag) {
      ip.writeUInt16BE(f.frag.id, 4);
      ip.writeUInt16BE((f.frag.more ? 0x2000 : 0) | (f.frag.offset >> 3), 6);
    }
    ip[8] = 64;
    ip[9] = PROTO_NUM[f.proto];
    addr(f.src).copy(ip, 12);
    addr(f.dst).copy(ip, 16);
  }
  return Buffer.concat([eth, ip, body]);
}
