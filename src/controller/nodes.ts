/**
 * The node side of the controller. A policy's reconcile decides which
 * assignments (policy, node) should exist and with which spec, and hands each
 * change here; this writes them into the nodes' SniffNodeAssignments, keyed
 * by node on a queue of its own, so that the changes of every policy to one
 * node go out in one write (docs/controller.md, "Scale and memory").
 *
 * Level-triggered like the rest: a node's sync reads its objects (the cache,
 * or this writer's own last write while the cache has not caught up), applies
 * the changes still pending for it, folds the result (foldNodeAssignments)
 * and creates, patches or deletes objects until they say exactly that. A
 * change is dropped once a write carrying it succeeded; a failed write keeps
 * it, and the node is retried with the queue's backoff. Only the leading
 * controller writes specs (agents write the status subresource), so a spec
 * is written with a merge patch and no resourceVersion: an agent's report in
 * between is no conflict.
 *
 * While policies are still being reconciled (a start, a mass change: the
 * policy queue has policies waiting, or a change came in the last QUIET_MS), a node
 * waits for them, up to HOLD_MS after its first pending change: at 1,000
 * nodes and 100 policies, writing each node when its first policy is planned
 * would write most nodes several times (measured: 1,638 writes for 1,000
 * nodes with a hold of 1 s on the policy queue alone, 1,000 with this), and
 * the early writes slow the planning of the rest down.
 */
import {
  API_VERSION,
  NODE_ASSIGNMENT_KIND,
  assignmentsOfNode,
  foldNodeAssignments,
  nodeAssignmentLabels,
  nodeAssignmentName,
  rfc3339,
  type SniffAssignmentSpec,
  type SniffNodeAssignment,
} from '../api/index.ts';
import { isNotFound, type SyncResult } from '../k8s/index.ts';
import { jsonEqual } from '../util/json.ts';
import type { Logger } from '../util/log.ts';
import type { Enqueuer } from './informers.ts';

/**
 * How long a node's write waits at most for policies still being
 * reconciled. Why 2 s: planning 100 policies takes well under that on 2
 * cores when no node write competes with their status writes; in steady
 * state a change waits QUIET_MS only.
 */
export const HOLD_MS = 2000;
/**
 * A node's write waits until no change has come in for this long. Why 20 ms:
 * policies applied together reach the controller through its watch a few ms
 * apart (while more wait in the policy queue the node waits anyway), and a
 * single apply should not wait much: 0.5 s is the goal from apply to the
 * first packet.
 */
export const QUIET_MS = 20;
/** How often a held node looks again whether the policies are done. */
const HOLD_POLL_MS = 10;

/** The API calls of a node's sync. */
export interface NodeObjectApi {
  create(obj: SniffNodeAssignment): Promise<SniffNodeAssignment>;
  /** A JSON merge patch of labels and the whole spec (its lists are replaced). */
  patch(namespace: string, name: string, patch: { metadata: { labels: Record<string, string> }; spec: SniffNodeAssignment['spec'] }): Promise<SniffNodeAssignment>;
  delete(namespace: string, name: string, uid: string | undefined): Promise<void>;
}

export interface NodeWriterOptions {
  /** A node's objects in the informer's cache. */
  objectsOfNode(nodeName: string): readonly SniffNodeAssignment[];
  api: NodeObjectApi;
  /** The install namespace. */
  namespace: string;
  /** The queue of node names this writer's sync is run from. */
  queue: Enqueuer;
  /** Whether policies are being reconciled now (their queue is not empty). */
  policiesBusy?: (() => boolean) | undefined;
  holdMs?: number | undefined;
  quietMs?: number | undefined;
  now?: (() => Date) | undefined;
}

/** A policy's assignment on a node: its spec, or null: none. */
export type AssignmentChange = SniffAssignmentSpec | null;

interface Pending {
  /** When the oldest of these changes was handed in (ms). */
  since: number;
  /** policy `namespace/name` → its change */
  changes: Map<string, AssignmentChange>;
}

const entryKey = (policy: { namespace: string; name: string }): string => `${policy.namespace}/${policy.name}`;

export class NodeWriter {
  private readonly opts: NodeWriterOptions;
  private readonly pending = new Map<string, Pending>();
  /** When the last change came in (ms). */
  private lastSubmit = -Infinity;
  /** Nodes waiting for their hold to end, and the one timer that looks at them. */
  private readonly held = new Set<string>();
  private holdTimer: NodeJS.Timeout | undefined;
  /** node → object name → this writer's last write of it (null: deleted), until the cache shows it. */
  private readonly written = new Map<string, Map<string, SniffNodeAssignment | null>>();

  constructor(opts: NodeWriterOptions) {
    this.opts = opts;
  }

  /** Nodes with changes not yet written. */
  get pendingNodes(): number {
    return this.pending.size;
  }

  /** Whether changes handed in at @p.since should wait for more. */
  private holding(p: Pending): boolean {
    const t = performance.now();
    if (t - p.since >= (this.opts.holdMs ?? HOLD_MS)) return false;
    return t - this.lastSubmit < (this.opts.quietMs ?? QUIET_MS) || (this.opts.policiesBusy?.() ?? false);
  }

  /**
   * Set a node aside until its hold ends. One timer for all held nodes (not
   * a requeue each: at 1,000 nodes that is tens of thousands of syncs a
   * second on the cores the API server needs).
   */
  private hold(nodeName: string): void {
    this.held.add(nodeName);
    if (this.holdTimer) return;
    this.holdTimer = setTimeout(() => {
      this.holdTimer = undefined;
      for (const n of [...this.held]) {
        const p = this.pending.get(n);
        if (p && this.holding(p)) continue;
        this.held.delete(n);
        this.opts.queue.add(n);
      }
      if (this.held.size > 0) this.hold([...this.held][0]!);
    }, HOLD_POLL_MS);
    this.holdTimer.unref?.();
  }

  /** Writes remembered until the cache shows them. */
  get rememberedWrites(): number {
    let n = 0;
    for (const m of this.written.values()) n += m.size;
    return n;
  }

  /** A policy's reconcile: its assignment on @nodeName should be @change. */
  submit(nodeName: string, policy: { namespace: string; name: string }, change: AssignmentChange): void {
    let p = this.pending.get(nodeName);
    if (!p) this.pending.set(nodeName, (p = { since: performance.now(), changes: new Map() }));
    const k = entryKey(policy);
    // A policy planned again from a cache that lags hands in the same change: no news.
    if (!p.changes.has(k) || !jsonEqual(p.changes.get(k), change)) {
      p.changes.set(k, change);
      this.lastSubmit = performance.now();
    }
    this.opts.queue.add(nodeName);
  }

  /** The informer stored @obj: a remembered write it is at least as new as is forgotten. */
  observe(obj: SniffNodeAssignment): void {
    const mine = this.written.get(obj.spec?.nodeName ?? '');
    const w = mine?.get(obj.metadata.name!);
    if (w && (obj.metadata.generation ?? 0) >= (w.metadata.generation ?? 0)) mine!.delete(obj.metadata.name!);
  }

  observeDelete(obj: SniffNodeAssignment): void {
    const mine = this.written.get(obj.spec?.nodeName ?? '');
    if (mine?.get(obj.metadata.name!) === null) mine.delete(obj.metadata.name!);
  }

  /** After a relist the cache is the truth. */
  clearWritten(): void {
    this.written.clear();
  }

  /** A node's objects as they stand: the cache, with this writer's newer writes over it. */
  private current(nodeName: string): Map<string, SniffNodeAssignment> {
    const out = new Map(this.opts.objectsOfNode(nodeName).map((o) => [o.metadata.name!, o]));
    for (const [name, w] of this.written.get(nodeName) ?? []) {
      if (w === null) out.delete(name);
      else if ((out.get(name)?.metadata.generation ?? 0) < (w.metadata.generation ?? 0)) out.set(name, w);
    }
    return out;
  }

  private remember(nodeName: string, name: string, obj: SniffNodeAssignment | null): void {
    let mine = this.written.get(nodeName);
    if (!mine) this.written.set(nodeName, (mine = new Map()));
    mine.set(name, obj);
  }

  /** Make @nodeName's objects hold its assignments with the pending changes applied. */
  async sync(nodeName: string, log: Logger): Promise<SyncResult> {
    const p = this.pending.get(nodeName);
    if (p && this.holding(p)) {
      this.hold(nodeName);
      return { result: 'held' };
    }
    const applied = p ? [...p.changes] : [];
    const now = rfc3339(this.opts.now?.() ?? new Date());
    const { namespace, api } = this.opts;
    const writes = planNodeWrites(nodeName, namespace, this.current(nodeName), applied, now);
    const call = (w: NodeWrite): Promise<SniffNodeAssignment | null> => {
      if (w.op === 'delete') {
        return api.delete(namespace, w.name, w.uid).then(
          () => null,
          (err: unknown) => {
            if (isNotFound(err)) return null; // gone already
            throw err;
          },
        );
      }
      if (w.op === 'create') return api.create(w.object);
      return api.patch(namespace, w.name, { metadata: { labels: w.object.metadata.labels! }, spec: w.object.spec });
    };
    // Objects that take in entries from another of the node's objects are
    // written first: an entry moving from a node's first object to its second
    // (the first grew past its bound) is then never absent from both, for the
    // agent, the collector or this controller (AssignmentView).
    const failures: unknown[] = [];
    for (const phase of [writes.filter((w) => w.movesIn), writes.filter((w) => !w.movesIn)]) {
      const results = await Promise.allSettled(phase.map(call));
      results.forEach((r, i) => {
        const w = phase[i]!;
        if (r.status === 'fulfilled') this.remember(nodeName, w.name, r.value);
        else {
          failures.push(r.reason);
          log.debug({ err: r.reason, object: w.name, op: w.op }, 'node assignment write failed');
        }
      });
      if (failures.length > 0) break;
    }
    if (failures.length > 0) {
      throw new Error(`${failures.length} of ${writes.length} writes of node ${nodeName}'s assignments failed`, { cause: failures[0] });
    }
    if (writes.length > 0) log.debug({ writes: writes.map((w) => `${w.op} ${w.name}`), changes: applied.map(([k, c]) => `${c === null ? '-' : '+'}${k}`) }, 'node assignments written');
    // Written: drop the changes that are still the ones applied (a newer one waits for the next sync).
    if (p) {
      for (const [k, change] of applied) if (p.changes.get(k) === change) p.changes.delete(k);
      if (p.changes.size === 0) this.pending.delete(nodeName);
    }
    return { result: writes.length > 0 ? 'written' : 'unchanged' };
  }
}

/** One write of a node's sync. */
export type NodeWrite =
  | { op: 'create' | 'update'; name: string; object: SniffNodeAssignment; movesIn: boolean }
  | { op: 'delete'; name: string; uid: string | undefined; movesIn: false };

/**
 * The writes that make a node's @objects hold their entries with @changes
 * applied (policy `namespace/name` → its spec, or null: none). Pure. A new
 * entry is stamped `since` @now; an entry already there keeps its time.
 */
export function planNodeWrites(
  nodeName: string,
  namespace: string,
  objects: ReadonlyMap<string, SniffNodeAssignment>,
  changes: readonly (readonly [string, AssignmentChange])[],
  now: string,
): NodeWrite[] {
  const entries = new Map<string, { spec: SniffAssignmentSpec; since: string }>();
  // entry → the object it is in now
  const home = new Map<string, string>();
  for (const [name, o] of objects) {
    // (an entry whose config is missing is not expanded: rewritten without it)
    for (const a of assignmentsOfNode(o)) {
      const k = entryKey(a.spec.policy);
      home.set(k, name);
      entries.set(k, { spec: a.spec, since: a.metadata.creationTimestamp ?? now });
    }
  }
  for (const [k, change] of changes) {
    if (change === null) entries.delete(k);
    else entries.set(k, { spec: change, since: entries.get(k)?.since ?? now });
  }
  const labels = nodeAssignmentLabels(nodeName);
  const movesIn = (name: string, spec: SniffNodeAssignment['spec']) =>
    spec.entries.some((e) => {
      const h = home.get(entryKey(e.policy));
      return h !== undefined && h !== name;
    });
  const writes: NodeWrite[] = [];
  const wanted = new Set<string>();
  foldNodeAssignments(nodeName, [...entries.values()]).forEach((spec, i) => {
    const name = nodeAssignmentName(nodeName, i);
    wanted.add(name);
    const cur = objects.get(name);
    const object: SniffNodeAssignment = { apiVersion: API_VERSION, kind: NODE_ASSIGNMENT_KIND, metadata: { name, namespace, labels }, spec };
    if (!cur) writes.push({ op: 'create', name, object, movesIn: movesIn(name, spec) });
    else if (!jsonEqual(cur.spec, spec) || Object.entries(labels).some(([k, v]) => cur.metadata.labels?.[k] !== v)) {
      writes.push({ op: 'update', name, object, movesIn: movesIn(name, spec) });
    }
  });
  for (const [name, cur] of objects) if (!wanted.has(name)) writes.push({ op: 'delete', name, uid: cur.metadata.uid, movesIn: false });
  return writes;
}
