/**
 * Live pcapng streams: each client gets its own section (its own interface
 * ids, each interface's IDB right before its first packet, so interfaces
 * announced mid-stream work) filtered by namespace, pod, policy and
 * direction. A reader that does not keep up never slows ingest down: once
 * its unsent bytes pass its limit, packets are dropped for that reader only,
 * counted, and the next packet it gets carries a comment saying how many it
 * missed (Wireshark shows it as the packet's comment). Frames lost in transit
 * (sequence gaps) are told the same way to the readers whose filter they
 * match.
 */
import type { Writable } from 'node:stream';
import { podtapVersion } from '../util/version.ts';
import { PendingNotes } from './annotations.ts';
import { Direction, PcapngWriter } from './pcapng.ts';
import { describeLoss, type Iface, type PacketOutput, type TransitLoss } from './router.ts';

/**
 * /stream?direction=, from the pod's side in tcpdump's words (as `kubectl
 * podtap capture --direction`): in = to the pod (the epb flag "inbound",
 * a policy's Ingress), out = from it ("outbound", Egress), both.
 */
export const STREAM_DIRECTIONS = { both: undefined, in: Direction.inbound, out: Direction.outbound } as const;
export type StreamDirection = keyof typeof STREAM_DIRECTIONS;
/** podtap 0.1's words, which meant the tc hook of the host-side veth (ingress = sent by the pod): refused with what to write. */
export const REMOVED_STREAM_DIRECTIONS: Readonly<Record<string, { meant: string; write: StreamDirection }>> = {
  ingress: { meant: 'sent by the pod', write: 'out' },
  egress: { meant: 'sent to the pod', write: 'in' },
};

export interface StreamFilter {
  /** the pod's namespace (the policy's for interfaces without a pod) */
  namespace?: string | undefined;
  pod?: string | undefined;
  policy?: string | undefined;
  /** in: sent to the pod; out: sent by it (STREAM_DIRECTIONS) */
  direction?: StreamDirection | undefined;
}

export interface LiveOptions {
  /** unsent bytes per client beyond which its packets are dropped (default 8 MiB) */
  clientBufferBytes?: number;
  /** most clients at once (default 32) */
  maxClients?: number;
  section?: { userappl: string; os?: string; hardware?: string };
}

export interface LiveStats {
  clients: number;
  /** packets sent to clients, all clients */
  packets: number;
  /** packets dropped for readers that did not keep up, all clients */
  dropped: number;
  /** the most bytes any client had waiting (bounded by its buffer plus one batch) */
  maxBacklog: number;
}

export function matchesFilter(f: StreamFilter, iface: Iface): boolean {
  if (f.namespace !== undefined && (iface.pod?.namespace ?? iface.policy?.namespace) !== f.namespace) return false;
  if (f.pod !== undefined && iface.pod?.name !== f.pod) return false;
  if (f.policy !== undefined && iface.policy?.name !== f.policy) return false;
  return true;
}

/**
 * Whether frames lost in transit concern a stream with filter `f`: those of
 * one interface when known, else of the capture's policy (then a pod filter
 * cannot tell, and is not told).
 */
export function lossMatches(f: StreamFilter, l: TransitLoss): boolean {
  if (l.iface) return matchesFilter(f, l.iface);
  if (f.pod !== undefined) return false;
  if (f.namespace !== undefined && l.policy?.namespace !== f.namespace) return false;
  if (f.policy !== undefined && l.policy?.name !== f.policy) return false;
  return true;
}

export class LiveClient {
  readonly filter: StreamFilter;
  readonly writer: PcapngWriter;
  readonly #out: Writable;
  readonly #limit: number;
  /** the epb direction wanted, or undefined for both */
  readonly want: number | undefined;
  readonly #match = new Map<number, boolean>();
  /** dropped since the last packet sent (reported in that packet's comment) */
  #pendingDrops = 0;
  /** frames lost in transit, told in the next packet's comment */
  readonly notes = new PendingNotes();
  dropped = 0;
  packets = 0;
  /** the most bytes ever waiting for this client */
  maxBacklog = 0;

  constructor(out: Writable, filter: StreamFilter, limit: number, section: LiveOptions['section']) {
    this.#out = out;
    this.filter = filter;
    this.#limit = limit;
    this.want = STREAM_DIRECTIONS[filter.direction ?? 'both'];
    // a small flush is copied out of the batch buffer: a slow reader's queue
    // must hold the bytes it counts, not 128 KiB buffers around them
    this.writer = new PcapngWriter((chunk) => void out.write(chunk.length < 1 << 16 ? Buffer.from(chunk) : chunk), { batchSize: 1 << 17 });
    this.writer.sectionHeader(section ?? { userappl: `podtap ${podtapVersion()}` });
    this.writer.flush(); // readers (wireshark -k -i -) start from the section header
  }

  matches(iface: Iface): boolean {
    let m = this.#match.get(iface.uid);
    if (m === undefined) {
      m = matchesFilter(this.filter, iface);
      this.#match.set(iface.uid, m);
    }
    return m;
  }

  /** Bytes given to this client and not yet sent. */
  get backlog(): number {
    return this.#out.writableLength + this.writer.buffered;
  }

  /** Returns false when the packet was dropped for this client. */
  send(iface: Iface, tsHi: number, tsLo: number, data: Buffer, off: number, len: number, origLen: number, direction: number | undefined): boolean {
    if (this.backlog + len > this.#limit) {
      this.#pendingDrops++;
      this.dropped++;
      return false;
    }
    const w = this.writer;
    let id = w.interfaceId(iface.uid);
    if (id === undefined) id = w.addInterface({ name: iface.name, description: iface.description, snaplen: iface.snaplen }, iface.uid);
    if (this.#pendingDrops > 0) {
      this.notes.add(`${this.#pendingDrops} packet(s) matching this stream were dropped before this one: the reader did not keep up (${this.dropped} in all)`);
      this.#pendingDrops = 0;
    }
    w.packet(id, tsHi, tsLo, data, off, len, origLen, direction, this.notes.take());
    this.packets++;
    const b = this.backlog;
    if (b > this.maxBacklog) this.maxBacklog = b;
    return true;
  }
}

export class LiveHub implements PacketOutput {
  readonly #clients = new Set<LiveClient>();
  readonly #limit: number;
  readonly #max: number;
  readonly #section: LiveOptions['section'];
  #packets = 0;
  #dropped = 0;
  #maxBacklog = 0;

  constructor(opts: LiveOptions = {}) {
    this.#limit = opts.clientBufferBytes ?? 8 << 20;
    this.#max = opts.maxClients ?? 32;
    this.#section = opts.section;
  }

  get full(): boolean {
    return this.#clients.size >= this.#max;
  }

  /** Starts a stream into `out` (the section header is written at once). */
  add(out: Writable, filter: StreamFilter): LiveClient {
    const c = new LiveClient(out, filter, this.#limit, this.#section);
    this.#clients.add(c);
    return c;
  }

  remove(c: LiveClient): void {
    this.#maxBacklog = Math.max(this.#maxBacklog, c.maxBacklog);
    this.#clients.delete(c);
  }

  packet(iface: Iface, tsHi: number, tsLo: number, data: Buffer, off: number, len: number, origLen: number, direction: number | undefined): void {
    for (const c of this.#clients) {
      if (!c.matches(iface)) continue;
      if (c.want !== undefined && direction !== c.want) continue;
      if (c.send(iface, tsHi, tsLo, data, off, len, origLen, direction)) this.#packets++;
      else this.#dropped++;
    }
  }

  lost(l: TransitLoss): void {
    for (const c of this.#clients) if (lossMatches(c.filter, l)) c.notes.add(describeLoss(l));
  }

  /** Sends what each client has buffered (call a few times a second: live latency). */
  flush(): void {
    for (const c of this.#clients) c.writer.flush();
  }

  stats(): LiveStats {
    let maxBacklog = this.#maxBacklog;
    for (const c of this.#clients) maxBacklog = Math.max(maxBacklog, c.maxBacklog);
    return { clients: this.#clients.size, packets: this.#packets, dropped: this.#dropped, maxBacklog };
  }
}
