/**
 * What the collector knows about its senders, from their announcements: each
 * tapped interface's name (namespace/pod), its policy, and each node's clock
 * pair. The router turns the frames an Ingest rebuilt into packets on named
 * interfaces with wall-clock timestamps and hands them to the outputs (the
 * capture files and the live streams). It runs on the writer's thread; the
 * ingest workers only rebuild.
 */
import { FRAME_MAX, Flag, type MalformedReason } from '../wire/format.ts';
import type { Announcement } from '../wire/announce.ts';
import type { FrameRecord, GapRecord, IngestSink } from './ingest.ts';
import { Direction } from './pcapng.ts';

const TWO32 = 0x1_0000_0000;

export interface Ref {
  namespace: string;
  name: string;
}

/** One interface as packets are written on it. A changed name or description is a new Iface (a new IDB). */
export interface Iface {
  /** unique per collector process: outputs map it to their own interface ids */
  readonly uid: number;
  readonly name: string;
  readonly description: string;
  /** the interface block's snap length: the policy's, the data plane's largest frame when it keeps all, 0 when unknown */
  readonly snaplen: number;
  readonly pod: Ref | null;
  readonly policy: Ref | null;
  /** the capture this interface's packets are filed under: `<namespace>_<policy>`, or `unassigned` */
  readonly capture: string;
}

export const UNASSIGNED = 'unassigned';

/** The capture key of a policy: `<namespace>_<policy>`. Kubernetes names hold no `_`, so keys never collide. */
export function captureKey(policy: Ref | null): string {
  return policy ? `${policy.namespace}_${policy.name}` : UNASSIGNED;
}

/** Frames of a sender's stream that never arrived, filed under the capture its data plane feeds. */
export interface TransitLoss {
  count: number;
  /** the capture key (`<namespace>_<policy>` or `unassigned`) and its policy */
  capture: string;
  policy: Ref | null;
  /** the interface they were taken on, when the data plane taps only that one; else undefined */
  iface: Iface | undefined;
  /** the sender: its node (when announced) and address, the data plane's instance and the CPU */
  node: string | undefined;
  address: string;
  instance: number;
  cpu: number;
  /** the first and last sequence numbers declared lost */
  first: number;
  last: number;
}

/** One line for a packet comment: what was lost, where. */
export function describeLoss(l: TransitLoss): string {
  const numbers = l.count === 1 ? `number ${l.first}` : `numbers ${l.first}..${l.last}`;
  return `${l.count} frame(s) never arrived from node ${l.node ?? l.address} (data plane ${l.instance}, CPU ${l.cpu}, ${numbers})`;
}

/** Receives every packet the router produces. */
export interface PacketOutput {
  /**
   * ts: ns since the epoch (hi/lo halves); direction: Direction.inbound (to
   * the pod) / outbound (sent by the pod), undefined when unknown (VXLAN).
   */
  packet(iface: Iface, tsHi: number, tsLo: number, data: Buffer, off: number, len: number, origLen: number, direction: number | undefined): void;
  /** Frames lost in transit (sequence gaps): their next packet says so. */
  lost?(l: TransitLoss): void;
}

export interface RouterLimits {
  sources: number;
  interfacesPerSource: number;
  /** interfaces filed under one policy, all senders together */
  interfacesPerPolicy: number;
  /** interfaces known at once, all senders together (each costs a few hundred bytes) */
  interfaces: number;
  /** a source silent this long is forgotten (its interfaces and clock) */
  sourceIdleMs: number;
  /** policies whose rebuilt packets are counted for the tunnel check (rebuiltByPolicy): a bound against senders announcing without end */
  rebuiltPolicies: number;
}

export const DEFAULT_ROUTER_LIMITS: RouterLimits = {
  sources: 4096,
  interfacesPerSource: 16384,
  interfacesPerPolicy: 65536,
  interfaces: 262_144,
  sourceIdleMs: 600_000,
  rebuiltPolicies: 4096,
};

export interface RouterStats {
  /** frames handed to the outputs */
  routed: number;
  /** frames stamped with the collector's receive time (no clock announced yet) */
  timestampFallback: number;
  /** frames with fewer bytes than on the wire (snap length or oversize) */
  truncated: number;
  /** of which cut because they exceeded the data plane's 64 KiB cache */
  oversize: number;
  /** interface descriptions made so far */
  interfaces: number;
  /** frames refused for the state limits (reason too-many) */
  refused: number;
}

interface Clock {
  monoHi: number;
  monoLo: number;
  realHi: number;
  realLo: number;
}

interface Source {
  address: string;
  node: string | undefined;
  clock: Clock | undefined;
  lastSeen: number;
  /** Geneve: instance * 2^32 + ifindex; VXLAN: VNI */
  ifaces: Map<number, Iface>;
  /** policy of each announced data-plane instance */
  policies: Map<number, Ref | null>;
  /** the only interface each instance taps (null: several, or none), found when first asked, forgotten when interfaces change */
  sole: Map<number, Iface | null>;
}

function splitNs(v: bigint): { hi: number; lo: number } {
  return { hi: Number((v >> 32n) & 0xffffffffn), lo: Number(v & 0xffffffffn) };
}

function announcedDescription(a: Announcement, ifname: string, ifindex: number, address: string): string {
  const policy = a.policy ? `, policy ${a.policy.namespace}/${a.policy.name}` : '';
  return `node ${a.node}, interface ${ifname} (ifindex ${ifindex}), ${a.sender} at ${address}${policy}`;
}

export class Router implements IngestSink {
  readonly #outputs: PacketOutput[];
  readonly #limits: RouterLimits;
  readonly #sources = new Map<string, Source>();
  readonly #onAnnounce: ((address: string, a: Announcement) => void) | undefined;
  #nextUid = 1;
  /** interfaces known, in all and by capture key */
  #ifaceCount = 0;
  readonly #perCapture = new Map<string, number>();
  /** packets rebuilt per capture key since this process started, for the tunnel check (rebuiltByPolicy) */
  readonly #rebuilt = new Map<string, { policy: Ref; packets: number }>();
  #rebuiltTruncated = false;
  #now = performance.now();
  #lastExpiry = this.#now;
  // result of #addNs
  #tsHi = 0;
  #tsLo = 0;
  // receive-time stamps: ns since the epoch at #baseMs
  #baseMs = 0;
  #baseHi = 0;
  #baseLo = 0;
  #routed = 0;
  #fallback = 0;
  #truncated = 0;
  #oversize = 0;
  #refused = 0;

  constructor(outputs: PacketOutput[], opts: { limits?: Partial<RouterLimits>; onAnnounce?: (address: string, a: Announcement) => void } = {}) {
    this.#outputs = outputs;
    this.#limits = { ...DEFAULT_ROUTER_LIMITS, ...opts.limits };
    this.#onAnnounce = opts.onAnnounce;
    this.#rebase(performance.timeOrigin + performance.now());
  }

  /** Called with the reason whenever a frame is refused here, so the caller can count it with the ingest's reasons. */
  onRefuse: (reason: MalformedReason) => void = () => undefined;

  tick(nowMs = performance.now()): void {
    this.#now = nowMs;
    if (nowMs - this.#lastExpiry < 5000 && nowMs >= this.#lastExpiry) return;
    this.#lastExpiry = nowMs;
    for (const [address, src] of this.#sources) {
      if (nowMs - src.lastSeen < this.#limits.sourceIdleMs) continue;
      for (const i of src.ifaces.values()) this.#count(i.capture, -1);
      this.#sources.delete(address);
    }
  }

  #count(capture: string, d: number): void {
    this.#ifaceCount += d;
    const n = (this.#perCapture.get(capture) ?? 0) + d;
    if (n > 0) this.#perCapture.set(capture, n);
    else this.#perCapture.delete(capture);
  }

  #source(address: string): Source | undefined {
    let src = this.#sources.get(address);
    if (!src) {
      if (this.#sources.size >= this.#limits.sources) return undefined;
      src = { address, node: undefined, clock: undefined, lastSeen: this.#now, ifaces: new Map(), policies: new Map(), sole: new Map() };
      this.#sources.set(address, src);
    }
    return src;
  }

  announce(address: string, a: Announcement): void {
    const src = this.#source(address);
    if (!src) {
      this.#refuse();
      return;
    }
    src.lastSeen = this.#now;
    src.node = a.node;
    const mono = splitNs(BigInt(a.clock.monoNs));
    const real = splitNs(BigInt(a.clock.realtimeNs));
    src.clock = { monoHi: mono.hi, monoLo: mono.lo, realHi: real.hi, realLo: real.lo };
    const policy = a.policy ? { namespace: a.policy.namespace, name: a.policy.name } : null;
    src.policies.set(a.instance, policy);
    // the data plane cuts every frame at FRAME_MAX: that is its snap length when the policy keeps all
    const snaplen = a.tunnel === 'Geneve' ? a.snapLength || FRAME_MAX : 0;
    for (const i of a.interfaces) {
      const key = a.instance * TWO32 + i.ifindex;
      const name = i.pod ? `${i.pod.namespace}/${i.pod.name}` : i.name;
      this.#describe(src, key, name, announcedDescription(a, i.name, i.ifindex, address), snaplen, i.pod, policy);
    }
    this.#onAnnounce?.(address, a);
  }

  /** (Re)describe an interface; a changed name, description, snap length or policy is a new Iface. */
  #describe(src: Source, key: number, name: string, description: string, snaplen: number, pod: Ref | null, policy: Ref | null): Iface | undefined {
    const old = src.ifaces.get(key);
    if (old && old.name === name && old.description === description && old.snaplen === snaplen && captureKey(old.policy) === captureKey(policy)) return old;
    const capture = captureKey(policy);
    const l = this.#limits;
    if (!old && (src.ifaces.size >= l.interfacesPerSource || this.#ifaceCount >= l.interfaces)) return undefined;
    if (old?.capture !== capture && (this.#perCapture.get(capture) ?? 0) >= l.interfacesPerPolicy) return undefined;
    const iface: Iface = { uid: this.#nextUid++, name, description, snaplen, pod: pod ? { ...pod } : null, policy, capture };
    if (old) this.#count(old.capture, -1);
    this.#count(capture, 1);
    src.ifaces.set(key, iface);
    src.sole.delete(Math.floor(key / TWO32));
    return iface;
  }

  #refuse(): void {
    this.#refused++;
    this.onRefuse('too-many');
  }

  frame(f: FrameRecord): void {
    const { address, instance, ifindex, flags, tsHi, tsLo } = f;
    const src = this.#source(address);
    if (!src) return this.#refuse();
    src.lastSeen = this.#now;
    const key = instance * TWO32 + ifindex;
    const iface =
      src.ifaces.get(key) ??
      this.#describe(src, key, `${address}/if${ifindex}`, `not announced: ifindex ${ifindex}, instance ${instance}, from ${address}`, 0, null, null);
    if (!iface) return this.#refuse();
    const c = src.clock;
    if (c) {
      this.#addNs(c.realHi, c.realLo, (tsHi - c.monoHi) * TWO32 + (tsLo - c.monoLo));
    } else {
      this.#wallNs(f.recvMs);
      this.#fallback++;
    }
    if (flags & Flag.trunc) this.#truncated++;
    if (flags & Flag.oversize) this.#oversize++;
    this.#routed++;
    if (iface.policy) this.#countRebuilt(iface);
    const dir = flags & Flag.toPod ? Direction.inbound : Direction.outbound;
    for (const o of this.#outputs) o.packet(iface, this.#tsHi, this.#tsLo, f.data, f.off, f.len, f.origLen, dir);
  }

  gap(g: GapRecord): void {
    const src = this.#sources.get(g.address);
    const policy = src?.policies.get(g.instance) ?? null;
    const loss: TransitLoss = {
      count: g.count, capture: captureKey(policy), policy, iface: src ? this.#sole(src, g.instance) : undefined, node: src?.node,
      address: g.address, instance: g.instance, cpu: g.cpu, first: g.first, last: g.last,
    };
    for (const o of this.#outputs) o.lost?.(loss);
  }

  /** The interface `instance` of `src` taps, if it taps only one. */
  #sole(src: Source, instance: number): Iface | undefined {
    let one = src.sole.get(instance);
    if (one === undefined) {
      one = null;
      let n = 0;
      for (const [key, iface] of src.ifaces) {
        if (Math.floor(key / TWO32) !== instance) continue;
        one = iface;
        if (++n > 1) {
          one = null;
          break;
        }
      }
      src.sole.set(instance, one);
    }
    return one ?? undefined;
  }

  vxlan(address: string, vni: number, data: Buffer, off: number, len: number, recvMs: number): void {
    const src = this.#source(address);
    if (!src) return this.#refuse();
    src.lastSeen = this.#now;
    let iface = src.ifaces.get(vni);
    if (!iface) {
      // VXLAN carries no instance: a source announcing a single policy files its frames there
      const policies = new Set([...src.policies.values()].map(captureKey));
      const only = policies.size === 1 ? [...src.policies.values()][0]! : null;
      const node = src.node ? ` (node ${src.node})` : '';
      iface = this.#describe(src, vni, `${address}/vni${vni}`, `VXLAN VNI ${vni} from ${address}${node}`, 0, null, only);
      if (!iface) return this.#refuse();
    }
    this.#wallNs(recvMs);
    this.#routed++;
    if (iface.policy) this.#countRebuilt(iface);
    for (const o of this.#outputs) o.packet(iface, this.#tsHi, this.#tsLo, data, off, len, len, undefined);
  }

  #countRebuilt(iface: Iface): void {
    const c = this.#rebuilt.get(iface.capture);
    if (c) c.packets++;
    // bounded whatever senders announce: a policy past the bound is not counted (its check says so)
    else if (this.#rebuilt.size < this.#limits.rebuiltPolicies) this.#rebuilt.set(iface.capture, { policy: iface.policy!, packets: 1 });
    else this.#rebuiltTruncated = true;
  }

  /** Whether policies went uncounted (rebuiltPolicies reached): their absence from rebuiltByPolicy says nothing. */
  rebuiltTruncated(): boolean {
    return this.#rebuiltTruncated;
  }

  /** Packets rebuilt per policy since this process started: what the agents' mirrored counts are compared with. */
  rebuiltByPolicy(): { namespace: string; name: string; packets: number }[] {
    return [...this.#rebuilt.values()].map((c) => ({ namespace: c.policy.namespace, name: c.policy.name, packets: c.packets }));
  }

  /** Wall-clock ms (fractional, since the epoch) → ns into #tsHi/#tsLo, relative to an exact base. */
  #wallNs(ms: number): void {
    const delta = ms - this.#baseMs;
    if (delta > 8.64e10 || delta < -8.64e10) this.#rebase(ms); // a day away: keep the ns delta far below 2^53
    this.#addNs(this.#baseHi, this.#baseLo, Math.round((ms - this.#baseMs) * 1e6));
  }

  #rebase(ms: number): void {
    const whole = Math.floor(ms);
    const ns = BigInt(whole) * 1_000_000n;
    this.#baseMs = whole;
    this.#baseHi = Number(ns >> 32n);
    this.#baseLo = Number(ns & 0xffffffffn);
  }

  /** (hi, lo) + delta ns, exact while |delta| < 2^53, into #tsHi/#tsLo. */
  #addNs(hi: number, lo: number, delta: number): void {
    const l = lo + delta;
    const carry = Math.floor(l / TWO32);
    this.#tsHi = hi + carry;
    this.#tsLo = l - carry * TWO32;
  }

  /** The interfaces currently known (for listings). */
  interfaces(): Iface[] {
    return [...this.#sources.values()].flatMap((s) => [...s.ifaces.values()]);
  }

  stats(): RouterStats {
    return {
      routed: this.#routed,
      timestampFallback: this.#fallback,
      truncated: this.#truncated,
      oversize: this.#oversize,
      interfaces: this.#nextUid - 1,
      refused: this.#refused,
    };
  }
}
