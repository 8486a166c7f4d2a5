/**
 * The collector's per-datagram work, independent of sockets and files: parse,
 * apply announcements, track sequence numbers, rebuild frames, write pcapng
 * blocks. One Pipeline is single-threaded state; scaling out means one
 * pipeline per ingest worker (SO_REUSEPORT keeps each stream on one socket,
 * see PT_SPORT_BASE in bpf/include/consts.h).
 */
import { timingSafeEqual, createHash } from 'node:crypto';
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
import { decodeAnnouncementPayload, type Announcement } from '../wire/announce.ts';
import { Direction, type PcapngWriter } from './pcapng.ts';
import { PieceResult, Reassembler, type ReassemblyLimits } from './reassembly.ts';
import { SeqStream, SeqVerdict } from './streams.ts';

const TWO32 = 0x1_0000_0000;

export interface PipelineLimits {
  sources: number;
  /** streams at once (below 2^21: frame keys hold a stream number, see reassembly.ts) */
  streams: number;
  interfacesPerSource: number;
  /** a stream silent this long is retired (its gaps counted): data planes come and go */
  streamIdleMs: number;
  /** a source silent this long is forgotten (senders re-announce periodically) */
  sourceIdleMs: number;
}

export const DEFAULT_PIPELINE_LIMITS: PipelineLimits = {
  sources: 4096,
  streams: 65536,
  interfacesPerSource: 16384,
  streamIdleMs: 120_000,
  sourceIdleMs: 600_000,
};

/** How often idle streams and sources are looked for. */
const EXPIRY_INTERVAL_MS = 5000;

export interface PipelineOptions {
  mode: TunnelMode;
  /** when set, only sources that announced themselves with this token are taken */
  token?: string | undefined;
  limits?: Partial<PipelineLimits>;
  reassembly?: Partial<ReassemblyLimits>;
  /** true while the output cannot keep up: frames are then dropped and counted */
  overloaded?: () => boolean;
}

export interface CollectorStats {
  /** datagrams received */
  received: number;
  receivedBytes: number;
  /** well-formed data pieces */
  pieces: number;
  /** announcements accepted */
  announcements: number;
  /** frames written to the capture */
  rebuilt: number;
  /** frames the senders numbered that never arrived (sequence gaps) */
  lost: number;
  /** datagrams dropped as malformed or refused, all reasons */
  malformed: number;
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
  /** frames stamped with the collector's receive time (no clock announced yet) */
  timestampFallback: number;
  /** frames written with fewer bytes than on the wire (snap length or oversize) */
  truncated: number;
  /** of which cut because they exceeded the data plane's 64 KiB cache */
  oversize: number;
  /** frames dropped because the disk could not keep up */
  writeDropped: number;
  /** bytes of pcapng produced */
  bytesWritten: number;
  interfaces: number;
  sources: number;
  streams: number;
  pendingFrames: number;
  pendingBytes: number;
}

interface Clock {
  monoHi: number;
  monoLo: number;
  realHi: number;
  realLo: number;
}

interface Iface {
  id: number;
  name: string;
  description: string;
}

interface Stream {
  id: number;
  instance: number;
  seq: SeqStream;
  lastSeen: number;
}

interface Source {
  address: string;
  announced: boolean;
  lastSeen: number;
  node: string | undefined;
  clock: Clock | undefined;
  /** Geneve: instance * 2^32 + ifindex; VXLAN: VNI */
  ifaces: Map<number, Iface>;
  /** instance * 2^16 + cpu */
  streams: Map<number, Stream>;
}

function splitNs(v: bigint): { hi: number; lo: number } {
  return { hi: Number((v >> 32n) & 0xffffffffn), lo: Number(v & 0xffffffffn) };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

export class Pipeline {
  readonly mode: TunnelMode;
  readonly #tokenDigest: Buffer | undefined;
  readonly #limits: PipelineLimits;
  readonly #overloaded: () => boolean;
  readonly #parsed: ParsedDatagram = emptyParsed();
  readonly #reasm: Reassembler;
  readonly #sources = new Map<string, Source>();
  readonly #malformed = Object.fromEntries(MALFORMED_REASONS.map((r) => [r, 0])) as Record<MalformedReason, number>;
  #writer: PcapngWriter;
  #streamCount = 0;
  #nextStreamId = 0;
  readonly #freeStreamIds: number[] = [];
  #now = 0;
  #lastExpiry = 0;
  // lost/late/restarts of retired streams (live ones keep their own)
  #retiredLost = 0;
  #retiredLate = 0;
  #retiredRestarts = 0;
  // the collector's own clock: realtime at #baseMs of performance.now()
  readonly #baseMs: number;
  readonly #baseHi: number;
  readonly #baseLo: number;
  // result of #addNs
  #tsHi = 0;
  #tsLo = 0;
  // counters
  #received = 0;
  #receivedBytes = 0;
  #pieces = 0;
  #announcements = 0;
  #rebuilt = 0;
  #duplicates = 0;
  #overlaps = 0;
  #fallback = 0;
  #truncated = 0;
  #oversize = 0;
  #writeDropped = 0;

  constructor(writer: PcapngWriter, opts: PipelineOptions) {
    this.mode = opts.mode;
    this.#writer = writer;
    this.#tokenDigest = opts.token ? digest(opts.token) : undefined;
    this.#limits = { ...DEFAULT_PIPELINE_LIMITS, ...opts.limits };
    if (this.#limits.streams > 1 << 21) throw new RangeError('at most 2^21 streams');
    this.#overloaded = opts.overloaded ?? (() => false);
    this.#reasm = new Reassembler(opts.reassembly);
    this.#baseMs = performance.now();
    const realMs = performance.timeOrigin + this.#baseMs;
    const whole = Math.floor(realMs);
    const base = splitNs(BigInt(whole) * 1_000_000n + BigInt(Math.round((realMs - whole) * 1e6)));
    this.#baseHi = base.hi;
    this.#baseLo = base.lo;
    this.#now = this.#baseMs;
    this.#lastExpiry = this.#baseMs;
  }

  /**
   * Switch to a new output (file rotation): the interfaces known so far are
   * described again in it.
   */
  setWriter(writer: PcapngWriter): void {
    this.#writer = writer;
    for (const src of this.#sources.values()) {
      for (const i of src.ifaces.values()) i.id = writer.addInterface({ name: i.name, description: i.description });
    }
  }

  /** Advance time: times out incomplete frames. Call a few times a second. */
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
      const forget = now - src.lastSeen >= sourceIdleMs;
      for (const [key, st] of src.streams) {
        if (forget || now - st.lastSeen >= streamIdleMs) {
          this.#retire(st);
          src.streams.delete(key);
        }
      }
      if (forget) this.#sources.delete(address);
    }
  }

  #retire(st: Stream): void {
    st.seq.flush();
    this.#retiredLost += st.seq.lost;
    this.#retiredLate += st.seq.late;
    this.#retiredRestarts += st.seq.restarts;
    this.#reasm.dropStream(st.id);
    this.#freeStreamIds.push(st.id);
    this.#streamCount--;
  }

  /** Process one UDP payload from `address`. Never throws on bad input. */
  handle(buf: Buffer, address: string): void {
    this.#received++;
    this.#receivedBytes += buf.length;
    const p = this.#parsed;
    switch (parseDatagramInto(buf, this.mode, p)) {
      case 'piece':
        this.#piece(buf, p, address);
        return;
      case 'vxlan':
        this.#vxlan(buf, p, address);
        return;
      case 'announce':
        this.#announce(buf.subarray(p.innerOff, p.innerOff + p.innerLen), address);
        return;
      default:
        this.#bad(p.reason ?? 'short');
    }
  }

  #bad(reason: MalformedReason): void {
    this.#malformed[reason]++;
  }

  #source(address: string): Source | undefined {
    let src = this.#sources.get(address);
    if (!src) {
      if (this.#sources.size >= this.#limits.sources) return undefined;
      src = { address, announced: false, lastSeen: this.#now, node: undefined, clock: undefined, ifaces: new Map(), streams: new Map() };
      this.#sources.set(address, src);
    }
    return src;
  }

  /** The source of a data datagram, or undefined after counting why it is refused. */
  #dataSource(address: string): Source | undefined {
    const src = this.#tokenDigest ? this.#sources.get(address) : this.#source(address);
    if (!src) {
      this.#bad(this.#tokenDigest ? 'unannounced' : 'too-many');
      return undefined;
    }
    if (this.#tokenDigest && !src.announced) {
      this.#bad('unannounced');
      return undefined;
    }
    return src;
  }

  #announce(payload: Buffer, address: string): void {
    const r = decodeAnnouncementPayload(payload);
    if (!r.ok) return this.#bad('bad-announcement');
    const a = r.announcement;
    if (this.#tokenDigest && !timingSafeEqual(digest(a.token), this.#tokenDigest)) return this.#bad('bad-token');
    const src = this.#source(address);
    if (!src) return this.#bad('too-many');
    src.announced = true;
    src.lastSeen = this.#now;
    src.node = a.node;
    const mono = splitNs(BigInt(a.clock.monoNs));
    const real = splitNs(BigInt(a.clock.realtimeNs));
    src.clock = { monoHi: mono.hi, monoLo: mono.lo, realHi: real.hi, realLo: real.lo };
    this.#announcements++;
    if (this.mode === 'vxlan') return;
    for (const i of a.interfaces) {
      const key = a.instance * TWO32 + i.ifindex;
      const name = i.pod ? `${i.pod.namespace}/${i.pod.name}` : i.name;
      this.#describe(src, key, name, announcedDescription(a, i.name, i.ifindex, address));
    }
  }

  /** (Re)describe an interface; a changed name or description is a new interface block. */
  #describe(src: Source, key: number, name: string, description: string): Iface | undefined {
    const old = src.ifaces.get(key);
    if (old && old.name === name && old.description === description) return old;
    if (!old && src.ifaces.size >= this.#limits.interfacesPerSource) return undefined;
    const iface = { id: this.#writer.addInterface({ name, description }), name, description };
    src.ifaces.set(key, iface);
    return iface;
  }

  #piece(buf: Buffer, p: ParsedDatagram, address: string): void {
    const src = this.#dataSource(address);
    if (!src) return;
    const m = p.meta;
    const skey = m.instance * 0x10000 + m.cpu;
    let st = src.streams.get(skey);
    if (!st) {
      if (this.#streamCount >= this.#limits.streams) return this.#bad('too-many');
      st = { id: this.#freeStreamIds.pop() ?? this.#nextStreamId++, instance: m.instance, seq: new SeqStream(), lastSeen: this.#now };
      this.#streamCount++;
      src.streams.set(skey, st);
    }
    st.lastSeen = this.#now;
    src.lastSeen = this.#now;
    this.#pieces++;
    let verdict = st.seq.observe(m.seq, m.tstampHi, m.tstampLo);
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
      this.#write(src, st.instance, m, buf, p.innerOff, p.innerLen);
      return;
    }
    const r =
      verdict === SeqVerdict.fresh
        ? this.#reasm.start(st.id, m, buf, p.innerOff, p.innerLen, this.#now)
        : this.#reasm.add(st.id, m, buf, p.innerOff, p.innerLen);
    switch (r) {
      case PieceResult.complete: {
        const f = this.#reasm.completed!;
        this.#write(src, st.instance, f, f.data, 0, f.capLen);
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
        this.#bad('inconsistent');
        return;
    }
  }

  #write(
    src: Source,
    instance: number,
    m: Pick<PieceMeta, 'ifindex' | 'flags' | 'tstampHi' | 'tstampLo' | 'origLen'>,
    data: Buffer,
    off: number,
    len: number,
  ): void {
    if (this.#overloaded()) {
      this.#writeDropped++;
      return;
    }
    const key = instance * TWO32 + m.ifindex;
    const iface =
      src.ifaces.get(key) ??
      this.#describe(src, key, `${src.address}/if${m.ifindex}`, `not announced: ifindex ${m.ifindex}, instance ${instance}, from ${src.address}`);
    if (!iface) return this.#bad('too-many');
    const c = src.clock;
    if (c) {
      this.#addNs(c.realHi, c.realLo, (m.tstampHi - c.monoHi) * TWO32 + (m.tstampLo - c.monoLo));
    } else {
      this.#receiveTime();
      this.#fallback++;
    }
    this.#writer.packet(iface.id, this.#tsHi, this.#tsLo, data, off, len, m.origLen, m.flags & Flag.toPod ? Direction.inbound : Direction.outbound);
    this.#rebuilt++;
    if (m.flags & Flag.trunc) this.#truncated++;
    if (m.flags & Flag.oversize) this.#oversize++;
  }

  #vxlan(buf: Buffer, p: ParsedDatagram, address: string): void {
    const src = this.#dataSource(address);
    if (!src) return;
    src.lastSeen = this.#now;
    this.#pieces++;
    if (this.#overloaded()) {
      this.#writeDropped++;
      return;
    }
    const node = src.node ? ` (node ${src.node})` : '';
    const iface =
      src.ifaces.get(p.vni) ?? this.#describe(src, p.vni, `${src.address}/vni${p.vni}`, `VXLAN VNI ${p.vni} from ${src.address}${node}`);
    if (!iface) return this.#bad('too-many');
    this.#receiveTime();
    this.#writer.packet(iface.id, this.#tsHi, this.#tsLo, buf, p.innerOff, p.innerLen, p.innerLen);
    this.#rebuilt++;
  }

  #receiveTime(): void {
    this.#addNs(this.#baseHi, this.#baseLo, Math.round((performance.now() - this.#baseMs) * 1e6));
  }

  /** (hi, lo) + delta ns, exact while |delta| < 2^53, into #tsHi/#tsLo. */
  #addNs(hi: number, lo: number, delta: number): void {
    const l = lo + delta;
    const carry = Math.floor(l / TWO32);
    this.#tsHi = hi + carry;
    this.#tsLo = l - carry * TWO32;
  }

  /** End of input: missing sequence numbers become lost, pending frames incomplete. */
  finish(): void {
    for (const src of this.#sources.values()) for (const st of src.streams.values()) st.seq.flush();
    this.#reasm.dropAll();
  }

  stats(): CollectorStats {
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
    let malformed = 0;
    for (const r of MALFORMED_REASONS) malformed += this.#malformed[r];
    return {
      received: this.#received,
      receivedBytes: this.#receivedBytes,
      pieces: this.#pieces,
      announcements: this.#announcements,
      rebuilt: this.#rebuilt,
      lost,
      malformed,
      malformedByReason: { ...this.#malformed },
      incomplete: this.#reasm.incomplete,
      evicted: this.#reasm.evicted,
      duplicates: this.#duplicates,
      overlaps: this.#overlaps,
      late,
      restarts,
      timestampFallback: this.#fallback,
      truncated: this.#truncated,
      oversize: this.#oversize,
      writeDropped: this.#writeDropped,
      bytesWritten: this.#writer.bytes,
      interfaces: this.#writer.interfaceCount,
      sources: this.#sources.size,
      streams: this.#streamCount,
      pendingFrames: this.#reasm.pendingFrames,
      pendingBytes: this.#reasm.pendingBytes,
    };
  }
}

function announcedDescription(a: Announcement, ifname: string, ifindex: number, address: string): string {
  const policy = a.policy ? `, policy ${a.policy.namespace}/${a.policy.name}` : '';
  return `node ${a.node}, interface ${ifname} (ifindex ${ifindex}), ${a.sender} at ${address}${policy}`;
}
