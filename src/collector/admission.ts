/**
 * Admission: which authenticated announcements the collector acts on. It
 * sits between the ingest (which checked the envelope, the MAC and the time)
 * and the router, on the writer's thread, so its state is one for all ingest
 * workers:
 *
 * - replays: the nonce of every admitted announcement is kept for as long as
 *   its time is inside the window; the same nonce again is refused;
 * - assignments: with an allow-set, only announcements of a (namespace,
 *   policy, node) the controller assigned to this collector are admitted
 *   (fed from the SniffNodeAssignments; see docs/security.md);
 * - grants: an admitted announcement grants its stream (source address,
 *   instance) to every ingest for a while; a change of the allow-set revokes
 *   the grants it no longer covers.
 *
 * Frames, VXLAN frames and sequence gaps pass straight through to the router.
 */
import type { MalformedReason } from '../wire/format.ts';
import type { Announcement, AnnouncementAuth } from '../wire/announce.ts';
import { emptyMalformed, type FrameRecord, type GapRecord, type IngestSink } from './ingest.ts';

/** What the controller assigned: one policy's capture on one node. */
export interface AssignedStream {
  namespace: string;
  policy: string;
  node: string;
}

/** The assignments a collector accepts streams for. */
export interface AllowSet {
  has(s: AssignedStream): boolean;
  /** `onChange` is called after every change; returns the unsubscribe function */
  subscribe(onChange: () => void): () => void;
}

const streamKey = (s: AssignedStream): string => `${s.namespace}/${s.policy}/${s.node}`;

/** An allow-set fed by its owner (a watch of SniffNodeAssignments, a test, a file). */
export class AssignmentSet implements AllowSet {
  readonly #keys = new Set<string>();
  readonly #listeners = new Set<() => void>();

  constructor(entries: Iterable<AssignedStream> = []) {
    for (const e of entries) this.#keys.add(streamKey(e));
  }

  get size(): number {
    return this.#keys.size;
  }

  has(s: AssignedStream): boolean {
    return this.#keys.has(streamKey(s));
  }

  /** Replaces every entry (a relist). */
  replace(entries: Iterable<AssignedStream>): void {
    this.#keys.clear();
    for (const e of entries) this.#keys.add(streamKey(e));
    this.#changed();
  }

  add(s: AssignedStream): void {
    this.#keys.add(streamKey(s));
    this.#changed();
  }

  delete(s: AssignedStream): void {
    if (this.#keys.delete(streamKey(s))) this.#changed();
  }

  subscribe(onChange: () => void): () => void {
    this.#listeners.add(onChange);
    return () => this.#listeners.delete(onChange);
  }

  #changed(): void {
    for (const l of this.#listeners) l();
  }
}

export interface AdmissionLimits {
  /** nonces kept per node (its announcements within the window) */
  noncesPerNode: number;
  /** nodes whose nonces are kept */
  nodes: number;
  /** grants (source address, instance) at once */
  grants: number;
}

export const DEFAULT_ADMISSION_LIMITS: AdmissionLimits = { noncesPerNode: 8192, nodes: 16384, grants: 65536 };

export interface AdmissionOptions {
  /** the ingest authenticates (has the install secret): refuse replays, grant streams */
  authenticated: boolean;
  /** how far an announcement's time may be from ours: nonces are kept twice as long */
  maxSkewMs: number;
  /** a granted stream lasts this long after its last admitted announcement (default 60 s; senders announce every 5 s) */
  grantTtlMs?: number;
  /** only these assignments are admitted; absent = any policy */
  allow?: AllowSet | undefined;
  limits?: Partial<AdmissionLimits> | undefined;
  /** wall clock, ms (tests) */
  clock?: () => number;
}

export const DEFAULT_GRANT_TTL_MS = 60_000;

export interface AdmissionStats {
  /** announcements admitted (passed on to the router) */
  admitted: number;
  /** refused here, by reason (replayed, not-assigned, too-many) */
  refusedByReason: Record<MalformedReason, number>;
  grants: number;
  /** nonces remembered */
  nonces: number;
}

interface Grant {
  address: string;
  instance: number;
  stream: AssignedStream | null;
  until: number;
}

export class Admission implements IngestSink {
  readonly #next: IngestSink;
  readonly #authenticated: boolean;
  readonly #windowMs: number;
  readonly #ttlMs: number;
  readonly #allow: AllowSet | undefined;
  readonly #limits: AdmissionLimits;
  readonly #clock: () => number;
  /** per node (key id): nonce → forget after (clock ms) */
  readonly #nonces = new Map<string, Map<string, number>>();
  #nonceCount = 0;
  readonly #grants = new Map<string, Grant>();
  readonly #refused = emptyMalformed();
  #admitted = 0;
  #lastSweep = 0;
  readonly #unsubscribe: () => void;

  /** told to grant (admitted) or revoke (no longer assigned) a stream in every ingest */
  onGrant: (address: string, instance: number, ttlMs: number) => void = () => undefined;
  onRevoke: (address: string, instance: number) => void = () => undefined;

  constructor(next: IngestSink, opts: AdmissionOptions) {
    this.#next = next;
    this.#authenticated = opts.authenticated;
    this.#windowMs = 2 * opts.maxSkewMs;
    this.#ttlMs = opts.grantTtlMs ?? DEFAULT_GRANT_TTL_MS;
    this.#allow = opts.allow;
    this.#limits = { ...DEFAULT_ADMISSION_LIMITS, ...opts.limits };
    this.#clock = opts.clock ?? Date.now;
    this.#unsubscribe = opts.allow?.subscribe(() => this.#reviewGrants()) ?? (() => undefined);
  }

  frame(f: FrameRecord): void {
    this.#next.frame(f);
  }

  vxlan(address: string, vni: number, data: Buffer, off: number, len: number, recvMs: number): void {
    this.#next.vxlan(address, vni, data, off, len, recvMs);
  }

  gap(g: GapRecord): void {
    this.#next.gap(g);
  }

  announce(address: string, a: Announcement, auth: AnnouncementAuth | undefined): void {
    const reason = this.#admit(address, a, auth);
    if (reason) {
      this.#refused[reason]++;
      return;
    }
    this.#admitted++;
    this.#next.announce(address, a, auth);
  }

  #admit(address: string, a: Announcement, auth: AnnouncementAuth | undefined): MalformedReason | undefined {
    const now = this.#clock();
    if (now - this.#lastSweep >= 1000 || now < this.#lastSweep) this.#sweep(now);
    const stream = a.policy ? { namespace: a.policy.namespace, policy: a.policy.name, node: a.node } : null;
    if (this.#allow && !(stream && this.#allow.has(stream))) return 'not-assigned';
    if (!this.#authenticated) return undefined; // nothing to grant: such an ingest takes data from anyone
    if (!auth) return 'unauthenticated';
    // replay: the nonce is remembered until the message's time leaves the window
    let seen = this.#nonces.get(auth.keyId);
    if (seen?.has(auth.nonce)) return 'replayed';
    if (!seen) {
      if (this.#nonces.size >= this.#limits.nodes) return 'too-many';
      seen = new Map();
      this.#nonces.set(auth.keyId, seen);
    }
    if (seen.size >= this.#limits.noncesPerNode) return 'too-many';
    const key = `${address}|${a.instance}`;
    if (!this.#grants.has(key) && this.#grants.size >= this.#limits.grants) return 'too-many';
    seen.set(auth.nonce, Math.max(now, auth.timeMs) + this.#windowMs);
    this.#nonceCount++;
    this.#grants.set(key, { address, instance: a.instance, stream, until: now + this.#ttlMs });
    this.onGrant(address, a.instance, this.#ttlMs);
    return undefined;
  }

  /** Forgets nonces whose messages can no longer pass the time window, and expired grants. */
  #sweep(now: number): void {
    this.#lastSweep = now;
    for (const [node, seen] of this.#nonces) {
      for (const [nonce, until] of seen) {
        if (until > now) continue;
        seen.delete(nonce);
        this.#nonceCount--;
      }
      if (seen.size === 0) this.#nonces.delete(node);
    }
    for (const [key, g] of this.#grants) if (g.until <= now) this.#grants.delete(key);
  }

  /** The allow-set changed: revoke the grants it no longer covers. */
  #reviewGrants(): void {
    for (const [key, g] of this.#grants) {
      if (g.stream && this.#allow?.has(g.stream)) continue;
      this.#grants.delete(key);
      this.onRevoke(g.address, g.instance);
    }
  }

  /** Time passes (call about once a second). */
  tick(): void {
    this.#sweep(this.#clock());
  }

  close(): void {
    this.#unsubscribe();
  }

  stats(): AdmissionStats {
    return { admitted: this.#admitted, refusedByReason: { ...this.#refused }, grants: this.#grants.size, nonces: this.#nonceCount };
  }
}
