/**
 * The assignments as every component works with them — one SniffAssignment
 * per (policy, node) — kept from the stored SniffNodeAssignments by an
 * informer on those. It has the surface of an Informer (store, handlers,
 * relist hooks, sync): a handler hears of an assignment added, changed or
 * gone, whatever the stored object around it did. An entry that moves from a
 * node's first object to its second (the first grew past its bound) is
 * neither deleted nor added, because the controller writes the object that
 * gains it before the one that loses it (nodes.ts), and so the gaining
 * object's event comes first.
 */
import { dispatch, Informer, objectKey, Store, type IndexFunc, type InformerHandlers, type KubeClient } from '../k8s/index.ts';
import { silentLogger, type Logger } from '../util/log.ts';
import { assignmentsOfNode, type SniffAssignment, type SniffNodeAssignment } from './assignment.ts';
import { PodtapResources } from './resources.ts';

export interface AssignmentViewOptions {
  client: KubeClient;
  /** The install namespace (where the objects live). */
  namespace: string;
  /** One node's objects only (the agent): `podtap.io/node=<node>`. */
  labelSelector?: string | undefined;
  logger?: Logger | undefined;
  /** Slim each assignment before it is stored. */
  transform?: ((a: SniffAssignment) => SniffAssignment) | undefined;
  indexers?: Record<string, IndexFunc<SniffAssignment>> | undefined;
  /** Two versions of an assignment that are equal raise no update. */
  equal?: ((a: SniffAssignment, b: SniffAssignment) => boolean) | undefined;
}

/** The objects informer's index of a node's objects. */
const OBJECTS_BY_NODE = 'byNode';

export class AssignmentView {
  readonly store: Store<SniffAssignment>;
  /** The stored objects. */
  readonly objects: Informer<SniffNodeAssignment>;
  private readonly opts: AssignmentViewOptions;
  private readonly handlers: InformerHandlers<SniffAssignment>[] = [];
  /** assignment key → key of the object it is in now */
  private readonly owner = new Map<string, string>();
  private readonly log: Logger;

  constructor(opts: AssignmentViewOptions) {
    this.opts = opts;
    this.log = opts.logger ?? silentLogger;
    this.store = new Store<SniffAssignment>(opts.indexers ?? {});
    this.objects = new Informer<SniffNodeAssignment>({
      client: opts.client,
      resource: PodtapResources.sniffNodeAssignments,
      namespace: opts.namespace,
      labelSelector: opts.labelSelector,
      logger: opts.logger,
      indexers: { [OBJECTS_BY_NODE]: (o) => (o.spec?.nodeName ? [o.spec.nodeName] : []) },
    });
    this.objects.on({
      add: (o) => this.reconcileObject(undefined, o),
      update: (old, o) => this.reconcileObject(old, o),
      delete: (o) => this.reconcileObject(o, undefined),
    });
  }

  /** Register handlers; they run synchronously on the event and must only do cheap work (enqueue). */
  on(handlers: InformerHandlers<SniffAssignment>): void {
    this.handlers.push(handlers);
  }

  onRelist(hook: () => void): void {
    this.objects.onRelist(hook);
  }

  hasSynced(): boolean {
    return this.objects.hasSynced();
  }

  waitForSync(): Promise<void> {
    return this.objects.waitForSync();
  }

  start(): void {
    this.objects.start();
  }

  stop(): Promise<void> {
    return this.objects.stop();
  }

  /** The stored object an assignment (by key) is an entry of. */
  objectOf(key: string): SniffNodeAssignment | undefined {
    const o = this.owner.get(key);
    return o === undefined ? undefined : this.objects.store.get(o);
  }

  /** A node's stored objects, as cached. */
  objectsOfNode(nodeName: string): SniffNodeAssignment[] {
    return this.objects.store.byIndex(OBJECTS_BY_NODE, nodeName);
  }

  private expand(o: SniffNodeAssignment): SniffAssignment[] {
    const out = assignmentsOfNode(o);
    return this.opts.transform ? out.map(this.opts.transform) : out;
  }

  private reconcileObject(old: SniffNodeAssignment | undefined, obj: SniffNodeAssignment | undefined): void {
    const objKey = objectKey((obj ?? old)!);
    const fresh = new Map<string, SniffAssignment>();
    if (obj) for (const a of this.expand(obj)) fresh.set(objectKey(a), a);
    if (old) {
      for (const a of assignmentsOfNode(old)) {
        const k = objectKey(a);
        if (fresh.has(k) || this.owner.get(k) !== objKey) continue; // still here, or already in another object
        this.owner.delete(k);
        const gone = this.store.remove(k);
        if (gone) this.emit('delete', undefined, gone);
      }
    }
    for (const [k, a] of fresh) {
      this.owner.set(k, objKey);
      const prev = this.store.upsert(a);
      if (!prev) this.emit('add', undefined, a);
      else if (!(this.opts.equal?.(prev, a) ?? false)) this.emit('update', prev, a);
    }
  }

  private emit(kind: 'add' | 'update' | 'delete', old: SniffAssignment | undefined, a: SniffAssignment): void {
    dispatch(this.handlers, kind, old, a, this.log);
  }
}
