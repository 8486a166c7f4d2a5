/**
 * A stand-in for the API server behind the reconciler: applies writes to the
 * world's stores (as the informers would, once the watch delivers them),
 * assigns uid/generation/resourceVersion like the server, and can fail calls.
 */
import type { SniffAssignment } from '../../../src/api/index.ts';
import { slimAssignment, slimPolicy, type PolicyObject } from '../../../src/controller/objects.ts';
import type { Plan, ReconcileApi } from '../../../src/controller/reconcile.ts';
import type { newStores } from '../../../src/controller/world.ts';
import { jsonEqual, replacingMergePatch } from '../../../src/util/json.ts';
import { KubeApiError, type KubeObject } from '../../../src/k8s/index.ts';

type Stores = ReturnType<typeof newStores>;

let rv = 1000;

export function apiError(code: number, reason: string): KubeApiError {
  return new KubeApiError(code, 'TEST', '/test', { kind: 'Status', code, reason, message: reason });
}

export class FakeApi implements ReconcileApi {
  readonly stores: Stores;
  readonly calls: string[] = [];
  /** Fail the next call whose description starts with the key. */
  readonly failures = new Map<string, KubeApiError>();
  created = 0;
  now = '2025-01-01T00:00:00Z';
  /** Writes succeed but the caches do not see them (a lagging watch); `catchUp()` delivers them. */
  lagging = false;
  private pending: (() => void)[] = [];

  constructor(stores: Stores) {
    this.stores = stores;
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

  async createAssignment(a: SniffAssignment): Promise<SniffAssignment> {
    this.check(`create ${a.metadata.name}`);
    const key = `${a.metadata.namespace}/${a.metadata.name}`;
    if (this.server.has(key)) throw apiError(409, 'AlreadyExists');
    const obj = structuredClone(a);
    obj.metadata = { ...obj.metadata, uid: `uid-a-${++this.created}`, generation: 1, resourceVersion: String(++rv), creationTimestamp: this.now };
    this.server.set(key, obj);
    this.deliver(() => this.stores.assignments.upsert(slimAssignment(structuredClone(obj))));
    return structuredClone(obj);
  }

  async replaceAssignment(a: SniffAssignment): Promise<SniffAssignment> {
    this.check(`update ${a.metadata.name}`);
    const key = `${a.metadata.namespace}/${a.metadata.name}`;
    const cur = this.server.get(key);
    if (!cur) throw apiError(404, 'NotFound');
    if (cur.metadata.resourceVersion !== a.metadata.resourceVersion) throw apiError(409, 'Conflict');
    const obj = structuredClone(a);
    const generation = (cur.metadata.generation ?? 1) + (jsonEqual(cur.spec, a.spec) ? 0 : 1);
    obj.metadata = { ...obj.metadata, generation, resourceVersion: String(++rv) };
    if (cur.status) obj.status = cur.status; // PUT on the main resource keeps the status
    this.server.set(key, obj);
    this.deliver(() => this.stores.assignments.upsert(slimAssignment(structuredClone(obj))));
    return structuredClone(obj);
  }

  async deleteAssignment(namespace: string, name: string, uid: string | undefined): Promise<void> {
    this.check(`delete ${name}`);
    const cur = this.server.get(`${namespace}/${name}`);
    if (!cur) throw apiError(404, 'NotFound');
    if (uid && cur.metadata.uid !== uid) throw apiError(409, 'Conflict');
    this.server.delete(`${namespace}/${name}`);
    this.deliver(() => this.stores.assignments.remove(`${namespace}/${name}`));
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

  /** An agent's report on an assignment (the status subresource). */
  report(namespace: string, name: string, status: SniffAssignment['status']): void {
    const key = `${namespace}/${name}`;
    const obj = { ...structuredClone(this.server.get(key)!), status, metadata: { ...this.server.get(key)!.metadata, resourceVersion: String(++rv) } } as SniffAssignment;
    this.server.set(key, obj);
    this.deliver(() => this.stores.assignments.upsert(slimAssignment(structuredClone(obj) as unknown as KubeObject)));
  }

  /** The server's assignments (what the caches will hold once caught up). */
  readonly server = new Map<string, SniffAssignment>();

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

/** Apply a plan's writes straight to the stores (for the pure planPolicy tables). */
export async function applyPlan(api: FakeApi, plan: Plan): Promise<void> {
  for (const a of plan.creates) await api.createAssignment(a);
  for (const a of plan.updates) await api.replaceAssignment(a);
  for (const a of plan.deletes) await api.deleteAssignment(a.metadata.namespace!, a.metadata.name!, a.metadata.uid);
  if (plan.policy && plan.status) {
    await api.patchPolicyStatus(plan.policy.metadata.namespace!, plan.policy.metadata.name!, { status: replacingMergePatch(plan.policy.status ?? {}, plan.status) as Record<string, unknown> });
  }
}
