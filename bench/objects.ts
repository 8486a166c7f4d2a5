/**
 * What a SniffAssignment costs the real kube-apiserver: creates per second of
 * the controller's work orders as they are (one pod each, as at 1,000 nodes,
 * 30,000 pods and 100 policies) against the same number of bytes in ten times
 * fewer, larger objects (more pods in each, for the configs of the ten). It
 * decides between more small objects and fewer large ones (say, one per
 * node): if the rate of the large objects is close to that of the small, the
 * server's cost is per object and folding objects pays; if it is a tenth, the
 * cost is per byte and it does not.
 *
 *   flock /run/lock/podtap-bench.lock npm exec -- node bench/objects.ts [--objects 3000] [--rounds 2]
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { API_VERSION, ASSIGNMENT_KIND, DEFAULT_INSTALL_NAMESPACE, PodtapResources, assignmentLabels, assignmentName, captureConfig, SniffPolicySpecSchema, type SniffAssignment } from '../src/api/index.ts';
import { KubeClient, loadKubeConfig, Resources, type KubeObject } from '../src/k8s/index.ts';
import { startApiServer } from '../test/helpers/apiserver.ts';
import { pool } from './pool.ts';
import { enterPrivateNamespace } from './privatens.ts';

if (!(await enterPrivateNamespace(import.meta.filename))) process.exit();

const { values: args } = parseArgs({ options: { objects: { type: 'string', default: '3000' }, rounds: { type: 'string', default: '2' }, concurrency: { type: 'string', default: '64' } } });
const OBJECTS = Number(args.objects);
const ROUNDS = Number(args.rounds);
const CONCURRENCY = Number(args.concurrency);
/** How many small objects one large one stands for. */
const FOLD = 10;

function assignment(i: number, pods: number, tag: string): SniffAssignment {
  const node = `node-${i}`;
  return {
    apiVersion: API_VERSION,
    kind: ASSIGNMENT_KIND,
    metadata: { name: assignmentName(`team-${tag}`, 'web', node), namespace: DEFAULT_INSTALL_NAMESPACE, labels: assignmentLabels(`team-${tag}`, 'web', node) },
    spec: {
      nodeName: node,
      policy: { namespace: `team-${tag}`, name: 'web', uid: '8a4c1f0e-3b7d-4e2a-9c61-5d0f2b7e9a13', generation: 1, creationTimestamp: '2026-12-06T09:00:00Z' },
      config: captureConfig(SniffPolicySpecSchema.parse({ podSelector: { matchLabels: { app: 'web' } }, collector: { address: '198.18.9.2' } }), { address: '198.18.9.2', port: 6081 }),
      pods: Array.from({ length: pods }, (_, p) => ({ name: `pod-${i}-${p}`, uid: `0d9e6c2a-5f1b-4c7e-8a3d-${String(i * 100 + p).padStart(12, '0')}`, ips: [`198.18.${(i >> 8) & 255}.${i & 255}`] })),
      limits: { maxPackets: 0, maxBytes: 0 },
      stopped: false,
    },
  };
}

// the folded object: as many bytes as FOLD small ones (more pods in place of their configs)
const smallBytes = JSON.stringify(assignment(0, 1, 'x')).length;
let foldedPods = FOLD;
while (JSON.stringify(assignment(0, foldedPods, 'x')).length < FOLD * smallBytes) foldedPods++;

const api = await startApiServer();
const runs: { shape: string; objects: number; podsEach: number; bytesEach: number; seconds: number; perSecond: number; apiserverCpuSeconds: number }[] = [];
try {
  await api.installCrds();
  const client = new KubeClient(loadKubeConfig(api.kubeconfig), { timeoutMs: 120_000 });
  await client.create(Resources.namespaces, { metadata: { name: DEFAULT_INSTALL_NAMESPACE } });
  const cpu = async () => {
    const f = (await readFile(`/proc/${api.pid()}/stat`, 'utf8')).split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in clock ticks of 1/100 s
  };
  for (let r = 0; r < ROUNDS; r++) {
    for (const [shape, objects, podsEach] of [['small', OBJECTS, 1], ['folded', OBJECTS / FOLD, foldedPods]] as const) {
      const tag = `${shape}-${r}`;
      const bytesEach = JSON.stringify(assignment(0, podsEach, tag)).length;
      const c0 = await cpu();
      const t0 = performance.now();
      await pool(Array.from({ length: objects }, (_, i) => i), CONCURRENCY, async (i) => {
        await client.create(PodtapResources.sniffAssignments, assignment(i, podsEach, tag) as unknown as KubeObject);
      });
      const seconds = (performance.now() - t0) / 1000;
      const run = { shape, objects, podsEach, bytesEach, seconds: Number(seconds.toFixed(2)), perSecond: Math.round(objects / seconds), apiserverCpuSeconds: Number(((await cpu()) - c0).toFixed(1)) };
      console.error(`bench: ${JSON.stringify(run)}`);
      runs.push(run);
    }
  }
  client.close();
} finally {
  await api.stop();
}
const result = { date: new Date().toISOString(), cpus: (await execa('nproc')).stdout, uptime: (await execa('uptime')).stdout.trim(), concurrency: CONCURRENCY, runs };
console.log(`\nkube-apiserver creates of SniffAssignments, ${CONCURRENCY} in flight; ${result.uptime}`);
console.table(runs.map((r) => ({ shape: r.shape, objects: r.objects, 'pods each': r.podsEach, 'bytes each': r.bytesEach, s: r.seconds, 'objects/s': r.perSecond, 'pods/s': r.perSecond * r.podsEach, 'server CPU s': r.apiserverCpuSeconds })));
const dir = join(import.meta.dirname, 'results');
await mkdir(dir, { recursive: true });
const file = join(dir, `objects-${result.date.replace(/[:.]/g, '-')}.json`);
await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
console.log(`saved ${file}`);
