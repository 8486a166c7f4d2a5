/**
 * The cluster admin's experience with the real kubectl against the embedded
 * Kubernetes API and the controller: apply the CRDs and the examples, get with
 * the printer columns, describe with events, get -w, delete — and bad policies
 * refused by kubectl apply with the field named, or reported as a condition.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiServer, writeKubeconfig, type ApiServer } from '@podtap/devcluster';
import { startController, type RunningController } from '../../src/controller/controller.ts';
import { loadKubeConfig } from '../../src/k8s/index.ts';

const CRD_DIR = new URL('../../charts/podtap/crds/', import.meta.url).pathname;

let api: ApiServer;
let controller: RunningController;
let kubeconfig = '';
let dir = '';

async function kubectl(args: string[], input?: string) {
  const r = await execa('kubectl', ['--kubeconfig', kubeconfig, ...args], { reject: false, input, all: true, timeout: 30_000 });
  return { code: r.exitCode, out: String(r.stdout), err: String(r.stderr), all: String(r.all) };
}

async function eventually<T>(fn: () => Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 200));
  }
}

const policy = (name: string, spec: Record<string, unknown>) =>
  JSON.stringify({ apiVersion: 'podtap.io/v1alpha1', kind: 'SniffPolicy', metadata: { name, namespace: 'demo' }, spec });

beforeAll(async () => {
  api = await startApiServer({ port: 0 });
  dir = await mkdtemp(join(tmpdir(), 'podtap-kubectl-'));
  kubeconfig = join(dir, 'kubeconfig');
  await writeKubeconfig(kubeconfig, api.url);
  const crds = (await readdir(CRD_DIR)).filter((f) => f.endsWith('.yaml'));
  for (const f of crds) expect((await kubectl(['apply', '-f', join(CRD_DIR, f)])).code).toBe(0);
  expect((await kubectl(['create', 'namespace', 'demo'])).code).toBe(0);
  expect((await kubectl(['create', 'namespace', 'podtap-system'])).code).toBe(0);
  controller = await startController({ kubeConfig: loadKubeConfig(kubeconfig), metricsAddr: '', leaderElect: false, destinations: { services: [], cidrs: ['198.18.0.0/15'] } });
}, 60_000);

afterAll(async () => {
  await controller?.stop();
  await api?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('kubectl against the embedded API', () => {
  it('applies every example policy', async () => {
    for (const f of (await readdir('examples')).filter((x) => x.endsWith('.yaml')).sort()) {
      const r = await kubectl(['apply', '-f', join('examples', f)]);
      expect(r.code, `${f}: ${r.all}`).toBe(0);
      expect(r.out).toMatch(/sniffpolicy\.podtap\.io\/\S+ (created|configured)/);
    }
  });

  it('gets policies with their printer columns, and more with -o wide', async () => {
    const r = await kubectl(['get', 'sniffpolicies', '-n', 'demo']);
    expect(r.code).toBe(0);
    expect(r.out.split('\n')[0]).toMatch(/^NAME\s+READY\s+PODS\s+NODES\s+PACKETS\s+LOST\s+AGE$/);
    expect(r.out).toMatch(/web-debug/);
    const wide = await kubectl(['get', 'sniff', '-n', 'demo', '-o', 'wide']);
    expect(wide.out.split('\n')[0]).toMatch(/REASON\s+TUNNEL\s+TYPES\s+COLLECTOR/);
    expect(wide.out).toMatch(/web-debug\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+Geneve\s+\["Ingress","Egress"\]\s+198\.18\.9\.2/);
  });

  it('reports a selector that matches nothing as a condition, and describe shows it with its event', async () => {
    await eventually(async () => {
      const r = await kubectl(['get', 'sniffpolicy', '-n', 'demo', 'web-debug', '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].reason}']);
      return r.out === 'NoPodsSelected';
    });
    const d = await kubectl(['describe', 'sniffpolicy', '-n', 'demo', 'web-debug']);
    expect(d.code).toBe(0);
    expect(d.out).toMatch(/Conditions:/);
    expect(d.out).toMatch(/NoPodsSelected/);
    expect(d.out).toMatch(/Events:[\s\S]*NoPodsSelected/);
  });

  it('streams changes with get -w', async () => {
    const w = execa('kubectl', ['--kubeconfig', kubeconfig, 'get', 'sniffpolicies', '-n', 'demo', '-w', '--output-watch-events'], { reject: false, timeout: 20_000 });
    let seen = '';
    w.stdout?.on('data', (d: Buffer) => (seen += d.toString()));
    await eventually(async () => seen.includes('web-debug'));
    expect((await kubectl(['apply', '-f', '-'], policy('watched', { podSelector: {}, collector: { address: '198.18.9.2' } }))).code).toBe(0);
    await eventually(async () => /ADDED\s+watched/.test(seen));
    w.kill('SIGINT');
    await w;
  });

  it('deletes a policy', async () => {
    const r = await kubectl(['delete', 'sniffpolicy', '-n', 'demo', 'watched']);
    expect(r.code).toBe(0);
    expect((await kubectl(['get', 'sniffpolicy', '-n', 'demo', 'watched'])).err).toMatch(/NotFound|not found/);
  });
});

describe('kubectl apply refuses a bad policy, naming the field', () => {
  const base = { podSelector: { matchLabels: { app: 'web' } }, collector: { address: '198.18.9.2' } };
  const table: { description: string; spec: Record<string, unknown>; field: string }[] = [
    { description: 'an invalid CIDR', spec: { ...base, filter: { cidrs: ['10.0.0.0/33'] } }, field: 'spec.filter.cidrs[0]' },
    { description: 'a port out of range', spec: { ...base, filter: { ports: [{ port: 70000 }] } }, field: 'spec.filter.ports[0].port' },
    { description: 'endPort below port', spec: { ...base, filter: { ports: [{ port: 9000, endPort: 80 }] } }, field: 'spec.filter.ports[0].endPort' },
    { description: 'an unknown protocol', spec: { ...base, filter: { protocols: ['QUIC'] } }, field: 'spec.filter.protocols[0]' },
    { description: 'a snap length above 65535', spec: { ...base, snapLength: 65536 }, field: 'spec.snapLength' },
    { description: 'a VNI too large', spec: { ...base, tunnel: { protocol: 'Geneve', vni: 16_777_216 } }, field: 'spec.tunnel.vni' },
    { description: 'both a collector address and a service', spec: { ...base, collector: { address: '198.18.9.2', service: { name: 'c' } } }, field: 'spec.collector' },
    { description: 'an MTU out of range', spec: { ...base, mtu: 1000 }, field: 'spec.mtu' },
  ];
  it.each(table)('$description', async ({ spec, field }) => {
    const r = await kubectl(['apply', '-f', '-'], policy('bad', spec));
    expect(r.code, r.all).not.toBe(0);
    expect(r.err).toContain(field);
    expect((await kubectl(['get', 'sniffpolicy', '-n', 'demo', 'bad'])).code).not.toBe(0);
  });

  it('writes nothing for an unknown field and says which', async () => {
    const r = await kubectl(['apply', '-f', '-'], policy('bad', { ...base, snaplength: 5 }));
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/snaplength/);
  });

  it('keeps its own printout readable (an error, not a stack)', async () => {
    const r = await kubectl(['apply', '-f', '-'], policy('bad', { ...base, filter: { ports: [{ port: 9000, endPort: 80 }] } }));
    expect(r.err).toMatch(/endPort must be greater than or equal to port/);
    await writeFile(join(dir, 'last-error.txt'), r.err);
  });
});
