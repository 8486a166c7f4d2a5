/**
 * Announcements: how a sender (the agent, or `podtap sniff`) tells the
 * collector, in-band on the tunnel port, what its tapped interfaces are and
 * how to turn its CLOCK_MONOTONIC timestamps into wall time, and proves which
 * node it speaks for (auth.ts) without sending anything a listener could
 * reuse.
 *
 * Encoding (docs/wire-format.md, "Announcements"): a Geneve packet with the O
 * (control) bit set, protocol type 0x88B6, one option {class 0xFF70, type
 * 0x02, length 1 word: version 2 and three reserved bytes}, then the envelope
 *
 *   scheme (1), key id length K (1), JSON length J (2), time ms (8), nonce (16),
 *   key id (K), JSON (J), MAC (32, scheme 1 only)
 *
 * and nothing after it. The MAC covers every byte before it. The collector
 * checks the envelope and the MAC before it parses the JSON.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { DnsLabelSchema, ObjectNameSchema } from '../k8s/names.ts';
import { AuthScheme, MAC_LEN, NONCE_LEN, announcementMac, newNonce, verifyAnnouncementMac, type NodeKey, type NodeKeyring } from './auth.ts';
import {
  ANNOUNCE_OPT_VERSION,
  GENEVE_BASE_LEN,
  GENEVE_PROTO_ANNOUNCE,
  OPT_CLASS,
  OPT_TYPE_ANNOUNCE,
  parseTunnelDatagram,
  type MalformedReason,
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
  /** what is captured on it, named from the pod's side as a SniffPolicy's policyTypes: Ingress = to the pod, Egress = from it (podtap 0.1 sent the tc hooks of the host-side veth here, the other way round; no collector reads it) */
  directions: z.array(z.enum(['Ingress', 'Egress'])).max(2),
});

export const AnnouncementSchema = z.object({
  v: z.literal(2),
  /** the node's name (a Kubernetes Node name; `podtap sniff` uses the host name); with a MAC, also its key id */
  node: ObjectNameSchema,
  /** the address the sender sends from (its socket's): a collector that authenticates refuses the announcement from any other */
  source: z.string().refine((a) => isIP(a) !== 0, 'an IP address'),
  sender: z.enum(['agent', 'sniff']),
  /** random per sender process: tells a restarted sender from the old one */
  senderId: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, ".", "_" or "-", at most 64'),
  /** pt_meta.instance of the data-plane object these interfaces feed */
  instance: z.number().int().min(0).max(0xffff),
  tunnel: z.enum(['Geneve', 'VXLAN']),
  /** the policy's snap length: bytes kept of each frame (0 = all the data plane carries, 65549) */
  snapLength: z.number().int().min(0).max(65535).optional(),
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
/** Geneve header and the option with its one word of data. */
const HEADER_LEN = GENEVE_BASE_LEN + 4 + 4;
/** scheme, key id length, JSON length, time, nonce. */
const ENVELOPE_FIXED = 1 + 1 + 2 + 8 + NONCE_LEN;
const KEY_ID_MAX = 253;
const JSON_MAX = 0xffff;

/** How one announcement is signed: with `key` a MAC under it; time and nonce default to now and fresh random bytes. */
export interface SignOptions {
  key?: NodeKey | undefined;
  timeMs?: number;
  nonce?: Buffer;
}

/** The UDP payload of one announcement, signed with `sign.key` when given. */
export function encodeAnnouncement(a: Announcement, sign: SignOptions = {}): Buffer {
  const json = Buffer.from(JSON.stringify(AnnouncementSchema.parse(a)), 'utf8');
  const key = sign.key;
  if (key && key.id !== a.node) throw new RangeError(`the key of node ${key.id} cannot sign an announcement of node ${a.node}`);
  const keyId = Buffer.from(key?.id ?? '', 'utf8');
  const nonce = sign.nonce ?? newNonce();
  if (json.length > JSON_MAX || keyId.length > KEY_ID_MAX || nonce.length !== NONCE_LEN) throw new RangeError('announcement too large');
  const macAt = HEADER_LEN + ENVELOPE_FIXED + keyId.length + json.length;
  const b = Buffer.alloc(macAt + (key ? MAC_LEN : 0));
  b[0] = 2; // version 0, options: 2 words
  b[1] = 0x80; // O: a control message
  b.writeUInt16BE(GENEVE_PROTO_ANNOUNCE, 2);
  b.writeUInt16BE(OPT_CLASS, 8);
  b[10] = OPT_TYPE_ANNOUNCE;
  b[11] = 1; // one word of option data
  b[12] = ANNOUNCE_OPT_VERSION;
  let p = HEADER_LEN;
  b[p] = key ? AuthScheme.hmacSha256 : AuthScheme.none;
  b[p + 1] = keyId.length;
  b.writeUInt16BE(json.length, p + 2);
  b.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(sign.timeMs ?? Date.now()))), p + 4);
  nonce.copy(b, p + 12);
  p += ENVELOPE_FIXED;
  keyId.copy(b, p);
  json.copy(b, p + keyId.length);
  if (key) announcementMac(key.key, b.subarray(0, macAt)).copy(b, macAt);
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

/** splitAnnouncement + encodeAnnouncement: the datagrams to send, each with its own nonce. */
export function encodeAnnouncements(a: Announcement, sign: Omit<SignOptions, 'nonce'> = {}, maxJson = ANNOUNCE_MAX_JSON): Buffer[] {
  return splitAnnouncement(a, maxJson).map((part) => encodeAnnouncement(part, sign));
}

/** An announcement's envelope, read but not yet trusted. Buffers point into the datagram. */
export interface Envelope {
  scheme: number;
  keyId: string;
  timeMs: number;
  nonce: Buffer;
  json: Buffer;
  /** the bytes the MAC covers, and the MAC (empty without one) */
  signed: Buffer;
  mac: Buffer;
}

/** Reads the envelope that follows the option (`at`: its first byte). Never throws; checks lengths only. */
export function readEnvelope(buf: Buffer, at: number): Envelope | undefined {
  if (at + ENVELOPE_FIXED > buf.length) return undefined;
  const scheme = buf[at]!;
  const k = buf[at + 1]!;
  const j = buf.readUInt16BE(at + 2);
  const timeMs = Number(buf.readBigUInt64BE(at + 4));
  const keyAt = at + ENVELOPE_FIXED;
  const macAt = keyAt + k + j;
  const macLen = scheme === AuthScheme.hmacSha256 ? MAC_LEN : scheme === AuthScheme.none ? 0 : -1;
  if (macLen < 0 || k > KEY_ID_MAX || macAt + macLen !== buf.length) return undefined;
  return {
    scheme, keyId: buf.toString('latin1', keyAt, keyAt + k), timeMs, nonce: buf.subarray(at + 4 + 8, keyAt),
    json: buf.subarray(keyAt + k, macAt), signed: buf.subarray(0, macAt), mac: buf.subarray(macAt),
  };
}

export type DecodeResult = { ok: true; announcement: Announcement } | { ok: false; error: string };

/** Decode the JSON of an announcement. */
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

/** What proved an admitted announcement: its node's key id, nonce (hex) and time. */
export interface AnnouncementAuth {
  keyId: string;
  nonce: string;
  timeMs: number;
}

export interface OpenOptions {
  /** the node keys; absent = a collector that authenticates nobody (announcements are taken as they come) */
  keyring?: NodeKeyring | undefined;
  /** wall clock now, ms */
  nowMs: number;
  /** how far an announcement's time may be from ours */
  maxSkewMs: number;
  /** the address the datagram came from */
  source: string;
}

export type OpenResult =
  | { ok: true; announcement: Announcement; auth: AnnouncementAuth | undefined }
  | { ok: false; reason: MalformedReason; error: string };

/** An IPv4 address as a dual-stack socket reports it (::ffff:a.b.c.d) is the IPv4 address. */
function plainAddress(a: string): string {
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a;
}

/**
 * The collector's side of an announcement datagram (`at`: where the envelope
 * starts): envelope, then — with a keyring — the MAC and the time window,
 * and only then the JSON, its node against the key id and its source against
 * the datagram's. Never throws. Replays are the caller's to refuse (the nonce
 * is in `auth`): they need state across datagrams.
 */
export function openAnnouncement(buf: Buffer, at: number, o: OpenOptions): OpenResult {
  const env = readEnvelope(buf, at);
  if (!env) return { ok: false, reason: 'bad-announcement', error: 'envelope lengths do not add up' };
  let auth: AnnouncementAuth | undefined;
  if (o.keyring) {
    if (env.scheme !== AuthScheme.hmacSha256) return { ok: false, reason: 'unauthenticated', error: 'no MAC' };
    if (!ObjectNameSchema.safeParse(env.keyId).success) return { ok: false, reason: 'bad-announcement', error: 'key id is not a node name' };
    const key = o.keyring.keyFor(env.keyId);
    if (!key || !verifyAnnouncementMac(key, env.signed, env.mac)) return { ok: false, reason: 'bad-mac', error: `MAC does not verify for node ${env.keyId}` };
    if (Math.abs(o.nowMs - env.timeMs) > o.maxSkewMs) {
      return { ok: false, reason: 'stale', error: `sent at ${new Date(env.timeMs).toISOString()}, more than ${o.maxSkewMs} ms from now` };
    }
    auth = { keyId: env.keyId, nonce: env.nonce.toString('hex'), timeMs: env.timeMs };
  }
  const r = decodeAnnouncementPayload(env.json);
  if (!r.ok) return { ok: false, reason: 'bad-announcement', error: r.error };
  const a = r.announcement;
  if (auth && a.node !== auth.keyId) return { ok: false, reason: 'bad-announcement', error: `node ${a.node} signed with the key of ${auth.keyId}` };
  if (auth && plainAddress(a.source) !== plainAddress(o.source)) {
    return { ok: false, reason: 'wrong-source', error: `announces ${a.source} but came from ${o.source}` };
  }
  return { ok: true, announcement: a, auth };
}

/** Decode a whole announcement datagram (the UDP payload) without checking any MAC (tools and tests). Never throws. */
export function decodeAnnouncement(buf: Buffer, mode: TunnelMode = 'geneve'): DecodeResult & { envelope?: Envelope } {
  const p = parseTunnelDatagram(buf, mode);
  if (p.type !== 'announce') return { ok: false, error: `not an announcement (${p.type === 'malformed' ? p.reason : p.type})` };
  const env = readEnvelope(buf, buf.length - p.payload.length);
  if (!env) return { ok: false, error: 'envelope lengths do not add up' };
  const r = decodeAnnouncementPayload(env.json);
  return r.ok ? { ...r, envelope: env } : r;
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
