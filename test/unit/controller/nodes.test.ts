import { describe, expect, it } from 'vitest';
import { NodeWriter } from '../../../src/controller/nodes.ts';
import { worldFrom } from '../../../src/controller/world.ts';
import { captureConfig, SniffPolicySpecSchema, type SniffAssignmentSpec } from '../../../src/api/index.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { FakeApi } from './fake-api.ts';
import { INSTALL_NS, NS } from './fixtures.ts';

const config = captureConfig(SniffPolicySpecSchema.parse({ podSelector: {}, collector: { address: '198.18.9.9' } }), { address: '198.18.9.9', port: 6081 });
const spec = (policy: string): SniffAssignmentSpec => ({
  nodeName: 'node-a',
  policy: { namespace: NS, name: policy, uid: `uid-${policy}`, generation: 1 },
  config,
  pods: [{ name: `${policy}-0`, uid: `uid-${policy}-0`, ips: ['198.18.0.10'] }],
  limits: { maxPackets: 0, maxBytes: 0 },
  stopped: false,
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Wait (up to 10 s, for a loaded machine) until @cond. */
async function until(cond: () => boolean): Promise<void> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > 10_000) throw new Error('timed out');
    await sleep(10);
  }
}

/** A NodeWriter over the fake API whose queue runs each added node's sync at once (as the workers would). */
function writer(opts: { busy: () => boolean; holdMs: number; quietMs: number }) {
  const api = new FakeApi(worldFrom({}).stores);
  const results: string[] = [];
  // one sync of a node at a time, and once more if it was added meanwhile (as the WorkQueue does)
  const running = new Set<string>();
  const again = new Set<string>();
  const run = (n: string): void => {
    if (running.has(n)) return void again.add(n);
    running.add(n);
    void w
      .sync(n, silentLogger)
      .then((r) => results.push(String(r.result)), (err: unknown) => results.push(`error ${String(err)}`))
      .finally(() => {
        running.delete(n);
        if (again.delete(n)) run(n);
      });
  };
  const w: NodeWriter = new NodeWriter({
    objectsOfNode: (n) => [...api.cachedObjects.values()].filter((o) => o.spec.nodeName === n),
    api,
    namespace: INSTALL_NS,
    queue: { add: run, addAfter: () => {} },
    policiesBusy: opts.busy,
    holdMs: opts.holdMs,
    quietMs: opts.quietMs,
  });
  return { api, w, results, writes: () => api.calls.filter((c) => !c.startsWith('status')) };
}

describe('NodeWriter: a node waits for the policies still being planned', () => {
  it('held while the policy queue is busy, then one write with every change', async () => {
    let busy = true;
    const t = writer({ busy: () => busy, holdMs: 5_000, quietMs: 0 });
    t.w.submit('node-a', { namespace: NS, name: 'p1' }, spec('p1'));
    await sleep(60);
    t.w.submit('node-a', { namespace: NS, name: 'p2' }, spec('p2'));
    await sleep(60);
    expect(t.writes()).toEqual([]);
    busy = false;
    await until(() => t.writes().length > 0);
    expect(t.writes()).toEqual(['create node-a']);
    expect(t.api.server.get(`${INSTALL_NS}/node-a`)!.spec.entries.map((e) => e.policy.name)).toEqual(['p1', 'p2']);
  });

  it('not longer than the hold: a queue that never empties delays a write by holdMs at most', async () => {
    const t = writer({ busy: () => true, holdMs: 1_000, quietMs: 0 });
    const t0 = performance.now();
    t.w.submit('node-a', { namespace: NS, name: 'p1' }, spec('p1'));
    await sleep(100);
    expect(t.writes()).toEqual([]);
    await until(() => t.writes().length > 0);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(1_000);
    expect(t.writes()).toEqual(['create node-a']);
  });

  it('changes still coming in: held until none came for quietMs', async () => {
    const t = writer({ busy: () => false, holdMs: 5_000, quietMs: 400 });
    for (const p of ['p1', 'p2', 'p3']) {
      t.w.submit('node-a', { namespace: NS, name: p }, spec(p));
      await sleep(30);
    }
    expect(t.writes()).toEqual([]);
    await until(() => t.writes().length > 0);
    expect(t.writes()).toEqual(['create node-a']);
    expect(t.api.server.get(`${INSTALL_NS}/node-a`)!.spec.entries).toHaveLength(3);
  });
});

describe('NodeWriter: an entry moving to a node\'s second object', () => {
  it('is written into the second object before it leaves the first', async () => {
    const t = writer({ busy: () => false, holdMs: 0, quietMs: 0 });
    const names = Array.from({ length: 64 }, (_, i) => `p${String(i).padStart(2, '0')}`);
    for (const n of names) t.w.submit('node-a', { namespace: NS, name: n }, spec(n));
    await until(() => t.api.server.size === 1 && t.w.pendingNodes === 0);
    t.api.calls.length = 0;
    // 'a0' sorts first: p63 no longer fits in the first object and moves to the second
    t.w.submit('node-a', { namespace: NS, name: 'a0' }, spec('a0'));
    await until(() => t.api.server.size === 2 && t.w.pendingNodes === 0);
    const second = [...t.api.server.values()].find((o) => o.metadata.name !== 'node-a')!;
    expect(second.spec.entries.map((e) => e.policy.name)).toEqual(['p63']);
    expect(t.api.calls).toEqual([`create ${second.metadata.name}`, 'update node-a']);
  });
});
