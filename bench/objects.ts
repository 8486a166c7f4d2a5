/**
 * What the controller's work orders cost the real kube-apiserver, in the
 * shape it now stores them: one SniffNodeAssignment per node. At 1,000 nodes,
 * 30,000 pods and 100 policies a node runs 30 pods of 10 policies, so each
 * object holds 10 entries of 3 pods, with one capture config the entries share
 * ("node") or ten distinct ones ("node, 10 configs"). Against them, the same
 * bytes as the "node" objects in as many small objects as that takes, one
 * entry and one pod each ("small"): what storing an object per (policy, node),
 * as podtap 0.1 did, cost the server (only the chart's CRDs are installed, so
 * the small objects are node objects too; the per-object work is the same).
 * Creates per second and the server's CPU per object, CONCURRENCY writes in
 * flight, the objects built as the controller builds them
 * (foldNodeAssignments).
 *
 *   flock /run/lock/podtap-bench.lock npm exec -- node bench/objects.ts [--objects 1000] [--rounds 2] [--concurrency 64] [--profile SECONDS]
 *
 * --profile: a CPU profile of kube-apiserver for the first SECONDS of each
 * shape's first round (its /debug/pprof), saved beside the JSON and its top
 * functions printed with `go tool pprof -top`: where the server's time per
 * object goes.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { DEFAULT_INSTALL_NAMESPACE, PodtapResources, captureConfig, SniffPolicySpecSchema, type SniffAssignmentSpec, type SniffNodeAssignment } from '../src/api/index.ts';
import { KubeClient, loadKubeConfig, Resources, type KubeObject } from '../src/k8s/index.ts';
import { startApiServer } from '../test/helpers/apiserver.ts';
import { nodeAssignmentObjects } from '../test/helpers/assignments.ts';
import { pool } from './pool.ts';
import { cpuSeconds } from './proc.ts';
import { helpFromHeader } from './help.ts';
import { enterPrivateNamespace } from './privatens.ts';

helpFromHeader(import.meta.filename);
if (!(await enterPrivateNamespace(import.meta.filename))) process.exit();

const { values: args } = parseArgs({ options: { objects: { type: 'string', default: '1000' }, rounds: { type: 'string', default: '2' }, concurrency: { type: 'string', default: '64' }, profile: { type: 'string' } } });
/** Node objects per node shape (one per node). */
const OBJECTS = Number(args.objects);
const ROUNDS = Number(args.rounds);
const CONCURRENCY = Number(args.concurrency);
/** seconds of CPU profile per shape, or 0 for none */
const PROFILE = Number(args.profile ?? 0);
for (const [name, v] of [['--objects', OBJECTS], ['--rounds', ROUNDS], ['--concurrency', CONCURRENCY], ['--profile', PROFILE]] as const) {
  if (!Number.isInteger(v) || v < (name === '--profile' ? 0 : 1)) throw new Error(`bench/objects: ${name} takes a whole number${name === '--profile' ? '' : ' from 1'}, not ${String(v)}`);
}
const stamp = new Date().toISOString();
const dir = join(import.meta.dirname, 'results');
const base = `objects-${stamp.replace(/[:.]/g, '-')}`;
/** 1,000 nodes, 30,000 pods, 100 policies: 10 policies with 3 pods each on every node. */
const ENTRIES = 10;
const PODS = 3;

interface Shape {
  name: string;
  entries: number;
  pods: number;
  /** distinct configs in an object */
  configs: number;
}

/** The assignment of policy @j on @node, its config one of @configs. */
function spec(node: string, i: number, j: number, pods: number, configs: number): SniffAssignmentSpec {
  const k = j % configs;
  return {
    nodeName: node,
    policy: { namespace: `team-${j}`, name: 'web', uid: `8a4c1f0e-3b7d-4e2a-9c61-${String(j).padStart(12, '0')}`, generation: 1, creationTimestamp: '2026-12-06T09:00:00Z' },
    config: captureConfig(SniffPolicySpecSchema.parse({ podSelector: { matchLabels: { app: 'web' } }, collector: { address: '198.18.9.2' }, filter: { ports: [{ port: 8000 + k }] } }), { address: '198.18.9.2', port: 6081 }),
    pods: Array.from({ length: pods }, (_, p) => ({
      name: `web-5d8f7c9b4-${String(i * 1000 + j * 10 + p).padStart(5, '0')}`,
      uid: `0d9e6c2a-5f1b-4c7e-8a3d-${String(i * 1000 + j * 10 + p).padStart(12, '0')}`,
      ips: [`198.18.${(i >> 8) & 255}.${i & 255}`],
    })),
    limits: { maxPackets: 0, maxBytes: 0 },
    stopped: false,
  };
}

/** Node @i's object of @shape, named for @tag (each shape and round writes its own). */
function nodeObject(shape: Shape, tag: string, i: number): SniffNodeAssignment {
  const node = `${tag}-node-${i}`;
  const objs = nodeAssignmentObjects(DEFAULT_INSTALL_NAMESPACE, node, Array.from({ length: shape.entries }, (_, j) => spec(node, i, j, shape.pods, shape.configs)));
  if (objs.length !== 1) throw new Error(`${shape.name}: ${objs.length} objects for one node`);
  return objs[0]!;
}

const bytesOf = (shape: Shape) => JSON.stringify(nodeObject(shape, 'x', 0)).length;
const NODE: Shape = { name: 'node', entries: ENTRIES, pods: PODS, configs: 1 };
const NODE_CONFIGS: Shape = { name: 'node, 10 configs', entries: ENTRIES, pods: PODS, configs: ENTRIES };
const SMALL: Shape = { name: 'small', entries: 1, pods: 1, configs: 1 };
/** as many small objects as hold the bytes of OBJECTS node objects */
const SMALL_OBJECTS = Math.round((OBJECTS * bytesOf(NODE)) / bytesOf(SMALL));
const PLAN: [Shape, number][] = [[NODE, OBJECTS], [NODE_CONFIGS, OBJECTS], [SMALL, SMALL_OBJECTS]];

const api = await startApiServer({ profiling: PROFILE > 0 });
/** kube-apiserver's CPU profile over the next PROFILE seconds, into bench/results/@name */
async function profileFor(name: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = join(dir, name);
  await api.profile(PROFILE, file);
  return file;
}
const profiles: { shape: string; file: string }[] = [];
const runs: { shape: string; objects: number; entriesEach: number; podsEach: number; configsEach: number; bytesEach: number; seconds: number; perSecond: number; apiserverCpuSeconds: number; cpuMsPerObject: number }[] = [];
try {
  await api.installCrds();
  const client = new KubeClient(loadKubeConfig(api.kubeconfig), { timeoutMs: 120_000 });
  await client.create(Resources.namespaces, { metadata: { name: DEFAULT_INSTALL_NAMESPACE } });
  const cpu = () => cpuSeconds(api.pid());
  for (let r = 0; r < ROUNDS; r++) {
    for (const [shape, objects] of PLAN) {
      const tag = `${shape.name.replace(/\W+/g, '-')}-${r}`;
      const profile = PROFILE > 0 && r === 0 ? profileFor(`${base}-${tag}.pprof`) : undefined;
      // (awaited after the writes; until then a failure must not be an unhandled
      // rejection, which ends the process past the finally that stops the server)
      profile?.catch(() => undefined);
      const c0 = await cpu();
      const t0 = performance.now();
      await pool(Array.from({ length: objects }, (_, i) => i), CONCURRENCY, async (i) => {
        await client.create(PodtapResources.sniffNodeAssignments, nodeObject(shape, tag, i) as unknown as KubeObject);
      });
      const seconds = (performance.now() - t0) / 1000;
      const cpuSeconds = (await cpu()) - c0;
      const run = {
        shape: shape.name,
        objects,
        entriesEach: shape.entries,
        podsEach: shape.entries * shape.pods,
        configsEach: shape.configs,
        bytesEach: bytesOf(shape),
        seconds: Number(seconds.toFixed(2)),
        perSecond: Math.round(objects / seconds),
        apiserverCpuSeconds: Number(cpuSeconds.toFixed(1)),
        cpuMsPerObject: Number(((cpuSeconds * 1000) / objects).toFixed(2)),
      };
      console.error(`bench: ${JSON.stringify(run)}`);
      runs.push(run);
      if (profile) profiles.push({ shape: shape.name, file: await profile });
    }
  }
  client.close();
} finally {
  await api.stop();
}
const result = { date: stamp, cpus: (await execa('nproc')).stdout, uptime: (await execa('uptime')).stdout.trim(), concurrency: CONCURRENCY, runs };
console.log(`\nkube-apiserver creates of SniffNodeAssignments, ${CONCURRENCY} in flight; ${result.uptime}`);
console.table(
  runs.map((r) => ({
    shape: r.shape,
    objects: r.objects,
    'entries each': r.entriesEach,
    'pods each': r.podsEach,
    'configs each': r.configsEach,
    'bytes each': r.bytesEach,
    s: r.seconds,
    'objects/s': r.perSecond,
    'server CPU s': r.apiserverCpuSeconds,
    'CPU ms/object': r.cpuMsPerObject,
  })),
);
for (const p of profiles) {
  const top = await execa('go', ['tool', 'pprof', '-top', '-nodecount=30', p.file], { reject: false });
  console.log(`\nkube-apiserver's CPU while creating "${p.shape}" objects (${p.file}):\n${top.exitCode === 0 ? top.stdout : top.stderr}`);
}
await mkdir(dir, { recursive: true });
const file = join(dir, `${base}.json`);
await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
console.log(`saved ${file}`);
