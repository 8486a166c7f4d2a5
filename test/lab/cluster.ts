/**
 * A whole podtap installation on one machine, for the demo, the end-to-end
 * tests and the benchmarks: a node and its pods in network namespaces, the
 * embedded Kubernetes API (a development stand-in), the controller, the node
 * agent and a collector — the real processes, talking the real protocols.
 *
 *   this namespace  198.18.250.1 --veth-- 198.18.250.2  node (agent)
 *   (API, controller)                      | vpt1..N --- pods
 *                                          | up0 ------- collector
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { parseAllDocuments } from 'yaml';
import { startApiServer, writeKubeconfig } from '@podtap/devcluster';
import { isAlreadyExists, KubeClient, loadKubeConfig, Resources, type KubeObject, type ResourceRef } from '../../src/k8s/index.ts';
import { PodtapResources } from '../../src/api/index.ts';
import { silentLogger, type Logger } from '../../src/util/log.ts';
import { createTopology, inNs, NODE_BIN, PODTAP_MAIN, sh, type Topology } from './netns.ts';

/** The networks the lab's collectors live in (COMMON: test hosts use these only). */
export const LAB_COLLECTOR_NETWORKS = ['198.18.0.0/15', '2001:db8::/32'];

export const CRD_DIR = fileURLToPath(new URL('../../charts/podtap/crds/', import.meta.url));

export interface LabPodSpec {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  /** false: the network namespace exists, the Pod object comes later (createPod). */
  create?: boolean;
}

export interface LabPod extends LabPodSpec {
  netns: string;
  hostIf: string;
  ip4: string;
  ip6: string;
}

/** The Kubernetes API a lab talks to: the embedded stand-in by default, or one a test brings (the real kube-apiserver). */
export interface LabApi {
  url: string;
  /** Its admin kubeconfig; absent: the lab writes one for the URL (the stand-in needs no credentials). */
  kubeconfig?: string;
  close(): Promise<void>;
}

export interface LabOptions {
  pods: LabPodSpec[];
  /** Start the API on @host (an address of this namespace the node can reach); default: the embedded stand-in. */
  api?: (host: string) => Promise<LabApi>;
  nodeName?: string;
  podMtu?: number;
  uplinkMtu?: number;
  /** Port for the API server (0: any). */
  apiPort?: number;
  logger?: Logger;
}

const CRD_REF: ResourceRef = { group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions', kind: 'CustomResourceDefinition', namespaced: false };
const REFS: Record<string, ResourceRef> = {
  Namespace: { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  Node: { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false },
  Pod: { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true },
  ServiceAccount: { group: '', version: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true },
};

/** A child process of the lab (agent, collector, controller) with its output kept. */
export interface LabProcess {
  proc: ResultPromise;
  output(): string;
}

function spawnPodtap(netns: string | undefined, args: string[], env: Record<string, string> = {}): LabProcess {
  const cmd = [NODE_BIN, PODTAP_MAIN, ...args];
  const [file, argv] = netns ? ['nsenter', [`--net=/run/netns/${netns}`, ...cmd]] : [cmd[0]!, cmd.slice(1)];
  const proc = execa(file, argv, { reject: false, all: true, buffer: false, env: { ...process.env, PODTAP_LOG_LEVEL: process.env.PODTAP_LOG_LEVEL ?? 'info', ...env } });
  let out = '';
  proc.all?.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.length > 4_000_000) out = out.slice(-2_000_000);
  });
  return { proc, output: () => out };
}

export class Lab {
  readonly topo: Topology;
  readonly api: LabApi;
  readonly kubeconfig: string;
  readonly client: KubeClient;
  readonly nodeName: string;
  readonly pods: LabPod[];
  readonly dir: string;
  /** The API server's address on the link to the node. */
  static readonly API_HOST = '198.18.250.1';
  private readonly link: string;
  private readonly log: Logger;
  private procs: LabProcess[] = [];

  private constructor(f: { topo: Topology; api: LabApi; kubeconfig: string; client: KubeClient; nodeName: string; pods: LabPod[]; dir: string; link: string; log: Logger }) {
    this.topo = f.topo;
    this.api = f.api;
    this.kubeconfig = f.kubeconfig;
    this.client = f.client;
    this.nodeName = f.nodeName;
    this.pods = f.pods;
    this.dir = f.dir;
    this.link = f.link;
    this.log = f.log;
  }

  static async start(opts: LabOptions): Promise<Lab> {
    const log = opts.logger ?? silentLogger;
    const topo = await createTopology({ pods: opts.pods.length, podMtu: opts.podMtu ?? 1500, uplinkMtu: opts.uplinkMtu ?? 1500 });
    const link = `pta${topo.prefix.slice(2)}`;
    let api: LabApi | undefined;
    try {
      // the node reaches the API server over a link of its own
      await sh('ip', ['link', 'add', link, 'type', 'veth', 'peer', 'name', 'api0', 'netns', topo.node]);
      await sh('ip', ['addr', 'add', `${Lab.API_HOST}/30`, 'dev', link]);
      await sh('ip', ['link', 'set', link, 'up']);
      await sh('ip', ['-n', topo.node, 'addr', 'add', '198.18.250.2/30', 'dev', 'api0']);
      await sh('ip', ['-n', topo.node, 'link', 'set', 'api0', 'up']);
      api = opts.api ? await opts.api(Lab.API_HOST) : await startApiServer({ host: Lab.API_HOST, port: opts.apiPort ?? 0, logger: log.child({ component: 'devcluster' }) });
      const dir = await mkdtemp(join(tmpdir(), 'podtap-lab-'));
      let kubeconfig = api.kubeconfig;
      if (!kubeconfig) {
        kubeconfig = join(dir, 'kubeconfig');
        await writeKubeconfig(kubeconfig, api.url);
      }
      const client = new KubeClient(loadKubeConfig(kubeconfig));
      const nodeName = opts.nodeName ?? 'node-a';
      const pods: LabPod[] = opts.pods.map((p, i) => ({ ...p, netns: topo.pods[i]!.ns, hostIf: topo.pods[i]!.hostIf, ip4: topo.pods[i]!.ip4, ip6: topo.pods[i]!.ip6 }));
      const lab = new Lab({ topo, api, kubeconfig, client, nodeName, pods, dir, link, log });
      await lab.bootstrap();
      return lab;
    } catch (err) {
      await api?.close();
      await sh('ip', ['link', 'del', link], { reject: false });
      await topo.destroy();
      throw err;
    }
  }

  /** CRDs, namespaces, the node and the pods, as a real cluster would have them. */
  private async bootstrap(): Promise<void> {
    for (const f of (await readdir(CRD_DIR)).filter((n) => n.endsWith('.yaml')).sort()) {
      for (const doc of parseAllDocuments(await readFile(join(CRD_DIR, f), 'utf8'))) {
        const obj = doc.toJS() as KubeObject | null;
        if (obj) await this.client.create(CRD_REF, obj);
      }
    }
    for (const ns of new Set(['podtap-system', ...this.pods.map((p) => p.namespace)])) {
      if (ns !== 'default') await this.client.create(REFS.Namespace!, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
      // a real API server admits a pod only with its ServiceAccount (the controller-manager's job, which no lab runs)
      await this.client.create(REFS.ServiceAccount!, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: ns } }).catch((err: unknown) => {
        if (!isAlreadyExists(err)) throw err;
      });
    }
    // a real API server serves a new CRD a moment after creating it
    for (let i = 0; ; i++) {
      try {
        await this.client.list(PodtapResources.sniffPolicies, { pageSize: 1 });
        await this.client.list(PodtapResources.sniffNodeAssignments, { pageSize: 1 });
        break;
      } catch (err) {
        if (i > 300) throw new Error('the CRDs are not served after 30 s', { cause: err });
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await this.client.create(REFS.Node!, {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: this.nodeName, labels: { 'kubernetes.io/hostname': this.nodeName, 'kubernetes.io/os': 'linux' } },
      status: { addresses: [{ type: 'InternalIP', address: '198.18.9.1' }], conditions: [{ type: 'Ready', status: 'True' }] },
    });
    for (const p of this.pods) if (p.create !== false) await this.createPod(p);
  }

  async createPod(p: LabPod): Promise<void> {
    await this.client.create(REFS.Pod!, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: p.name, namespace: p.namespace, labels: p.labels },
      spec: { nodeName: this.nodeName, containers: [{ name: 'app', image: 'registry.invalid/podtap-lab:1' }] },
    });
    await this.client.patchStatus(REFS.Pod!, p.namespace, p.name, {
      status: { phase: 'Running', hostIP: '198.18.9.1', podIP: p.ip4, podIPs: [{ ip: p.ip4 }, { ip: p.ip6 }], conditions: [{ type: 'Ready', status: 'True' }] },
    });
  }

  async relabel(p: LabPodSpec, labels: Record<string, string>): Promise<void> {
    await this.client.patch(REFS.Pod!, p.namespace, p.name, { metadata: { labels } });
  }

  /** The controller as a process (kill -9-able); policies may name the lab's collector networks (the test ranges). */
  startController(extra: string[] = []): LabProcess {
    const allowed = ['--allowed-collector-cidr', LAB_COLLECTOR_NETWORKS.join(',')];
    const p = spawnPodtap(undefined, ['controller', '--kubeconfig', this.kubeconfig, '--metrics-addr', '', '--leader-elect=false', ...allowed, ...extra]);
    this.procs.push(p);
    return p;
  }

  /** The node agent, in the node's namespace, as root. */
  startAgent(extra: string[] = []): LabProcess {
    // The lab's pods are bare network namespaces (no kubelet, no pod cgroups):
    // the agent finds their veths by address.
    const p = spawnPodtap(this.topo.node, ['agent', '--node', this.nodeName, '--kubeconfig', this.kubeconfig, '--metrics-addr', '', '--report-interval', '1', '--resolve', 'route,bridge,netns', ...extra]);
    this.procs.push(p);
    return p;
  }

  /** A collector behind the node's uplink, writing into @dir. */
  startCollector(dir: string, extra: string[] = []): LabProcess {
    const p = spawnPodtap(this.topo.collector.ns, ['collector', '--listen', `${this.topo.collector.ip4}:6081`, '--out', dir, ...extra]);
    this.procs.push(p);
    return p;
  }

  /** Kill what the lab started, detach everything on the node, remove all. */
  async stop(): Promise<void> {
    for (const p of this.procs) {
      p.proc.kill('SIGTERM');
      const t = setTimeout(() => p.proc.kill('SIGKILL'), 5000);
      await p.proc;
      clearTimeout(t);
    }
    await execa('nsenter', [`--net=/run/netns/${this.topo.node}`, NODE_BIN, PODTAP_MAIN, 'cleanup'], { reject: false });
    await this.api.close();
    await sh('ip', ['link', 'del', this.link], { reject: false });
    await this.topo.destroy();
    // the kubeconfig: the API server it points to is gone
    await rm(this.dir, { recursive: true, force: true });
    this.log.info('lab removed');
  }
}

export { inNs };
