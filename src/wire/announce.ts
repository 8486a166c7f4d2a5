/**
 * Announcements: how a sender (the agent, or `podtap sniff`) tells the
 * collector, in-band on the tunnel port, what its tapped interfaces are and
 * how to turn its CLOCK_MONOTONIC timestamps into wall time.
 *
 * Encoding: a Geneve packet with the O (control) bit set, protocol type
 * 0x88B6, one option {class 0xFF70, type 0x02, length 1 word: version 1 and
 * three reserved bytes}, then the UTF-8 JSON of an Announcement.
 */
import { z } from 'zod';
import { DnsLabelSchema, ObjectNameSchema } from '../api/common.ts';
import {
  ANNOUNCE_OPT_VERSION,
  GENEVE_BASE_LEN,
  GENEVE_PROTO_ANNOUNCE,
  OPT_CLASS,
  OPT_TYPE_ANNOUNCE,
  parseTunnelDatagram,
  type TunnelMode,
} from './format.ts';

const decimal = z.string().regex(/^\d{1,20}$/, 'a non-negative decimal integer');
/**
 * A namespaced Kubernetes object by name, held to Kubernetes' own rules:
 * these names become capture directories and file names on the collector,
 * so nothing else (no `/`, no `..`, no upper case) may pass.
 */
const ref = z.object({ namespace: DnsLabelSchema, name: ObjectNameSchema });
/** A Linux interface name (IFNAMSIZ 16 with its NUL): no `/`, no space or control character. */
const IfNameSchema = z
  .string()
  .min(1)
  .max(15)
  .regex(/^[^\s/\u0000-\u001f\u007f]+$/, 'a Linux interface name')
  .refine((n) => n !== '.' && n !== '..', 'a Linux interface name');

export const AnnouncedInterfaceSchema = z.object({
  ifindex: z.number().int().min(1).max(0xffffffff),
  /** the host-side interface name (veth…) */
  name: IfNameSchema,
  pod: ref.nullable(),
  directions: z.array(z.enum(['Ingress', 'Egress'])).max(2),
});

export const AnnouncementSchema = z.object({
  v: z.literal(1),
  /** per-install token; empty when the collector requires none */
  token: z.string().max(256),
  /** the node's name (a Kubernetes Node name; `podtap sniff` uses the host name) */
  node: ObjectNameSchema,
  sender: z.enum(['agent', 'sniff']),
  /** random per sender process: tells a restarted sender from the old one */
  senderId: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, ".", "_" or "-", at most 64'),
  /** pt_meta.instance of the data-plane object these interfaces feed */
  instance: z.number().int().min(0).max(0xffff),
  tunnel: z.enum(['Geneve', 'VXLAN']),
  policy: ref.extend({ uid: z.string().regex(/^[A-Za-z0-9-]{0,64}$/, 'a Kubernetes UID') }).nullable(),
  /** CLOCK_MONOTONIC and CLOCK_REALTIME of the node, sampled together, in ns */
  clock: z.object({ monoNs: decimal, realtimeNs: decimal }),
  interfaces: z.array(AnnouncedInterfaceSchema).max(4096),
});

export type Announcement = z.infer<typeof AnnouncementSchema>;

/**
 * A host name as an announced node name (a lowercase DNS-1123 subdomain): a
 * host called `Build_01.lab` announces itself as `build-01.lab`.
 */
export function nodeNameOf(host: string): string {
  const labels = host
    .toLowerCase()
    .split('.')
    .map((l) => l.replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63).replace(/-+$/, ''))
    .filter((l) => l !== '');
  const name = labels.join('.').slice(0, 253).replace(/[.-]+$/, '');
  return name === '' ? 'localhost' : name;
}
export type AnnouncedInterface = z.infer<typeof AnnouncedInterfaceSchema>;

/** Announcements above this many bytes of JSON are split (see splitAnnouncement). */
export const ANNOUNCE_MAX_JSON = 8000;
const HEADER_LEN = GENEVE_BASE_LEN + 4 + 4;

/** The UDP payload of one announcement. */
export function encodeAnnouncement(a: Announcement): Buffer {
  const json = Buffer.from(JSON.stringify(AnnouncementSchema.parse(a)), 'utf8');
  const b = Buffer.alloc(HEADER_LEN + json.length);
  b[0] = 2; // version 0, options: 2 words
  b[1] = 0x80; // O: a control message
  b.writeUInt16BE(GENEVE_PROTO_ANNOUNCE, 2);
  b.writeUInt16BE(OPT_CLASS, 8);
  b[10] = OPT_TYPE_ANNOUNCE;
  b[11] = 1; // one word of option data
  b[12] = ANNOUNCE_OPT_VERSION;
  json.copy(b, HEADER_LEN);
  return b;
}

/**
 * Split an announcement so each one's JSON stays under maxJson bytes; the
 * collector merges them by (source address, instance, ifindex).
 */
export function splitAnnouncement(a: Announcement, maxJson = ANNOUNCE_MAX_JSON): Announcement[] {
  const base = Buffer.byteLength(JSON.stringify({ ...a, interfaces: [] }));
  const parts: Announcement[] = [];
  let cur: AnnouncedInterface[] = [];
  let size = base;
  for (const i of a.interfaces) {
    const n = Buffer.byteLength(JSON.stringify(i)) + 1;
    if (cur.length > 0 && size + n > maxJson) {
      parts.push({ ...a, interfaces: cur });
      cur = [];
      size = base;
    }
    cur.push(i);
    size += n;
  }
  parts.push({ ...a, interfaces: cur });
  return parts;
}

/** splitAnnouncement + encodeAnnouncement: the datagrams to send. */
export function encodeAnnouncements(a: Announcement, maxJson = ANNOUNCE_MAX_JSON): Buffer[] {
  return splitAnnouncement(a, maxJson).map(encodeAnnouncement);
}

export type DecodeResult = { ok: true; announcement: Announcement } | { ok: false; error: string };

/** Decode the JSON payload of an announcement (what follows the Geneve option). */
export function decodeAnnouncementPayload(payload: Buffer): DecodeResult {
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch (err) {
    return { ok: false, error: `not JSON: ${err instanceof Error ? err.message : String(err)}` };
  }
  const r = AnnouncementSchema.safeParse(json);
  if (!r.success) return { ok: false, error: z.prettifyError(r.error) };
  return { ok: true, announcement: r.data };
}

/** Decode a whole announcement datagram (the UDP payload). Never throws. */
export function decodeAnnouncement(buf: Buffer, mode: TunnelMode = 'geneve'): DecodeResult {
  const p = parseTunnelDatagram(buf, mode);
  if (p.type !== 'announce') return { ok: false, error: `not an announcement (${p.type === 'malformed' ? p.reason : p.type})` };
  return decodeAnnouncementPayload(p.payload);
}

/**
 * CLOCK_MONOTONIC and realtime (ns since the epoch) sampled together, as
 * decimal strings for Announcement.clock. process.hrtime.bigint() reads
 * CLOCK_MONOTONIC, the clock bpf_ktime_get_ns() uses; the realtime side is
 * performance.timeOrigin + performance.now() (sub-millisecond, unlike
 * Date.now()), read between two monotonic samples so their midpoint matches.
 */
export function monotonicRealtimePair(): { monoNs: string; realtimeNs: string } {
  const before = process.hrtime.bigint();
  const realMs = performance.timeOrigin + performance.now();
  const after = process.hrtime.bigint();
  const wholeMs = Math.floor(realMs);
  const realNs = BigInt(wholeMs) * 1_000_000n + BigInt(Math.round((realMs - wholeMs) * 1e6));
  return { monoNs: ((before + after) / 2n).toString(), realtimeNs: realNs.toString() };
}
