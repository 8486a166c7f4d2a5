/**
 * The agent's status reports, written per stored SniffNodeAssignment rather
 * than per assignment: the point of folding a node's assignments into one
 * object is fewer API writes, and a report round of N captures on a node is
 * then one status write, not N.
 *
 *   write(a, status) ─► latest status of a's entry ─┐
 *   synced(a)        ─► spec the agent acted on    ─┼─► per object: one write in flight,
 *   object's generation changed (view.objects)     ─┘   the rest coalesced into the next
 *
 * Each write is a JSON merge patch of the status subresource with the whole
 * entries list (an atomic list: a merge patch replaces it), built from the
 * cached object's spec: each entry gets the latest status recorded for it,
 * else the one the server holds; entries gone from the spec are left out.
 *
 * status.observedGeneration is the object's, not an entry's: the controller
 * takes an entry as caught up when it equals the object's generation. It is
 * written only once every entry of the cached object has been synced with
 * exactly its current spec; until then it is left out of the patch and keeps
 * its previous value. A new generation in which no entry this agent has
 * synced changed (another entry was removed, a spec came back) needs no sync,
 * so the generation bump itself queues the write that says so.
 */
import { assignmentsOfNode, sniffNodeAssignments, type EntryStatus, type SniffAssignment, type SniffAssignmentSpec, type SniffNodeAssignment } from '../api/index.ts';
import type { AssignmentView } from '../api/view.ts';
import { isNotFound, objectKey, type KubeClient, type ResourceClient } from '../k8s/index.ts';
import { jsonEqual } from '../util/json.ts';
import { silentLogger, type Logger } from '../util/log.ts';
import type { AgentMetrics } from './metrics.ts';

/**
 * How long a status waits for others of the same object before it is written.
 * The agent's report round syncs its captures one after another (a counter
 * read each): without a window the first status would go alone and the rest
 * in a second write. Short beside the report interval (5 s) and the
 * controller's staleness (tens of seconds).
 */
export const STATUS_BATCH_MS = 50;

/** After a failed write the object's statuses are written again after this, doubling up to STATUS_RETRY_MAX_MS. */
export const STATUS_RETRY_MS = 1_000;
export const STATUS_RETRY_MAX_MS = 60_000;

/** An entry's status as the agent reports it (policyUid is the writer's to fill in). */
export type ReportedStatus = Omit<EntryStatus, 'policyUid'>;

export interface StatusWriterOptions {
  client: KubeClient;
  /** The agent's view of its node's objects: what is in which object, and each object's cached spec and generation. */
  view: Pick<AssignmentView, 'objectOf' | 'objects'>;
  logger?: Logger | undefined;
  metrics?: Pick<AgentMetrics, 'reported'> | undefined;
  batchMs?: number | undefined;
  retryMs?: number | undefined;
}

interface Waiter {
  resolve(): void;
  reject(err: Error): void;
}

/** One stored object's writes. */
interface ObjectWrites {
  key: string;
  /** callers whose status goes out with the next write */
  waiters: Waiter[];
  timer: NodeJS.Timeout | undefined;
  writing: Promise<void> | undefined;
  /** The observedGeneration the server holds (as this writer last wrote it, or as the cache first said). */
  written: number | undefined;
  /** the last write failed: what was recorded is not on the server yet */
  unsent: boolean;
  failures: number;
}

export class StatusWriter {
  private readonly api: ResourceClient<SniffNodeAssignment>;
  private readonly view: StatusWriterOptions['view'];
  private readonly log: Logger;
  private readonly metrics: StatusWriterOptions['metrics'];
  private readonly batchMs: number;
  private readonly retryMs: number;
  /** assignment key → the latest status recorded for it */
  private readonly statuses = new Map<string, EntryStatus>();
  /** assignment key → the spec its last sync acted on */
  private readonly syncedSpecs = new Map<string, SniffAssignmentSpec>();
  /** object key → its writes */
  private readonly writes = new Map<string, ObjectWrites>();
  private closing = false;

  constructor(opts: StatusWriterOptions) {
    this.api = sniffNodeAssignments(opts.client);
    this.view = opts.view;
    this.log = (opts.logger ?? silentLogger).child({ writer: 'status' });
    this.metrics = opts.metrics;
    this.batchMs = opts.batchMs ?? STATUS_BATCH_MS;
    this.retryMs = opts.retryMs ?? STATUS_RETRY_MS;
    // the view raises no update for an entry whose spec is unchanged: the generation bump is seen here
    this.view.objects.on({
      update: (old, o) => {
        if (old.metadata.generation !== o.metadata.generation) this.catchUp(objectKey(o));
      },
      delete: (o) => this.objectGone(objectKey(o)),
    });
  }

  /**
   * Record @status as the status of @a's entry and have it written with its
   * object's next write; resolves once a write that includes it completed
   * (or the object is gone), rejects when that write failed. Fields @status
   * leaves out keep their value (as the merge patch of a per-assignment
   * status did): a stopped capture's final counters survive a report that
   * has none.
   */
  write(a: SniffAssignment, status: ReportedStatus): Promise<void> {
    const key = objectKey(a);
    const obj = this.view.objectOf(key);
    // gone from the node's objects: nothing to write it into (as a NotFound)
    if (!obj) return Promise.resolve();
    const uid = a.spec.policy.uid;
    this.statuses.set(key, { ...this.statusOf(key, uid, obj), ...definedOnly(status), policyUid: uid });
    const w = this.writesOf(objectKey(obj), obj);
    return new Promise<void>((resolve, reject) => {
      w.waiters.push({ resolve, reject });
      this.schedule(w, this.batchMs);
    });
  }

  /** The agent's sync of @a acted on its current spec: once every entry of its object has, the object's generation is observed. */
  synced(a: SniffAssignment): void {
    const key = objectKey(a);
    this.syncedSpecs.set(key, a.spec);
    const obj = this.view.objectOf(key);
    if (obj) this.catchUp(objectKey(obj));
  }

  /** The assignment is gone from this node: its recorded status and spec go too. */
  forget(key: string): void {
    this.statuses.delete(key);
    this.syncedSpecs.delete(key);
  }

  /** Write what is pending now and wait for every write; from here on writes go out at once and a failed one is not retried (shutdown). */
  async drain(): Promise<void> {
    this.closing = true;
    for (;;) {
      for (const w of this.writes.values()) if (w.timer) this.flush(w);
      const writing = [...this.writes.values()].flatMap((w) => (w.writing ? [w.writing] : []));
      if (writing.length === 0) return;
      await Promise.all(writing);
    }
  }

  /** Whether the agent has synced every entry of @obj with exactly its current spec. */
  caughtUp(obj: SniffNodeAssignment): boolean {
    return assignmentsOfNode(obj).every((a) => {
      const spec = this.syncedSpecs.get(objectKey(a));
      return spec !== undefined && jsonEqual(spec, a.spec);
    });
  }

  /** The status @uid's entry has now: the one recorded (if for this policy, not an earlier one of the same name), else the server's. */
  private statusOf(key: string, uid: string, obj: SniffNodeAssignment): EntryStatus | undefined {
    const recorded = this.statuses.get(key);
    if (recorded?.policyUid === uid) return recorded;
    return obj.status?.entries?.find((e) => e.policyUid === uid);
  }

  private writesOf(key: string, obj: SniffNodeAssignment | undefined): ObjectWrites {
    let w = this.writes.get(key);
    if (!w) {
      w = { key, waiters: [], timer: undefined, writing: undefined, written: obj?.status?.observedGeneration, unsent: false, failures: 0 };
      this.writes.set(key, w);
    }
    return w;
  }

  /** A write of @key if the server's observedGeneration is behind a generation now caught up. */
  private catchUp(key: string): void {
    const obj = this.view.objects.store.get(key);
    if (!obj) return;
    const w = this.writesOf(key, obj);
    if (this.behind(w, obj)) this.schedule(w, this.batchMs);
  }

  private behind(w: ObjectWrites, obj: SniffNodeAssignment): boolean {
    return obj.metadata.generation !== undefined && w.written !== obj.metadata.generation && this.caughtUp(obj);
  }

  /** A write of @w in @ms (now once draining), unless one is due already or in flight (whose end looks again). */
  private schedule(w: ObjectWrites, ms: number): void {
    if (w.timer || w.writing) return;
    if (this.closing) this.flush(w);
    else w.timer = setTimeout(() => this.flush(w), ms);
  }

  private flush(w: ObjectWrites): void {
    clearTimeout(w.timer);
    w.timer = undefined;
    if (w.writing) return;
    const obj = this.view.objects.store.get(w.key);
    const waiters = w.waiters.splice(0);
    if (!obj) {
      for (const x of waiters) x.resolve();
      return;
    }
    if (waiters.length === 0 && !w.unsent && !this.behind(w, obj)) return;
    w.writing = this.send(w, obj, waiters).finally(() => {
      w.writing = undefined;
      this.next(w);
    });
  }

  /** Write @obj's statuses; settles @waiters, never rejects. */
  private async send(w: ObjectWrites, obj: SniffNodeAssignment, waiters: Waiter[]): Promise<void> {
    const generation = this.caughtUp(obj) ? obj.metadata.generation : undefined;
    const entries: EntryStatus[] = [];
    for (const a of assignmentsOfNode(obj)) {
      const st = this.statusOf(objectKey(a), a.spec.policy.uid, obj);
      if (st) entries.push(st);
    }
    const patch = { status: { ...(generation !== undefined ? { observedGeneration: generation } : {}), entries } };
    try {
      await this.api.patchStatus(obj.metadata.namespace, obj.metadata.name!, patch);
      this.metrics?.reported();
      if (generation !== undefined) w.written = generation;
      w.unsent = false;
      w.failures = 0;
      for (const x of waiters) x.resolve();
    } catch (err) {
      if (isNotFound(err)) {
        // deleted meanwhile: its delete event forgets it
        w.unsent = false;
        for (const x of waiters) x.resolve();
        return;
      }
      w.unsent = true;
      w.failures++;
      const error = new Error('writing assignment status failed', { cause: err });
      this.log.warn({ object: w.key, err, entries: entries.length, retryInMs: this.closing ? undefined : this.retryDelay(w) }, 'status write failed');
      for (const x of waiters) x.reject(error);
    }
  }

  /** After a write: the next one, for statuses recorded meanwhile, a generation caught up meanwhile, or a retry. */
  private next(w: ObjectWrites): void {
    if (this.writes.get(w.key) !== w) return; // the object is gone
    if (w.unsent && !this.closing) {
      this.schedule(w, this.retryDelay(w));
      return;
    }
    if (w.unsent) {
      // draining: given up, not retried (the agent stops); the next agent reports afresh
      w.unsent = false;
      for (const x of w.waiters.splice(0)) x.reject(new Error('writing assignment status failed', { cause: new Error('the agent stops') }));
      return;
    }
    const obj = this.view.objects.store.get(w.key);
    // they waited for the write in flight already: no second window
    if (w.waiters.length > 0 || (obj && this.behind(w, obj))) this.schedule(w, 0);
  }

  private retryDelay(w: ObjectWrites): number {
    return Math.min(STATUS_RETRY_MAX_MS, this.retryMs * 2 ** Math.max(0, w.failures - 1));
  }

  private objectGone(key: string): void {
    const w = this.writes.get(key);
    if (!w) return;
    clearTimeout(w.timer);
    this.writes.delete(key);
    for (const x of w.waiters.splice(0)) x.resolve();
  }
}

/** @o without its undefined fields: absent, as in a merge patch, keeps the recorded value. */
function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
