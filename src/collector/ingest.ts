/**
 * The receiving half of the collector, independent of sockets, files and
 * threads: parse each datagram, decide whether its source is accepted, track
 * sequence numbers, rebuild frames from their pieces, and hand the results to
 * a sink. One Ingest is single-threaded state; the collector runs one per
 * ingest worker. SO_REUSEPORT keeps each (instance, CPU, flow) stream on one socket
 * (the data plane gives each stream its own UDP source port, PT_SPORT_BASE in
 * bpf/include/consts.h), so per-worker sequence tracking and reassembly are
 * exact.
 *
 * Announcements are authenticated here, before their JSON is parsed (a MAC
 * under the sender's node key, a time window: wire/announce.ts); whether one
 * is a replay and whether its policy is assigned here is decided once, on
 * the writer's thread (admission.ts), which then grants the announced stream
 * (source address, instance) to every Ingest for a while. With an install
 * secret, data is taken only on granted streams; without one, from anyone.
 */
import {
  Flag,
  Kind,
  MALFORMED_REASONS,
  emptyParsed,
  parseDatagramInto,
  type MalformedReason,
  type ParsedDatagram,
  type PieceMeta,
  type TunnelMode,
} from '../wire/format.ts';
import { openAnnouncement, type Announcement, type AnnouncementAuth } from '../wire/announce.ts';
import { derivedKeyring, type NodeKeyring } from '../wire/auth.ts';
import { restoreWholeChecksum } from '../wire/segments.ts';
import { PieceResult, Reassembler, type ReassemblyLimits } from './reassembly.ts';
import { SeqStream, SeqVerdict } from './streams.ts';

/**
 * A rebuilt frame as an Ingest hands it on: its bytes are data[off, off + len).
 * One record is reused for every frame (no allocation per packet): it and its
 * buffer are valid only during the sink's call.
 */
export interface FrameRecord {
  /** the sender's address */
  address: string;
  /** pt_meta.instance: the data-plane object that took it */
  instance: number;
  /** the tapped interface, the node's ifindex */
  ifindex: number;
  /** pt_meta flags without FRAG/LAST (what all pieces agree on) */
  flags: number;
  /** the node's capture time, ns of CLOCK_MONOTONIC, in 32-bit halves */
  tsHi: number;
  tsLo: number;
  /** length of the frame on the interface */
  origLen: number;
  data: Buffer;
  off: number;
  len: number;
  /** wall-clock time it was received, ms since the epoch */
  recvMs: number;
}

export function emptyFrameRecord(): FrameRecord {
  return { address: '', instance: 0, ifindex: 0, flags: 0, tsHi: 0, tsLo: 0, origLen: 0, data: Buffer.alloc(0), off: 0, len: 0, recvMs: 0 };
}

/**
 * Frames of one sequence stream that never arrived: `count` numbers, the
 * first and last of them as declared (not every number between need be
 * missing). Reported when the stream's window passes them, at a restart, and
 * when the stream ends.
 */
export interface GapRecord {
  address: string;
  instance: number;
  cpu: number;
  count: number;
  first: number;
  last: number;
}

/** Where an Ingest puts what it accepted. */
export interface IngestSink {
  /**
   * A well-formed announcement, its MAC and time checked when the Ingest has
   * an install secret (`auth` then says by which key, nonce and time).
   */
  announce(address: string, a: Announcement, auth: AnnouncementAuth | undefined): void;
  /** A rebuilt frame (the record is only valid during the call). */
  frame(f: FrameRecord): void;
  /** A VXLAN inner frame as it arrived. */
  vxlan(address: string, vni: number, data: Buffer, off: number, len: number, recvMs: number): void;
  /** Frames of a stream that never arrived (they are in `lost` already). */
  gap(g: GapRecord): void;
}

export interface IngestLimits {
  sources: number;
  /** streams at once (below 2^21: frame keys hold a stream number, see reassembly.ts) */
  streams: number;
  /**
   * streams of one sender: (data-plane instances) × (CPUs). A stream costs
   * about 9 KiB (its sequence window), so this bounds what one sender can
   * make the collector hold (about 9 MiB at 1024), whatever it sends.
   */
  streamsPerSource: number;
  /** data-plane instances one source may be granted at once (one per capture session on its node) */
  instancesPerSource: number;
  /** a stream silent this long is retired (its gaps counted): data planes come and go */
  streamIdleMs: number;
  /** a source silent this long is forgotten (senders re-announce periodically) */
  sourceIdleMs: number;
}

export const DEFAULT_INGEST_LIMITS: IngestLimits = {
  sources: 4096,
  streams: 65536,
  streamsPerSource: 1024,
  instancesPerSource: 256,
  streamIdleMs: 120_000,
  sourceIdleMs: 600_000,
};

/** How often idle streams and sources are looked for. */
const EXPIRY_INTERVAL_MS = 5000;

/** How far an announcement's time may be from the collector's (clocks of nodes differ a little). */
export const DEFAULT_MAX_SKEW_MS = 60_000;

export interface IngestOptions {
  mode: TunnelMode;
  /**
   * the install's secret: announcements must carry a MAC under their node's
   * key (derived from it), and data is taken only on granted streams.
   * Absent = authenticate nobody, take data from anyone.
   */
  secret?: string | undefined;
  /** how far an announcement's time may be from ours (default 60 s) */
  maxSkewMs?: number | undefined;
  limits?: Partial<IngestLimits> | undefined;
  reassembly?: Partial<ReassemblyLimits> | undefined;
  /** wall clock, ms (tests) */
  wallClock?: () => number;
}

/** What an Ingest counted. Plain numbers: workers copy them into shared memory. */
export interface IngestStats {
  /** datagrams received */
  received: number;
  receivedBytes: number;
  /** well-formed data pieces */
  pieces: number;
  /** announcements well-formed and, with a secret, authenticated (admission may still refuse them) */
  announcements: number;
  /** frames rebuilt and handed on */
  rebuilt: number;
  /** frames the senders numbered that never arrived (sequence gaps) */
  lost: number;
  malformedByReason: Record<MalformedReason, number>;
  /** frames dropped unfinished (timeout, memory limit, restarted stream) */
  incomplete: number;
  /** of which dropped for the memory limits */
  evicted: number;
  /** pieces already had: repeats, and pieces of frames already finished */
  duplicates: number;
  /** pieces overlapping what their frame already had, not equal to it */
  overlaps: number;
  /** frames arriving after the sequence window had passed them (counted lost) */
  late: number;
  /** streams whose numbering restarted (data plane reloaded) */
  restarts: number;
  sources: number;
  streams: number;
  pendingFrames: number;
  pendingBytes: number;
}

/** What a WHOLE piece's metadata and a rebuilt frame share. */
type FrameMeta = Pick<PieceMeta, 'ifindex' | 'flags' | 'tstampHi' | 'tstampLo' | 'origLen'>;

interface Stream {
  id: number;
  instance: number;
  cpu: number;
  seq: SeqStream;
  lastSeen: number;
}

interface Source {
  address: string;
  /** instances granted (admitted announcements), until when (this Ingest's clock) */
  grants: Map<number, number>;
  lastSeen: number;
  /** (instance * 2^16 + cpu) * 2^8 + flow */
  streams: Map<number, Stream>;
}

export function emptyMalformed(): Record<MalformedReason, number> {
  return Object.fromEntries(MALFORMED_REASONS.map((r) => [r, 0])) as Record<MalformedReason, number>;
}

export class Ingest {
  readonly mode: TunnelMode;
  readonly #sink: IngestSink;
  readonly #keyring: NodeKeyring | undefined;
  readonly #maxSkewMs: number;
  readonly #wallClock: () => number;
  readonly #limits: IngestLimits;
  readonly #parsed: ParsedDatagram = emptyParsed();
  readonly #frame: FrameRecord = emptyFrameRecord();
  readonly #reasm: Reassembler;
  readonly #sources = new Map<string, Source>();
  readonly #malformed = emptyMalformed();
  #streamCount = 0;
  #nextStreamId = 0;
  readonly #freeStreamIds: number[] = [];
  #now: number;
  #lastExpiry: number;
  // lost/late/restarts of retired streams (live ones keep their own)
  #retiredLost = 0;
  #retiredLate = 0;
  #retiredRestarts = 0;
  #received = 0;
  #receivedBytes = 0;
  #pieces = 0;
  #announcements = 0;
  #rebuilt = 0;
  #duplicates = 0;
  #overlaps = 0;

  constructor(sink: IngestSink, opts: IngestOptions) {
    this.mode = opts.mode;
    this.#sink = sink;
    this.#keyring = opts.secret ? derivedKeyring(opts.secret) : undefined;
    this.#maxSkewMs = opts.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;
    this.#wallClock = opts.wallClock ?? Date.now;
    this.#limits = { ...DEFAULT_INGEST_LIMITS, ...opts.limits };
    if (this.#limits.streams > 1 << 21) throw new RangeError('at most 2^21 streams');
    this.#reasm = new Reassembler(opts.reassembly);
    this.#now = performance.now();
    this.#lastExpiry = this.#now;
  }

  /** Advance time (performance.now() ms): times out incomplete frames. Call a few times a second. */
  tick(nowMs = performance.now()): void {
    this.#now = nowMs;
    this.#reasm.sweep(nowMs);
    // (a clock that went back: the caller's time base changed; start over from it)
    if (nowMs - this.#lastExpiry >= EXPIRY_INTERVAL_MS || nowMs < this.#lastExpiry) {
      this.#lastExpiry = nowMs;
      this.#expire(nowMs);
    }
  }

  #expire(now: number): void {
    const { streamIdleMs, sourceIdleMs } = this.#limits;
    for (const [address, src] of this.#sources) {
      for (const [instance, until] of src.grants) if (until <= now) src.grants.delete(instance);
      // (with a secret, a source is only its grants and streams)
      const forget = now - src.lastSeen >= sourceIdleMs || (this.#keyring !== undefined && src.grants.size === 0 && src.streams.size === 0);
      for (const [key, st] of src.streams) {
        if (forget || now - st.lastSeen >= streamIdleMs) {
          this.#retire(st, address);
          src.streams.delete(key);
        }
      }
      if (forget) this.#sources.delete(address);
    }
  }

  #retire(st: Stream, address: string): void {
    st.seq.flush();
    this.#reportGap(address, st);
    this.#retiredLost += st.seq.lost;
    this.#retiredLate += st.seq.late;
    this.#retiredRestarts += st.seq.restarts;
    this.#reasm.dropStream(st.id);
    this.#freeStreamIds.push(st.id);
    this.#streamCount--;
  }

  /**
   * Process one UDP payload from `address`, received at wall-clock `recvMs`.
   * Never throws on bad input.
   */
  handle(buf: Buffer, address: string, recvMs = performance.timeOrigin + performance.now()): void {
    this.#received++;
    this.#receivedBytes += buf.length;
    const p = this.#parsed;
    switch (parseDatagramInto(buf, this.mode, p)) {
      case 'piece':
        this.#piece(buf, p, address, recvMs);
        return;
      case 'vxlan': {
        const src = this.#dataSource(address, undefined);
        if (!src) return;
        src.lastSeen = this.#now;
        this.#pieces++;
        this.#rebuilt++;
        this.#sink.vxlan(address, p.vni, buf, p.innerOff, p.innerLen, recvMs);
        return;
      }
      case 'announce':
        this.#announce(buf, p.innerOff, address);
        return;
      default:
        this.#malformed[p.reason ?? 'short']++;
    }
  }

  /** Count a datagram refused elsewhere (e.g. by the sink) under `reason`. */
  refuse(reason: MalformedReason): void {
    this.#malformed[reason]++;
  }

  /**
   * Data of `instance` from `address` is taken for `ttlMs` (admission
   * admitted its announcement; the sender re-announces well within it).
   */
  grant(address: string, instance: number, ttlMs: number): void {
    const src = this.#source(address);
    if (!src || (!src.grants.has(instance) && src.grants.size >= this.#limits.instancesPerSource)) {
      this.#malformed['too-many']++;
      return;
    }
    src.grants.set(instance, this.#now + ttlMs);
    src.lastSeen = this.#now;
  }

  /** Data of `instance` from `address` is no longer taken (its assignment went away). */
  revoke(address: string, instance: number): void {
    this.#sources.get(address)?.grants.delete(instance);
  }

  #source(address: string): Source | undefined {
    let src = this.#sources.get(address);
    if (!src) {
      if (this.#sources.size >= this.#limits.sources) return undefined;
      src = { address, grants: new Map(), lastSeen: this.#now, streams: new Map() };
      this.#sources.set(address, src);
    }
    return src;
  }

  /**
   * The source of a data datagram of `instance` (undefined: VXLAN, any
   * instance), or undefined after counting why it is refused.
   */
  #dataSource(address: string, instance: number | undefined): Source | undefined {
    if (!this.#keyring) {
      const src = this.#source(address);
      if (!src) this.#malformed['too-many']++;
      return src;
    }
    const src = this.#sources.get(address);
    if (!src || !this.#granted(src, instance)) {
      this.#malformed.unannounced++;
      return undefined;
    }
    return src;
  }

  #granted(src: Source, instance: number | undefined): boolean {
    if (instance !== undefined) return (src.grants.get(instance) ?? 0) > this.#now;
    for (const until of src.grants.values()) if (until > this.#now) return true;
    return false;
  }

  #announce(buf: Buffer, at: number, address: string): void {
    const r = openAnnouncement(buf, at, { keyring: this.#keyring, nowMs: this.#wallClock(), maxSkewMs: this.#maxSkewMs, source: address });
    if (!r.ok) {
      this.#malformed[r.reason]++;
      return;
    }
    this.#announcements++;
    this.#sink.announce(address, r.announcement, r.auth);
  }

  #piece(buf: Buffer, p: ParsedDatagram, address: string, recvMs: number): void {
    const src = this.#dataSource(address, p.meta.instance);
    if (!src) return;
    const m = p.meta;
    // a stream: (instance, cpu, flow bucket), each with its own outer source port
    const skey = (m.instance * 0x10000 + m.cpu) * 0x100 + m.flow;
    let st = src.streams.get(skey);
    if (!st) {
      if (this.#streamCount >= this.#limits.streams || src.streams.size >= this.#limits.streamsPerSource) {
        this.#malformed['too-many']++;
        return;
      }
      st = { id: this.#freeStreamIds.pop() ?? this.#nextStreamId++, instance: m.instance, cpu: m.cpu, seq: new SeqStream(), lastSeen: this.#now };
      this.#streamCount++;
      src.streams.set(skey, st);
    }
    st.lastSeen = this.#now;
    src.lastSeen = this.#now;
    this.#pieces++;
    let verdict = st.seq.observe(m.seq, m.tstampHi, m.tstampLo);
    if (st.seq.gapPending) this.#reportGap(address, st);
    if (verdict === SeqVerdict.restart) {
      this.#reasm.dropStream(st.id);
      verdict = SeqVerdict.fresh;
    }
    if (verdict === SeqVerdict.late) return;
    if (m.kind === Kind.whole) {
      // the parser checked that it carries the whole captured frame
      if (verdict === SeqVerdict.seen) {
        this.#duplicates++;
        return;
      }
      this.#rebuilt++;
      if (m.flags & Flag.csum) restoreWholeChecksum(buf, p.innerOff, m);
      this.#emit(address, st.instance, m, buf, p.innerOff, p.innerLen, recvMs);
      return;
    }
    const r =
      verdict === SeqVerdict.fresh
        ? this.#reasm.start(st.id, m, buf, p.innerOff, p.innerLen, this.#now)
        : this.#reasm.add(st.id, m, buf, p.innerOff, p.innerLen);
    switch (r) {
      case PieceResult.complete: {
        const f = this.#reasm.completed!;
        this.#rebuilt++;
        // frame flags without FRAG/LAST: what the pieces agree on
        this.#emit(address, st.instance, f, f.data, 0, f.capLen, recvMs);
        return;
      }
      case PieceResult.duplicate:
      case PieceResult.unknown:
        this.#duplicates++;
        return;
      case PieceResult.overlap:
        this.#overlaps++;
        return;
      case PieceResult.inconsistent:
        this.#malformed.inconsistent++;
        return;
    }
  }

  /** Fills the reused frame record from a piece's (or a rebuilt frame's) metadata and hands it to the sink. */
  #emit(address: string, instance: number, m: FrameMeta, data: Buffer, off: number, len: number, recvMs: number): void {
    const f = this.#frame;
    f.address = address;
    f.instance = instance;
    f.ifindex = m.ifindex;
    f.flags = m.flags;
    f.tsHi = m.tstampHi;
    f.tsLo = m.tstampLo;
    f.origLen = m.origLen;
    f.data = data;
    f.off = off;
    f.len = len;
    f.recvMs = recvMs;
    this.#sink.frame(f);
  }

  #reportGap(address: string, st: Stream): void {
    const g = st.seq.takeGap();
    if (g) this.#sink.gap({ address, instance: st.instance, cpu: st.cpu, ...g });
  }

  /** End of input: missing sequence numbers become lost, pending frames incomplete. */
  finish(): void {
    for (const src of this.#sources.values()) {
      for (const st of src.streams.values()) {
        st.seq.flush();
        this.#reportGap(src.address, st);
      }
    }
    this.#reasm.dropAll();
  }

  stats(): IngestStats {
    let lost = this.#retiredLost;
    let late = this.#retiredLate;
    let restarts = this.#retiredRestarts;
    for (const src of this.#sources.values()) {
      for (const st of src.streams.values()) {
        lost += st.seq.lost;
        late += st.seq.late;
        restarts += st.seq.restarts;
      }
    }
    return {
      received: this.#received,
      receivedBytes: this.#receivedBytes,
      pieces: this.#pieces,
      announcements: this.#announcements,
      rebuilt: this.#rebuilt,
      lost,
      malformedByReason: { ...this.#malformed },
      incomplete: this.#reasm.incomplete,
      evicted: this.#reasm.evicted,
      duplicates: this.#duplicates,
      overlaps: this.#overlaps,
      late,
      restarts,
      sources: this.#sources.size,
      streams: this.#streamCount,
      pendingFrames: this.#reasm.pendingFrames,
      pendingBytes: this.#reasm.pendingBytes,
    };
  }
}
