/**
 * A stand-in for the API server behind the reconciler and the node writer:
 * applies writes of policy status and of SniffNodeAssignments to the world's
 * stores (as the informers would, once the watch delivers them: the node
 * objects expanded into the per-(policy, node) assignments the planner
 * reads), assigns uid/generation/resourceVersion like the server, and can
 * fail calls. `nodes` is a real NodeWriter over it; `flush()` runs its syncs.
 */
import { assignmentsOfNode, type SniffAssignment, type SniffNodeAssignment } from '../../../src/api/index.ts';
import { NodeWriter, type NodeObjectApi } from '../../../src/controller/nodes.ts';
import { slimAssignment, slimPolicy, type PolicyObject } from '../../../src/controller/objects.ts';
import type { Plan, ReconcileApi } from '../../../src/controller/reconcile.ts';
import type { newStores } from '../../../src/controller/world.ts';
import { replacingMergePatch } from '../../../src/util/json.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { KubeApiError, objectKey, type KubeObject } from '../../../src/k8s/index.ts';
import { INSTALL_NS } from './fixtures.ts';

type Stores = ReturnType<typeof newStores>;

let rv = 1000;

export function apiError(code: number, reason: string): KubeApiError {
  return new KubeApiError(code, 'TEST', '/test', { kind: 'Status', code, reason, message: reason });
}

export class FakeApi implements ReconcileApi, NodeObjectApi {
  readonly stores: Stores;
  readonly calls: string[] = [];
  /** Fail the next call whose description starts with the key. */
  readonly failures = new Map<string, KubeApiError>();
  created = 0;
  now = '2025-01-01T00:00:00Z';
  /** Writes succeed but the caches do not see them (a lagging watch); `catchUp()` delivers them. */
  lagging = false;
  private pending: (() => void)[] = [];
  /** The node objects as the caches hold them (what the node writer reads). */
  readonly cachedObjects = new Map<string, SniffNodeAssignment>();
  /** Nodes the node writer has queued. */
  readonly nodeQueue = new Set<string>();
  readonly nodes: NodeWriter;

  constructor(stores: Stores) {
    this.stores = stores;
    this.nodes = new NodeWriter({
      objectsOfNode: (n) => [...this.cachedObjects.values()].filter((o) => o.spec.nodeName === n),
      api: this,
      namespace: INSTALL_NS,
      queue: { add: (k) => this.nodeQueue.add(k), addAfter: (k) => this.nodeQueue.add(k) },
      quietMs: 0, // (the syncs run when the test says)
      now: () => new Date(this.now),
    });
  }

  private check(call: string): void {
    this.calls.push(call);
    for (const [prefix, err] of this.failures) {
      if (call.startsWith(prefix)) {
        this.failures.delete(prefix);
        throw err;
      }
    }
  }

  /** Run the node writer's syncs until none is queued; the first failure is thrown after all ran. */
  async flush(): Promise<void> {
    let first: unknown;
    while (this.nodeQueue.size > 0) {
      const nodes = [...this.nodeQueue];
      this.nodeQueue.clear();
      for (const n of nodes) {
        try {
          await this.nodes.sync(n, silentLogger);
        } catch (err) {
          first ??= err;
        }
      }
      if (first) break;
    }
    if (first) throw first;
  }

  async create(o: SniffNodeAssignment): Promise<SniffNodeAssignment> {
    this.check(`create ${o.metadata.name}`);
    const key = objectKey(o);
    if (this.server.has(key)) throw apiError(409, 'AlreadyExists');
    const obj = structuredClone(o);
    obj.metadata = { ...obj.metadata, uid: `uid-a-${++this.created}`, generation: 1, resourceVersion: String(++rv), creationTimestamp: this.now };
    this.store(obj);
    return structuredClone(obj);
  }

  async patch(namespace: string, name: string, patch: { metadata: { labels: Record<string, string> }; spec: SniffNodeAssignment['spec'] }): Promise<SniffNodeAssignment> {
    this.check(`update ${name}`);
    const cur = this.server.get(`${namespace}/${name}`);
    if (!cur) throw apiError(404, 'NotFound');
    const obj = structuredClone(cur);
    obj.metadata = { ...obj.metadata, labels: { ...obj.metadata.labels, ...patch.metadata.labels }, generation: (cur.metadata.generation ?? 1) + 1, resourceVersion: String(++rv) };
    obj.spec = structuredClone(patch.spec);
    this.store(obj);
    return structuredClone(obj);
  }

  async delete(namespace: string, name: string, uid: string | undefined): Promise<void> {
    this.check(`delete ${name}`);
    const key = `${namespace}/${name}`;
    const cur = this.server.get(key);
    if (!cur) throw apiError(404, 'NotFound');
    if (uid && cur.metadata.uid !== uid) throw apiError(409, 'Conflict');
    this.server.delete(key);
    this.deliver(() => this.cache(key, undefined));
  }

  async patchPolicyStatus(namespace: string, name: string, patch: { status: Record<string, unknown> }): Promise<PolicyObject> {
    this.check(`status ${name}`);
    const cur = this.stores.policies.get(`${namespace}/${name}`);
    if (!cur) throw apiError(404, 'NotFound');
    const status = applyMergePatch(cur.status ?? {}, patch.status) as Record<string, unknown>;
    const updated = slimPolicy({ ...structuredClone(cur), status, metadata: { ...cur.metadata, resourceVersion: String(++rv) } } as KubeObject);
    this.deliver(() => this.stores.policies.upsert(structuredClone(updated)));
    return structuredClone(updated);
  }

  /**
   * An agent's report on an assignment (by its name, `<ns>.<policy>.<node>`):
   * the entry's status in its node object; `observedGeneration` is the object's.
   */
  report(namespace: string, name: string, status: SniffAssignment['status']): void {
    const obj = [...this.server.values()].find((o) => assignmentsOfNode(o).some((a) => a.metadata.name === name && a.metadata.namespace === namespace));
    if (!obj) throw new Error(`no node object holds ${name}`);
    const uid = assignmentsOfNode(obj).find((a) => a.metadata.name === name)!.spec.policy.uid;
    const { observedGeneration, ...entry } = status ?? {};
    const next = structuredClone(obj);
    const entries = (next.status?.entries ?? []).filter((e) => e.policyUid !== uid);
    next.status = { ...next.status, ...(observedGeneration !== undefined ? { observedGeneration } : {}), entries: [...entries, { ...entry, policyUid: uid }] };
    next.metadata = { ...next.metadata, resourceVersion: String(++rv) };
    this.store(next);
  }

  /** The server's node objects (what the caches will hold once caught up). */
  readonly server = new Map<string, SniffNodeAssignment>();

  private store(obj: SniffNodeAssignment): void {
    const key = objectKey(obj);
    this.server.set(key, obj);
    const copy = structuredClone(obj);
    this.deliver(() => this.cache(key, copy));
  }

  /** What the informers do with an object: keep it, and its entries as assignments. */
  private cache(key: string, obj: SniffNodeAssignment | undefined): void {
    const old = this.cachedObjects.get(key);
    for (const a of old ? assignmentsOfNode(old) : []) this.stores.assignments.remove(objectKey(a));
    if (!obj) {
      this.cachedObjects.delete(key);
      if (old) this.nodes.observeDelete(old);
      return;
    }
    this.cachedObjects.set(key, obj);
    for (const a of assignmentsOfNode(obj)) this.stores.assignments.upsert(slimAssignment(a as unknown as KubeObject));
    this.nodes.observe(obj);
  }

  private deliver(apply: () => void): void {
    if (this.lagging) this.pending.push(apply);
    else apply();
  }

  /** Deliver the writes a lagging watch held back. */
  catchUp(): void {
    for (const p of this.pending.splice(0)) p();
  }
}

/** RFC 7386. */
export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = applyMergePatch(out[k], v);
  }
  return out;
}

export { replacingMergePatch };

/** Apply a plan's writes straight to the stores (for the pure planPolicy tables): through the node writer, as the controller does. */
export async function applyPlan(api: FakeApi, plan: Plan): Promise<void> {
  const ref = (a: SniffAssignment) => ({ namespace: a.spec.policy.namespace, name: a.spec.policy.name });
  for (const a of [...plan.creates, ...plan.updates]) api.nodes.submit(a.spec.nodeName, ref(a), a.spec);
  for (const a of plan.deletes) api.nodes.submit(a.spec.nodeName, ref(a), null);
  await api.flush();
  if (plan.policy && plan.status) {
    await api.patchPolicyStatus(plan.policy.metadata.namespace!, plan.policy.metadata.name!, { status: replacingMergePatch(plan.policy.status ?? {}, plan.status) as Record<string, unknown> });
  }
}
