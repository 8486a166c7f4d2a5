/**
 * The benchmark's size: 1,000 nodes and 30,000 pods. Seeding goes through the
 * server's own write path (not HTTP, to keep the test short); listing and
 * watching go through HTTP as informers do. The time bounds are generous:
 * they catch quadratic work, not slow machines.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { pino } from 'pino';
import { createClusterState, createHandler, createHttpServer, type ClusterState } from '../src/server.ts';
import { defaultWriteOptions } from '../src/api.ts';

const NODES = 1000;
const PODS = 30_000;
let state: ClusterState;
let server: Server;
let url: string;
let seedMs = 0;

beforeAll(async () => {
  const opts = { logger: pino({ level: 'silent' }) };
  state = createClusterState(opts);
  server = createHttpServer(createHandler(state, opts, () => 'x'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const wo = { ...defaultWriteOptions(), fieldManager: 'seed' };
  const nodes = state.registry.get('', 'v1', 'nodes')!;
  const pods = state.registry.get('', 'v1', 'pods')!;
  const ns = state.registry.get('', 'v1', 'namespaces')!;
  const started = performance.now();
  for (let i = 0; i < 10; i++) state.api.create(ns, undefined, { metadata: { name: `team-${i}` } }, wo);
  for (let i = 0; i < NODES; i++) {
    state.api.create(nodes, undefined, { metadata: { name: `node-${i}` }, status: { conditions: [{ type: 'Ready', status: 'True' }] } }, wo);
  }
  for (let i = 0; i < PODS; i++) {
    state.api.create(
      pods,
      `team-${i % 10}`,
      { metadata: { name: `pod-${i}`, labels: { app: `app-${i % 100}` } }, spec: { nodeName: `node-${i % NODES}`, containers: [{ name: 'c', image: 'busybox:1.36' }] } },
      wo,
    );
  }
  seedMs = performance.now() - started;
}, 120_000);

afterAll(async () => {
  state.store.closeAll();
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

describe('at benchmark size', () => {
  it('seeds 31,000 objects in linear time', () => {
    expect(seedMs).toBeLessThan(20_000);
  });

  it('lists all pods in pages of 500 with one consistent resourceVersion', async () => {
    const started = performance.now();
    let cont = '';
    let total = 0;
    const rvs = new Set<string>();
    do {
      const r = await fetch(`${url}/api/v1/pods?limit=500${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`);
      const j = (await r.json()) as { items: unknown[]; metadata: { continue?: string; resourceVersion: string } };
      total += j.items.length;
      rvs.add(j.metadata.resourceVersion);
      cont = j.metadata.continue ?? '';
    } while (cont);
    expect(total).toBe(PODS);
    expect(rvs.size).toBe(1);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it('serves a field-selected list (one node) and a namespace list quickly', async () => {
    const started = performance.now();
    const byNode = (await (await fetch(`${url}/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-7`)).json()) as { items: unknown[] };
    expect(byNode.items).toHaveLength(PODS / NODES);
    const byNs = (await (await fetch(`${url}/api/v1/namespaces/team-3/pods?labelSelector=app%3Dapp-3`)).json()) as { items: unknown[] };
    expect(byNs.items).toHaveLength(PODS / 100);
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it('streams the full list and fans one change out to 20 watchers', async () => {
    const full = await fetch(`${url}/api/v1/pods`);
    const body = await full.text();
    expect(body.length).toBeGreaterThan(PODS * 300);
    const watchers = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const ctl = new AbortController();
        const res = await fetch(`${url}/api/v1/namespaces/team-${i % 10}/pods?watch=1&resourceVersion=${state.store.resourceVersion}`, { signal: ctl.signal });
        const reader = res.body!.getReader();
        return { ctl, reader };
      }),
    );
    const started = performance.now();
    const pods = state.registry.get('', 'v1', 'pods')!;
    for (let i = 0; i < 100; i++) {
      state.api.patch(pods, `team-${i % 10}`, `pod-${i}`, 'application/merge-patch+json', '{"status":{"phase":"Running"}}', 'status', defaultWriteOptions());
    }
    const counts = await Promise.all(
      watchers.map(async ({ reader }) => {
        let lines = 0;
        const dec = new TextDecoder();
        while (lines < 10) {
          const { value, done } = await reader.read();
          if (done) break;
          lines += dec.decode(value).split('\n').length - 1;
        }
        return lines;
      }),
    );
    expect(counts.every((n) => n === 10)).toBe(true);
    expect(performance.now() - started).toBeLessThan(5_000);
    for (const w of watchers) w.ctl.abort();
  });
});
