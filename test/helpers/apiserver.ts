/**
 * A real etcd and kube-apiserver for a test file, as controller-runtime's
 * envtest gives Go projects: started once (beforeAll), on free loopback ports
 * of the test's network namespace, with the cluster's flags
 * (scripts/cluster/controlplane.ts: TLS, Node and RBAC authorizers,
 * ServiceAccount token signing, the default admission plugins with
 * ValidatingAdmissionPolicy), an admin kubeconfig, and kubeconfigs for any
 * ServiceAccount (a token from the TokenRequest API, as a pod would get).
 *
 * The programs are those scripts/cluster/build.sh builds (cached by version;
 * scripts/test.sh builds them before the suite).
 *
 *   const api = await startApiServer();            // beforeAll
 *   await api.installCrds();                       // podtap's CRDs, Established
 *   const client = api.client();                   // a KubeClient as the admin
 *   await api.kubectl(['get', 'ns']);              // kubectl 1.34 as the admin
 *   const kc = await api.kubeconfigFor('ns', 'sa'); // ... or as a ServiceAccount
 *   await api.restart();                           // the API server only (etcd keeps the data)
 *   await api.stop();                              // afterAll
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { KubeClient, loadKubeConfig } from '../../src/k8s/index.ts';
import { apiserverArgs, etcdArgs, makeControlPlanePki, type ControlPlaneAddresses } from '../../scripts/cluster/controlplane.ts';
import { alive, startDaemon, stopPid, waitFor } from '../../scripts/cluster/daemon.ts';
import { kubeconfig } from '../../scripts/cluster/pki.ts';

const ROOT = new URL('../../', import.meta.url).pathname.replace(/\/$/, '');

export interface TestApiServer {
  /** https://ADDRESS:PORT (ADDRESS: 127.0.0.1 unless started with another) */
  url: string;
  /** The admin's kubeconfig (system:masters). */
  kubeconfig: string;
  caFile: string;
  dir: string;
  /** kubectl as the admin (or with another kubeconfig). */
  kubectl(args: string[], opts?: { input?: string; kubeconfig?: string; reject?: boolean }): Promise<{ stdout: string; stderr: string; exitCode: number }>;
  /** A token of the ServiceAccount @namespace/@name (TokenRequest). */
  tokenFor(namespace: string, name: string): Promise<string>;
  /** A kubeconfig file that authenticates as the ServiceAccount. */
  kubeconfigFor(namespace: string, name: string): Promise<string>;
  /**
   * A kubeconfig with a token of the existing ServiceAccount bound to the
   * existing pod @namespace/@pod, as the kubelet gives a pod: the API server
   * adds the pod's node to the token's claims (authentication.kubernetes.io/node-name).
   */
  kubeconfigForPod(namespace: string, serviceAccount: string, pod: string): Promise<string>;
  /** A client as the admin (closed by stop). */
  client(): KubeClient;
  /** podtap's CRDs (charts/podtap/crds), applied and Established. */
  installCrds(): Promise<void>;
  /** Stop the API server (etcd keeps running with the data) and start it again on the same port: watches end, its watch cache starts afresh. */
  restart(): Promise<void>;
  /** The kube-apiserver's pid (for a test that stops it itself). */
  pid(): number;
  /** etcd's pid (for a bench that counts its CPU). */
  etcdPid(): number;
  /** A CPU profile of kube-apiserver over the next @seconds, written to @file (started with `profiling`). */
  profile(seconds: number, file: string): Promise<void>;
  stop(): Promise<void>;
}

export interface ApiServerOptions {
  /** The address to listen on and advertise (default 127.0.0.1); it must exist in the test's namespace. */
  address?: string;
  /** More kube-apiserver flags. */
  extraArgs?: string[];
  /** Serve /debug/pprof (the control plane's flags turn profiling off, as a hardened cluster's do). */
  profiling?: boolean;
}

/** The directory of kube-apiserver, etcd and kubectl; fails with what to run when they are not built. */
export async function kubeBin(): Promise<string> {
  const r = await execa(join(ROOT, 'scripts/cluster/build.sh'), ['kube', '--cached-only'], { reject: false });
  if (r.exitCode !== 0) {
    throw new Error(`the Kubernetes programs are not built: run scripts/cluster/build.sh kube (cold: tens of minutes; scripts/test.sh does it)\n${r.stderr}`);
  }
  return r.stdout.trim();
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

async function freePortOn(address: string): Promise<number> {
  if (address === '127.0.0.1') return freePort();
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, address, () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

const CRD_DIR = join(ROOT, 'charts/podtap/crds');

export async function startApiServer(opts: ApiServerOptions = {}): Promise<TestApiServer> {
  const bin = await kubeBin();
  const dir = await mkdtemp(join(tmpdir(), 'podtap-apiserver-'));
  const address = opts.address ?? '127.0.0.1';
  // [etcd, kube-apiserver]
  const pids: number[] = [];
  const clients: KubeClient[] = [];
  const stop = async () => {
    for (const c of clients) c.close();
    for (const p of [...pids].reverse()) await stopPid(p, 5_000);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const addrs: ControlPlaneAddresses = {
      advertise: address,
      bind: address,
      apiPort: await freePortOn(address),
      etcdClientPort: await freePort(),
      etcdPeerPort: await freePort(),
      // never routed: no Service traffic happens in these tests
      serviceCidrs: '198.19.0.0/24',
      kubernetesServiceIps: ['198.19.0.1'],
    };
    const files = await makeControlPlanePki(join(dir, 'pki'), addrs);
    const url = `https://${address}:${addrs.apiPort}`;
    const admin = join(dir, 'admin.kubeconfig');
    await writeFile(admin, kubeconfig(url, files.pki.caCert, 'kubernetes-admin', { cert: files.pki.cert('admin'), key: files.pki.key('admin') }), { mode: 0o600 });
    pids.push(startDaemon({ name: 'etcd', cmd: join(bin, 'etcd'), args: etcdArgs(files, addrs, join(dir, 'etcd')), logFile: join(dir, 'etcd.log') }));
    const apiLog = join(dir, 'kube-apiserver.log');
    const kubectl: TestApiServer['kubectl'] = async (args, o = {}) => {
      const r = await execa(join(bin, 'kubectl'), [`--kubeconfig=${o.kubeconfig ?? admin}`, ...args], { input: o.input, reject: false });
      if ((o.reject ?? false) && r.exitCode !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${r.exitCode}): ${r.stderr}`);
      return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? -1 };
    };
    const startApi = async () => {
      const api = startDaemon({ name: 'kube-apiserver', cmd: join(bin, 'kube-apiserver'), args: apiserverArgs(files, addrs, [...(opts.extraArgs ?? []), ...(opts.profiling ? ['--profiling=true'] : [])]), logFile: apiLog });
      pids[1] = api;
      await waitFor('kube-apiserver /readyz', async () => ((await kubectl(['get', '--raw=/readyz'])).exitCode === 0 ? true : undefined), { timeoutMs: 90_000, logFile: apiLog, pid: api });
    };
    await startApi();
    // the default ServiceAccount of `default` comes from the controller-manager, which a bare API server lacks
    const tokenFor = async (namespace: string, name: string) => {
      await kubectl(['create', 'namespace', namespace]);
      await kubectl(['-n', namespace, 'create', 'serviceaccount', name]);
      return (await kubectl(['-n', namespace, 'create', 'token', name, '--duration=1h'], { reject: true })).stdout.trim();
    };
    return {
      url,
      kubeconfig: admin,
      caFile: files.pki.caCert,
      dir,
      kubectl,
      tokenFor,
      async kubeconfigFor(namespace, name) {
        const file = join(dir, `sa-${namespace}-${name}.kubeconfig`);
        await writeFile(file, kubeconfig(url, files.pki.caCert, `system:serviceaccount:${namespace}:${name}`, { token: await tokenFor(namespace, name) }), { mode: 0o600 });
        return file;
      },
      async kubeconfigForPod(namespace, serviceAccount, pod) {
        const token = (await kubectl(['-n', namespace, 'create', 'token', serviceAccount, '--bound-object-kind=Pod', `--bound-object-name=${pod}`, '--duration=1h'], { reject: true })).stdout.trim();
        const file = join(dir, `pod-${namespace}-${pod}.kubeconfig`);
        await writeFile(file, kubeconfig(url, files.pki.caCert, `system:serviceaccount:${namespace}:${serviceAccount}`, { token }), { mode: 0o600 });
        return file;
      },
      client() {
        const c = new KubeClient(loadKubeConfig(admin));
        clients.push(c);
        return c;
      },
      async installCrds() {
        await kubectl(['apply', '-f', CRD_DIR], { reject: true });
        // (kubectl wait fails outright while a new CRD has no conditions yet)
        const established = '{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Established")].status} {end}';
        const names = (await readdir(CRD_DIR)).filter((f) => f.endsWith('.yaml')).map((f) => f.slice(0, -'.yaml'.length));
        await waitFor('the CRDs Established', async () => {
          const r = await kubectl(['get', 'crd', ...names, '-o', `jsonpath=${established}`]);
          return r.stdout.trim().split(' ').sort().join(' ') === names.map((n) => `${n}=True`).sort().join(' ') ? true : undefined;
        }, { timeoutMs: 60_000 });
      },
      async restart() {
        await stopPid(pids[1]!, 10_000);
        await startApi();
      },
      pid: () => pids[1]!,
      etcdPid: () => pids[0]!,
      async profile(seconds, file) {
        const r = await execa(join(bin, 'kubectl'), [`--kubeconfig=${admin}`, 'get', '--raw', `/debug/pprof/profile?seconds=${seconds}`], { stdout: { file }, reject: false });
        if (r.exitCode !== 0) throw new Error(`kube-apiserver's profile failed (${r.exitCode}): ${r.stderr}`);
      },
      async stop() {
        if (pids.some(alive)) await stop();
      },
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
