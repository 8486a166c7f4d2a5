/**
 * Control-plane benchmark (root for part 2; inside a private network namespace):
 *
 *  1. Convergence: 1,000 nodes, 30,000 running pods and 100 policies on the
 *     embedded API; the controller (a separate process) from the moment the
 *     policies are applied until every expected SniffAssignment is written.
 *     Its memory: peak RSS (VmHWM). Goal: < 5 s, < 300 MB.
 *  2. Time from `apply` of a policy to the first mirrored packet at the
 *     collector's interface, on a lab node with pods pinging, with a cold and
 *     a warm compile cache. Goal: < 2 s cold, < 0.5 s warm.
 *
 *   npm exec -- node bench/controlplane.ts [--rounds 3]
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { createClusterState, createHandler, createHttpServer, defaultWriteOptions, writeKubeconfig } from '@podtap/devcluster';
import { CRD_DIR, Lab } from '../test/lab/cluster.ts';
import { NODE_BIN, PODTAP_MAIN } from '../test/lab/netns.ts';
import { silentLogger } from '../src/util/log.ts';
import { enterPrivateNamespace } from './privatens.ts';

if (!(await enterPrivateNamespace(import.meta.filename))) process.exit();

const { values: args } = parseArgs({ options: { rounds: { type: 'string', default: '3' } } });
const ROUNDS = Number(args.rounds);
const NODES = 1000;
const PODS = 30_000;
const POLICIES = 100;
// the controller runs with the V8 flags the chart gives it
const CHART_VALUES = parseYaml(await readFile(join(import.meta.dirname, '../charts/podtap/values.yaml'), 'utf8')) as { controller: { nodeOptions?: string } };
const CONTROLLER_NODE_OPTIONS = CHART_VALUES.controller.nodeOptions ?? '';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

async function rssPeakMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

/** One convergence run: seed, start the controller, apply 100 policies, wait. */
async function convergence(): Promise<{ ms: number; assignments: number; rssMb: number }> {
  const opts = { logger: silentLogger };
  const state = createClusterState(opts);
  const server = createHttpServer(createHandler(state, opts, () => 'x'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const dir = await mkdtemp(join(tmpdir(), 'podtap-bench-cp-'));
  const kubeconfig = join(dir, 'kubeconfig');
  await writeKubeconfig(kubeconfig, url);
  const wo = { ...defaultWriteOptions(), fieldManager: 'bench' };
  const def = (g: string, v: string, r: string) => state.registry.get(g, v, r)!;
  // the CRDs, through the API's own write path (seeding by HTTP would measure the seeding)
  for (const f of ['sniffpolicies.podtap.io.yaml', 'sniffassignments.podtap.io.yaml']) {
    for (const doc of parseAllDocuments(await readFile(join(CRD_DIR, f), 'utf8'))) {
      const obj = doc.toJS() as object | null;
      if (obj) state.api.create(def('apiextensions.k8s.io', 'v1', 'customresourcedefinitions'), undefined, obj, wo);
    }
  }
  const teams = POLICIES;
  for (let t = 0; t < teams; t++) state.api.create(def('', 'v1', 'namespaces'), undefined, { metadata: { name: `team-${t}` } }, wo);
  for (let i = 0; i < NODES; i++) {
    state.api.create(def('', 'v1', 'nodes'), undefined, { metadata: { name: `node-${i}` }, status: { conditions: [{ type: 'Ready', status: 'True' }] } }, wo);
  }
  // 300 pods per namespace, each namespace's spread over 300 nodes; a third
  // of them app=web: every policy selects 100 pods on 100 nodes
  const nodeOf = (i: number) => (Math.floor(i / teams) * 137 + (i % teams)) % NODES;
  for (let i = 0; i < PODS; i++) {
    const ns = `team-${i % teams}`;
    const name = `pod-${i}`;
    state.api.create(def('', 'v1', 'pods'), ns, {
      metadata: { name, labels: { app: i % 3 === 0 ? 'web' : 'other' } },
      spec: { nodeName: `node-${nodeOf(i)}`, containers: [{ name: 'c', image: 'registry.invalid/x:1' }] },
    }, wo);
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    state.api.update(def('', 'v1', 'pods'), ns, name, {
      metadata: { name, namespace: ns },
      status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
    }, 'status', wo);
  }
  // expected assignments: one per (policy, node with a selected pod)
  const expected = new Set<string>();
  for (let i = 0; i < PODS; i += 3) expected.add(`${i % teams}/${nodeOf(i)}`);

  const ctl = execa(NODE_BIN, [PODTAP_MAIN, 'controller', '--kubeconfig', kubeconfig, '--metrics-addr', '', '--leader-elect=false', '--workers', '8'], {
    reject: false, env: { ...process.env, PODTAP_LOG_LEVEL: 'warn', NODE_OPTIONS: CONTROLLER_NODE_OPTIONS },
  });
  // wait until the controller has synced its informers (it writes nothing without policies)
  await new Promise((r) => setTimeout(r, 4000));
  const assignDef = def('podtap.io', 'v1alpha1', 'sniffassignments');
  const count = () => state.api.list(assignDef, undefined, { labelSelector: [], fieldSelector: [] }).items.length;
  const t0 = performance.now();
  for (let t = 0; t < POLICIES; t++) {
    state.api.create(def('podtap.io', 'v1alpha1', 'sniffpolicies'), `team-${t}`, {
      apiVersion: 'podtap.io/v1alpha1', kind: 'SniffPolicy', metadata: { name: 'web', namespace: `team-${t}` },
      spec: { podSelector: { matchLabels: { app: 'web' } }, collector: { address: '198.18.9.2' } },
    }, wo);
  }
  let n = 0;
  while ((n = count()) < expected.size && performance.now() - t0 < 120_000) await new Promise((r) => setTimeout(r, 20));
  const ms = performance.now() - t0;
  const rssMb = await rssPeakMb(ctl.pid!);
  ctl.kill('SIGTERM');
  await ctl;
  state.store.closeAll();
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  await rm(dir, { recursive: true, force: true });
  if (n < expected.size) throw new Error(`only ${n} of ${expected.size} assignments after 120 s`);
  return { ms, assignments: n, rssMb };
}

/** Apply a policy in a lab with traffic flowing; ms until the first tunnel packet. */
async function firstPacket(lab: Lab, name: string): Promise<number> {
  const td = execa('nsenter', [`--net=/run/netns/${lab.topo.collector.ns}`, 'tcpdump', '-i', 'eth0', '-c', '1', '-tt', '-n', '--immediate-mode', 'udp', 'port', '6081'], { reject: false });
  await new Promise((r) => setTimeout(r, 700)); // tcpdump listening
  const t0 = Date.now();
  await execa('kubectl', ['--kubeconfig', lab.kubeconfig, 'apply', '-f', '-'], {
    input: JSON.stringify({
      apiVersion: 'podtap.io/v1alpha1', kind: 'SniffPolicy', metadata: { name, namespace: 'demo' },
      spec: { podSelector: { matchLabels: { app: 'web' } }, collector: { address: lab.topo.collector.ip4 } },
    }),
  });
  const r = await td;
  const ts = Number(/^(\d+\.\d+)/m.exec(String(r.stdout))?.[1] ?? NaN);
  await execa('kubectl', ['--kubeconfig', lab.kubeconfig, 'delete', 'sniffpolicy', '-n', 'demo', name, '--wait=true']);
  await new Promise((r2) => setTimeout(r2, 1500)); // detached everywhere
  return ts * 1000 - t0;
}

async function firstPackets(): Promise<{ cold: number[]; warm: number[] }> {
  const cache = await mkdtemp(join(tmpdir(), 'podtap-bench-cache-'));
  const lab = await Lab.start({ pods: [{ namespace: 'demo', name: 'web-1', labels: { app: 'web' } }, { namespace: 'demo', name: 'db-1', labels: { app: 'db' } }] });
  const out = { cold: [] as number[], warm: [] as number[] };
  const captures = await mkdtemp(join(tmpdir(), 'podtap-bench-col-'));
  try {
    lab.startCollector(captures);
    lab.startController();
    // the agent compiles into a cache of its own, which each cold round empties
    const agent = execa('nsenter', [`--net=/run/netns/${lab.topo.node}`, NODE_BIN, PODTAP_MAIN, 'agent', '--node', lab.nodeName, '--kubeconfig', lab.kubeconfig, '--metrics-addr', '', '--report-interval', '1'], {
      reject: false, env: { ...process.env, PODTAP_CACHE_DIR: cache, PODTAP_LOG_LEVEL: 'warn' },
    });
    const ping = execa('nsenter', [`--net=/run/netns/${lab.pods[0]!.netns}`, 'ping', '-q', '-i', '0.005', lab.pods[1]!.ip4], { reject: false });
    await new Promise((r) => setTimeout(r, 2000));
    for (let i = 0; i < ROUNDS; i++) {
      await rm(cache, { recursive: true, force: true });
      await mkdir(cache, { recursive: true });
      out.cold.push(await firstPacket(lab, `cold-${i}`));
      out.warm.push(await firstPacket(lab, `warm-${i}`));
    }
    ping.kill('SIGINT');
    agent.kill('SIGTERM');
    await Promise.all([ping, agent]);
  } finally {
    await lab.stop();
    await rm(cache, { recursive: true, force: true });
    await rm(captures, { recursive: true, force: true });
  }
  return out;
}

const conv: { ms: number; assignments: number; rssMb: number }[] = [];
for (let i = 0; i < ROUNDS; i++) {
  console.error(`bench: convergence round ${i + 1}/${ROUNDS} ...`);
  conv.push(await convergence());
}
console.error('bench: first packet, cold and warm compile cache ...');
const fp = await firstPackets();
const result = {
  date: new Date().toISOString(),
  cpus: (await execa('nproc')).stdout,
  size: { nodes: NODES, pods: PODS, policies: POLICIES, assignments: conv[0]?.assignments },
  convergence: { nodeOptions: CONTROLLER_NODE_OPTIONS, runs: conv, medianMs: Math.round(median(conv.map((c) => c.ms))), peakRssMb: Math.round(Math.max(...conv.map((c) => c.rssMb))) },
  firstPacketMs: { cold: fp.cold.map(Math.round), warm: fp.warm.map(Math.round), medianCold: Math.round(median(fp.cold)), medianWarm: Math.round(median(fp.warm)) },
};
console.log('\nController convergence (1,000 nodes, 30,000 pods, 100 policies)');
console.table({ 'apply -> all assignments written (ms, median)': result.convergence.medianMs, assignments: result.size.assignments, 'controller peak RSS (MB)': result.convergence.peakRssMb, 'goal (ms / MB)': '5000 / 300', 'controller NODE_OPTIONS (chart)': CONTROLLER_NODE_OPTIONS || '-' });
console.log('\nPolicy apply -> first mirrored packet at the collector (ms)');
console.table({ cold: { median: result.firstPacketMs.medianCold, runs: result.firstPacketMs.cold.join(' '), goal: 2000 }, warm: { median: result.firstPacketMs.medianWarm, runs: result.firstPacketMs.warm.join(' '), goal: 500 } });
const dir = join(import.meta.dirname, 'results');
await mkdir(dir, { recursive: true });
const file = join(dir, `controlplane-${result.date.replace(/[:.]/g, '-')}.json`);
await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
console.log(`\nsaved ${file}`);
