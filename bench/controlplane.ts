/**
 * Control-plane benchmark (root for part 2; inside a private network namespace):
 *
 *  1. Convergence: 1,000 nodes, 30,000 running pods and 100 policies, on the
 *     real kube-apiserver with etcd (test/helpers/apiserver.ts) and on the
 *     embedded stand-in, side by side; the controller (a separate process)
 *     from the moment the policies are applied until every expected
 *     assignment (an entry of a node's SniffNodeAssignment) is written. Its memory: peak RSS (VmHWM). Goal on the
 *     real server: < 5 s, < 300 MB. --nodes/--pods scale it (the stretch:
 *     5,000 nodes, 150,000 pods).
 *  2. Time from `apply` of a policy to the first mirrored packet at the
 *     collector's interface, on a lab node with pods pinging, with a cold and
 *     a warm compile cache. Goal: < 2 s cold, < 0.5 s warm.
 *
 *   flock /run/lock/podtap-bench.lock npm exec -- node bench/controlplane.ts
 *       [--rounds 3] [--api real,embedded] [--nodes 1000 --pods 30000] [--only convergence|first-packet]
 *       [--profile SECONDS]
 *
 * Each convergence run also says who used the machine's CPU while it ran:
 * kube-apiserver, etcd, the controller and this process (its watch of the
 * assignments). --profile: a CPU profile of kube-apiserver for the first
 * SECONDS after the apply of the first real round, saved beside the JSON.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { createClusterState, createHandler, createHttpServer, defaultWriteOptions, writeKubeconfig } from '@podtap/devcluster';
import { KubeClient, loadKubeConfig, Resources, type KubeObject, type ResourceRef } from '../src/k8s/index.ts';
import { AssignmentView, DEFAULT_INSTALL_NAMESPACE, PodtapResources, type SniffNodeAssignment } from '../src/api/index.ts';
import { listAssignments } from '../test/helpers/assignments.ts';
import { startApiServer as startRealApiServer } from '../test/helpers/apiserver.ts';
import { CRD_DIR, LAB_COLLECTOR_NETWORKS, Lab } from '../test/lab/cluster.ts';
import { NODE_BIN, PODTAP_MAIN } from '../test/lab/netns.ts';
import { silentLogger } from '../src/util/log.ts';
import { pool } from './pool.ts';
import { cpuSeconds, rssPeakMb } from './proc.ts';
import { helpFromHeader } from './help.ts';
import { enterPrivateNamespace } from './privatens.ts';

helpFromHeader(import.meta.filename);
if (!(await enterPrivateNamespace(import.meta.filename))) process.exit();

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    api: { type: 'string', default: 'real,embedded' },
    nodes: { type: 'string', default: '1000' },
    pods: { type: 'string', default: '30000' },
    only: { type: 'string', default: '' },
    profile: { type: 'string', default: '0' },
  },
});
/** seconds of kube-apiserver CPU profile in the first real round, or 0 */
const PROFILE = Number(args.profile);
if (!Number.isInteger(PROFILE) || PROFILE < 0) throw new Error(`--profile takes whole seconds, not ${args.profile}`);
const STAMP = new Date().toISOString().replace(/[:.]/g, '-');
const RESULTS = join(import.meta.dirname, 'results');
const ROUNDS = Number(args.rounds);
if (!['', 'convergence', 'first-packet'].includes(args.only)) throw new Error(`--only takes convergence or first-packet, not ${args.only}`);
const NODES = Number(args.nodes);
const PODS = Number(args.pods);
const POLICIES = 100;
/** How long a convergence may take before the run fails (the goal is 5 s; the real server on 2 busy cores takes minutes). */
const CONVERGENCE_TIMEOUT_MS = 600_000;
const APIS = args.api.split(',') as ('real' | 'embedded')[];
for (const a of APIS) if (a !== 'real' && a !== 'embedded') throw new Error(`--api takes real and/or embedded, not ${a}`);
// the controller runs with the V8 flags the chart gives it
const CHART_VALUES = parseYaml(await readFile(join(import.meta.dirname, '../charts/podtap/values.yaml'), 'utf8')) as { controller: { nodeOptions?: string } };
const CONTROLLER_NODE_OPTIONS = CHART_VALUES.controller.nodeOptions ?? '';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** The objects of the convergence world, the same for both APIs. */
function* world(): Generator<{ ref: ResourceRef; namespace?: string; obj: KubeObject; status?: Record<string, unknown> }> {
  const teams = POLICIES;
  // the controller writes the assignments into the install namespace
  yield { ref: Resources.namespaces, obj: { metadata: { name: DEFAULT_INSTALL_NAMESPACE } } };
  for (let t = 0; t < teams; t++) yield { ref: Resources.namespaces, obj: { metadata: { name: `team-${t}` } } };
  for (let i = 0; i < NODES; i++) yield { ref: Resources.nodes, obj: { metadata: { name: `node-${i}` } }, status: { conditions: [{ type: 'Ready', status: 'True' }] } };
  // 300 pods per namespace, each namespace's spread over 300 nodes; a third
  // of them app=web: every policy selects 100 pods on 100 nodes
  for (let i = 0; i < PODS; i++) {
    const ns = `team-${i % teams}`;
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    yield {
      ref: Resources.pods,
      namespace: ns,
      obj: { metadata: { name: `pod-${i}`, namespace: ns, labels: { app: i % 3 === 0 ? 'web' : 'other' } }, spec: { nodeName: `node-${nodeOf(i)}`, containers: [{ name: 'c', image: 'registry.invalid/x:1' }] } } as KubeObject,
      status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
    };
  }
}
const nodeOf = (i: number) => (Math.floor(i / POLICIES) * 137 + (i % POLICIES)) % NODES;
const policyObject = (t: number) => ({
  apiVersion: 'podtap.io/v1alpha1', kind: 'SniffPolicy', metadata: { name: 'web', namespace: `team-${t}` },
  spec: { podSelector: { matchLabels: { app: 'web' } }, collector: { address: '198.18.9.2' } },
});

/** An API with the world in it: the controller's kubeconfig, how to apply the policies and count assignments. */
interface Seeded {
  kubeconfig: string;
  applyPolicies(): Promise<void>;
  /** Once @want assignments are written (or after @timeoutMs): how many there are, and when (performance.now()) they were seen. */
  assignments(want: number, timeoutMs: number): Promise<{ n: number; at: number }>;
  /** CPU time of the API server's processes so far, by process (s; none for the embedded one, which runs in this process). */
  cpu(): Promise<Record<string, number>>;
  /** A CPU profile of the API server over the next @seconds into @file (real only). */
  profile?(seconds: number, file: string): Promise<void>;
  /** RSS of the API's own processes (MB), for context. */
  serverRssMb(): Promise<Record<string, number>>;
  close(): Promise<void>;
}

async function seedEmbedded(dir: string): Promise<Seeded> {
  const opts = { logger: silentLogger };
  const state = createClusterState(opts);
  const server = createHttpServer(createHandler(state, opts, () => 'x'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const kubeconfig = join(dir, 'kubeconfig');
  await writeKubeconfig(kubeconfig, url);
  const wo = { ...defaultWriteOptions(), fieldManager: 'bench' };
  const def = (r: ResourceRef) => state.registry.get(r.group, r.version, r.plural)!;
  // the CRDs and the world through the API's own write path (seeding by HTTP would measure the seeding)
  for (const f of ['sniffpolicies.podtap.io.yaml', 'sniffnodeassignments.podtap.io.yaml']) {
    for (const doc of parseAllDocuments(await readFile(join(CRD_DIR, f), 'utf8'))) {
      const obj = doc.toJS() as object | null;
      if (obj) state.api.create(state.registry.get('apiextensions.k8s.io', 'v1', 'customresourcedefinitions')!, undefined, obj, wo);
    }
  }
  for (const o of world()) {
    state.api.create(def(o.ref), o.namespace, o.obj, wo);
    if (o.status) state.api.update(def(o.ref), o.namespace, o.obj.metadata.name!, { metadata: { name: o.obj.metadata.name, namespace: o.namespace }, status: o.status }, 'status', wo);
  }
  const assignDef = def(PodtapResources.sniffNodeAssignments);
  return {
    kubeconfig,
    async applyPolicies() {
      for (let t = 0; t < POLICIES; t++) state.api.create(def(PodtapResources.sniffPolicies), `team-${t}`, policyObject(t), wo);
    },
    async assignments(want, timeoutMs) {
      const t0 = performance.now();
      let n = 0;
      const entries = () => (state.api.list(assignDef, undefined, { labelSelector: [], fieldSelector: [] }).items as SniffNodeAssignment[]).reduce((sum, o) => sum + (o.spec?.entries?.length ?? 0), 0);
      while ((n = entries()) < want && performance.now() - t0 < timeoutMs) await new Promise((r) => setTimeout(r, 20));
      return { n, at: performance.now() };
    },
    serverRssMb: async () => ({}),
    cpu: async () => ({}),
    async close() {
      state.store.closeAll();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}


async function seedReal(profiling: boolean): Promise<Seeded> {
  const api = await startRealApiServer({ profiling });
  try {
    await api.installCrds();
    const client = new KubeClient(loadKubeConfig(api.kubeconfig), { timeoutMs: 120_000 });
    const t0 = performance.now();
    const sa: ResourceRef = { group: '', version: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true };
    const objs = [...world()];
    // namespaces first, with the ServiceAccount a real server wants for every pod
    await pool(objs.filter((o) => o.ref === Resources.namespaces), 16, async (o) => {
      await client.create(o.ref, o.obj);
      await client.create(sa, { metadata: { name: 'default', namespace: o.obj.metadata.name } });
    });
    // through HTTP as a real cluster's writers would (the admin is exempt from API priority and fairness)
    await pool(objs.filter((o) => o.ref !== Resources.namespaces), 48, async (o) => {
      await client.create(o.ref, o.obj);
      if (o.status) await client.patchStatus(o.ref, o.namespace, o.obj.metadata.name!, { status: o.status });
    });
    console.error(`bench: real API seeded with ${objs.length} objects in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    // Counted from a watch (the view the controller and the agents use), then
    // checked once by a consistent list: polling full lists of 1,000 objects
    // would load the server the run measures.
    const count = async () => (await listAssignments(client, DEFAULT_INSTALL_NAMESPACE)).length;
    let view: AssignmentView | undefined;
    return {
      kubeconfig: api.kubeconfig,
      async applyPolicies() {
        view = new AssignmentView({ client, namespace: DEFAULT_INSTALL_NAMESPACE });
        view.start();
        await view.waitForSync();
        await pool(Array.from({ length: POLICIES }, (_, t) => t), 16, async (t) => {
          await client.create(PodtapResources.sniffPolicies, policyObject(t) as KubeObject);
        });
      },
      async assignments(want, timeoutMs) {
        const t1 = performance.now();
        let shown = t1;
        while (view!.store.size < want && performance.now() - t1 < timeoutMs) {
          await new Promise((r) => setTimeout(r, 20));
          if (performance.now() - shown >= 1000) {
            shown = performance.now();
            console.error(`bench: ${((shown - t1) / 1000).toFixed(0)} s: ${view!.store.size} of ${want} assignments in ${view!.objects.store.size} objects; kube-apiserver CPU ${(await cpuSeconds(api.pid())).toFixed(1)} s`);
          }
        }
        const at = performance.now();
        await view!.stop();
        return { n: await count(), at };
      },
      cpu: async () => ({ 'kube-apiserver': await cpuSeconds(api.pid()), etcd: await cpuSeconds(api.etcdPid()) }),
      profile: (seconds, file) => api.profile(seconds, file),
      serverRssMb: async () => {
        // and the server's mean latency of the controller's writes (apiserver_request_duration_seconds), in ms
        const text = (await api.kubectl(['get', '--raw', '/metrics'])).stdout;
        const lat: Record<string, number> = {};
        const sums = new Map<string, { sum: number; count: number }>();
        for (const m of String(text).matchAll(/^apiserver_request_duration_seconds_(sum|count)\{([^}]*)\} (\S+)/gm)) {
          const l = m[2]!;
          const resource = /resource="([^"]*)"/.exec(l)?.[1];
          if (process.env.PODTAP_BENCH_ALL_REQUESTS === undefined && resource !== 'sniffpolicies' && resource !== 'sniffnodeassignments') continue;
          const key = `${/verb="([^"]*)"/.exec(l)?.[1]} ${resource}${/subresource="(\w+)"/.exec(l)?.[1] ? `/${/subresource="(\w+)"/.exec(l)![1]}` : ''}`;
          const e = sums.get(key) ?? { sum: 0, count: 0 };
          if (m[1] === 'sum') e.sum += Number(m[3]);
          else e.count += Number(m[3]);
          sums.set(key, e);
        }
        for (const [k, e] of sums) if (e.count > 0 && !k.startsWith('WATCH')) lat[`${k} ms`] = Math.round((e.sum / e.count) * 1000);
        if (process.env.PODTAP_BENCH_ALL_REQUESTS !== undefined) for (const [k, e] of sums) if (e.count > 0) lat[`${k} n`] = e.count;
        return { 'kube-apiserver': Math.round(await rssPeakMb(api.pid())), ...lat };
      },
      async close() {
        client.close();
        await api.stop();
      },
    };
  } catch (err) {
    await api.stop();
    throw err;
  }
}

/** One convergence run: seed, start the controller, apply 100 policies, wait. */
async function convergence(api: 'real' | 'embedded', profile: string | undefined): Promise<{ api: string; ms: number; assignments: number; rssMb: number; writes: Record<string, number>; server: Record<string, number>; cpuSeconds: Record<string, number> }> {
  const dir = await mkdtemp(join(tmpdir(), 'podtap-bench-cp-'));
  const seeded = api === 'real' ? await seedReal(profile !== undefined) : await seedEmbedded(dir);
  // expected assignments: one per (policy, node with a selected pod)
  const expected = new Set<string>();
  for (let i = 0; i < PODS; i += 3) expected.add(`${i % POLICIES}/${nodeOf(i)}`);
  const ctl = execa(NODE_BIN, [PODTAP_MAIN, 'controller', '--kubeconfig', seeded.kubeconfig, '--metrics-addr', '127.0.0.1:18080', '--leader-elect=false', '--allowed-collector-cidr', LAB_COLLECTOR_NETWORKS.join(',')], {
    reject: false, all: true, env: { ...process.env, PODTAP_LOG_LEVEL: 'warn', NODE_OPTIONS: CONTROLLER_NODE_OPTIONS },
  });
  try {
    // until the controller has synced its informers (/readyz), then a moment more
    const t = performance.now();
    while ((await fetch('http://127.0.0.1:18080/readyz').then((r) => r.status, () => 0)) !== 200) {
      if (performance.now() - t > 300_000) throw new Error('the controller did not sync in 300 s');
      await new Promise((r) => setTimeout(r, 200));
    }
    console.error(`bench: the controller synced in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    const sum = (c: Record<string, number>) => Object.values(c).reduce((a, b) => a + b, 0);
    const c0 = await seeded.cpu();
    await new Promise((r) => setTimeout(r, 1000));
    if (api === 'real') console.error(`bench: the idle server used ${(sum(await seeded.cpu()) - sum(c0)).toFixed(2)} CPU s in the second before the policies`);
    // who uses the CPU from the apply until the end: the server's processes, the controller, this process
    const cpuNow = async () => ({ ...(await seeded.cpu()), controller: await cpuSeconds(ctl.pid!), bench: (process.cpuUsage().user + process.cpuUsage().system) / 1e6 });
    const cpu0 = await cpuNow();
    const profiled = profile !== undefined && seeded.profile ? seeded.profile(PROFILE, profile) : undefined;
    profiled?.catch(() => undefined); // (awaited below: not an unhandled rejection that skips the finally)
    const t0 = performance.now();
    await seeded.applyPolicies();
    console.error(`bench: ${POLICIES} policies created in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const { n, at } = await seeded.assignments(expected.size, CONVERGENCE_TIMEOUT_MS);
    const ms = at - t0;
    const cpu1 = await cpuNow();
    const cpuUsed = Object.fromEntries(Object.entries(cpu1).map(([k, v]) => [k, Number((v - cpu0[k as keyof typeof cpu0]!).toFixed(2))]));
    const cpuTotal = Number(sum(cpuUsed).toFixed(2));
    await profiled;
    const rssMb = await rssPeakMb(ctl.pid!);
    // what the controller wrote to get there (podtap_controller_assignment_writes_total by operation)
    const metrics = await fetch('http://127.0.0.1:18080/metrics').then((r) => r.text(), () => '');
    const writes: Record<string, number> = {};
    for (const m of metrics.matchAll(/^podtap_controller_assignment_writes_total\{([^}]*)\} (\d+)/gm)) {
      const op = /operation="([^"]+)"/.exec(m[1]!)?.[1] ?? '?';
      const res = /result="([^"]+)"/.exec(m[1]!)?.[1] ?? '?';
      writes[res === 'ok' ? op : `${op} ${res}`] = (writes[res === 'ok' ? op : `${op} ${res}`] ?? 0) + Number(m[2]);
    }
    if (n < expected.size) {
      ctl.kill('SIGTERM');
      const out = await ctl;
      throw new Error(`only ${n} of ${expected.size} assignments after ${CONVERGENCE_TIMEOUT_MS / 1000} s; the controller's last output:\n${String(out.all ?? '').slice(-4000)}`);
    }
    return { api, ms, assignments: n, rssMb, writes, server: await seeded.serverRssMb(), cpuSeconds: { ...cpuUsed, total: cpuTotal } };
  } finally {
    ctl.kill('SIGTERM');
    await ctl;
    await seeded.close();
    await rm(dir, { recursive: true, force: true });
  }
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

const conv: Awaited<ReturnType<typeof convergence>>[] = [];
for (let i = 0; i < (args.only === 'first-packet' ? 0 : ROUNDS); i++) {
  for (const a of APIS) {
    console.error(`bench: convergence on the ${a} API, round ${i + 1}/${ROUNDS} (load: ${(await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')}) ...`);
    const profile = PROFILE > 0 && a === 'real' && i === 0 ? join(RESULTS, `controlplane-${STAMP}-real.pprof`) : undefined;
    if (profile) await mkdir(RESULTS, { recursive: true });
    const c = await convergence(a, profile);
    // each run as it ends: a long invocation that fails later keeps what it measured
    console.error(`bench: ${a}: ${c.assignments} assignments in ${(c.ms / 1000).toFixed(1)} s, controller peak RSS ${Math.round(c.rssMb)} MB, writes ${JSON.stringify(c.writes)}, server ${JSON.stringify(c.server)}, CPU s ${JSON.stringify(c.cpuSeconds)} (of ${((c.ms / 1000) * os.availableParallelism()).toFixed(1)} the cores had)`);
    if (profile) console.error(`bench: kube-apiserver's profile of the first ${PROFILE} s: ${profile} (go tool pprof -top -cum ${profile})`);
    conv.push(c);
  }
}
const fp = args.only === 'convergence' ? undefined : (console.error('bench: first packet, cold and warm compile cache ...'), await firstPackets());
const byApi = (a: string) => conv.filter((c) => c.api === a);
const result = {
  date: new Date().toISOString(),
  cpus: (await execa('nproc')).stdout,
  uptime: (await execa('uptime')).stdout.trim(),
  size: { nodes: NODES, pods: PODS, policies: POLICIES, assignments: conv[0]?.assignments },
  convergence: conv.length > 0 && {
    nodeOptions: CONTROLLER_NODE_OPTIONS,
    runs: conv.map((c) => ({ ...c, ms: Math.round(c.ms), rssMb: Math.round(c.rssMb) })),
    ...Object.fromEntries(APIS.map((a) => [a, { medianMs: Math.round(median(byApi(a).map((c) => c.ms))), peakRssMb: Math.round(Math.max(...byApi(a).map((c) => c.rssMb))) }])),
  },
  firstPacketMs: fp && { cold: fp.cold.map(Math.round), warm: fp.warm.map(Math.round), medianCold: Math.round(median(fp.cold)), medianWarm: Math.round(median(fp.warm)) },
};
if (conv.length > 0) {
  console.log(`\nController convergence (${NODES} nodes, ${PODS} pods, ${POLICIES} policies): apply -> all ${result.size.assignments} assignments written; ${result.uptime}`);
  console.table(Object.fromEntries(APIS.map((a) => [a, {
    'ms (runs)': byApi(a).map((c) => Math.round(c.ms)).join(' '),
    'controller peak RSS MB (runs)': byApi(a).map((c) => Math.round(c.rssMb)).join(' '),
    'API server RSS MB': byApi(a).map((c) => c.server['kube-apiserver'] ?? '-').join(' '),
    'CPU s: server, etcd, controller, bench (runs)': byApi(a).map((c) => [c.cpuSeconds['kube-apiserver'] ?? '-', c.cpuSeconds.etcd ?? '-', c.cpuSeconds.controller, c.cpuSeconds.bench].join('/')).join(' '),
    'goal (ms / MB)': '5000 / 300',
  }])));
  console.log(`controller NODE_OPTIONS (chart): ${CONTROLLER_NODE_OPTIONS || '-'}`);
}
if (fp) {
  console.log('\nPolicy apply -> first mirrored packet at the collector (ms)');
  console.table({ cold: { median: fp && result.firstPacketMs!.medianCold, runs: result.firstPacketMs!.cold.join(' '), goal: 2000 }, warm: { median: result.firstPacketMs!.medianWarm, runs: result.firstPacketMs!.warm.join(' '), goal: 500 } });
}
await mkdir(RESULTS, { recursive: true });
const file = join(RESULTS, `controlplane-${STAMP}.json`);
await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
console.log(`\nsaved ${file}`);
