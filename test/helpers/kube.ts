/**
 * One Kubernetes API for a test file, from either implementation:
 *
 *  - `kube-apiserver`: the real one with etcd (test/helpers/apiserver.ts), the
 *    reference;
 *  - `embedded`: the project's stand-in (packages/devcluster), which the demo and
 *    the fast unit tests use.
 *
 * A test that runs `describe.each(BACKENDS)` is a conformance test: the same
 * scenario, the same expectations, against both; a difference is a bug of the
 * stand-in. kubectl is the one built with the real server (1.34) for both.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { parseAllDocuments } from 'yaml';
import { startApiServer as startEmbedded, writeKubeconfig } from '@podtap/devcluster';
import { KubeClient, loadKubeConfig, type KubeObject, type ResourceRef } from '../../src/k8s/index.ts';
import { kubeBin, startApiServer, type TestApiServer } from './apiserver.ts';

export const BACKENDS = ['kube-apiserver', 'embedded'] as const;
export type BackendKind = (typeof BACKENDS)[number];

const ROOT = new URL('../../', import.meta.url).pathname.replace(/\/$/, '');
const CRD_DIR = join(ROOT, 'charts/podtap/crds');
const CRD_REF: ResourceRef = { group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions', kind: 'CustomResourceDefinition', namespaced: false };

export interface KubeBackend {
  kind: BackendKind;
  url: string;
  /** The admin's kubeconfig (the embedded API authenticates nobody). */
  kubeconfig: string;
  /** A client as the admin (closed by stop). */
  client(): KubeClient;
  kubectl(args: string[], opts?: { input?: string; kubeconfig?: string; reject?: boolean }): Promise<{ stdout: string; stderr: string; exitCode: number }>;
  /** podtap's CRDs, served. */
  installCrds(): Promise<void>;
  /**
   * Make every resourceVersion seen so far too old to watch from: the real
   * server restarts (its watch cache starts again at the current revision,
   * as after an upgrade of the control plane); the stand-in, started with a
   * short history, is written past it. @write makes one change.
   */
  expireHistory(write: (i: number) => Promise<void>): Promise<void>;
  /** A kubeconfig like the admin's with another server URL (a proxy in front). */
  kubeconfigVia(url: string): Promise<string>;
  real?: TestApiServer;
  stop(): Promise<void>;
}

/** Changes the stand-in keeps for watches: small, so that expireHistory is quick. */
const EMBEDDED_HISTORY = 200;

export async function startBackend(kind: BackendKind, opts: { address?: string } = {}): Promise<KubeBackend> {
  const dir = await mkdtemp(join(tmpdir(), 'podtap-kube-'));
  const clients: KubeClient[] = [];
  const bin = await kubeBin();
  const runKubectl = (kubeconfig: string): KubeBackend['kubectl'] => async (args, o = {}) => {
    const r = await execa(join(bin, 'kubectl'), [`--kubeconfig=${o.kubeconfig ?? kubeconfig}`, ...args], { input: o.input, reject: false });
    if ((o.reject ?? false) && r.exitCode !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${r.exitCode}): ${r.stderr}`);
    return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? -1 };
  };
  const client = (kubeconfig: string) => () => {
    const c = new KubeClient(loadKubeConfig(kubeconfig));
    clients.push(c);
    return c;
  };
  const kubeconfigVia = (kubeconfig: string, url: string) => async (to: string) => {
    const file = join(dir, `via-${clients.length}-${Date.now()}.kubeconfig`);
    await writeFile(file, (await readFile(kubeconfig, 'utf8')).replaceAll(url, to), { mode: 0o600 });
    return file;
  };
  const cleanup = async () => {
    for (const c of clients) c.close();
    await rm(dir, { recursive: true, force: true });
  };
  if (kind === 'kube-apiserver') {
    const real = await startApiServer(opts.address ? { address: opts.address } : {});
    return {
      kind,
      url: real.url,
      kubeconfig: real.kubeconfig,
      client: client(real.kubeconfig),
      kubectl: real.kubectl,
      installCrds: () => real.installCrds(),
      async expireHistory(write) {
        await real.restart();
        // a revision past every resourceVersion a client holds
        await write(0);
      },
      kubeconfigVia: kubeconfigVia(real.kubeconfig, real.url),
      real,
      async stop() {
        await cleanup();
        await real.stop();
      },
    };
  }
  const api = await startEmbedded({ host: opts.address ?? '127.0.0.1', port: 0, historySize: EMBEDDED_HISTORY });
  const kubeconfig = join(dir, 'kubeconfig');
  await writeKubeconfig(kubeconfig, api.url);
  const admin = client(kubeconfig);
  return {
    kind,
    url: api.url,
    kubeconfig,
    client: admin,
    kubectl: runKubectl(kubeconfig),
    async installCrds() {
      const c = admin();
      for (const f of (await readdir(CRD_DIR)).filter((n) => n.endsWith('.yaml')).sort()) {
        for (const doc of parseAllDocuments(await readFile(join(CRD_DIR, f), 'utf8'))) {
          const obj = doc.toJS() as KubeObject | null;
          if (obj) await c.create(CRD_REF, obj);
        }
      }
    },
    async expireHistory(write) {
      for (let i = 0; i < EMBEDDED_HISTORY + 10; i++) await write(i);
    },
    kubeconfigVia: kubeconfigVia(kubeconfig, api.url),
    async stop() {
      await cleanup();
      await api.close();
    },
  };
}

/**
 * A TCP proxy in front of an API server, to cut a client off without
 * touching the server: pause() closes every connection and refuses new ones
 * until resume(). TLS passes through untouched.
 */
export interface TcpProxy {
  url: string;
  pause(): void;
  resume(): void;
  close(): Promise<void>;
}

export async function tcpProxy(target: string): Promise<TcpProxy> {
  const t = new URL(target);
  const sockets = new Set<Socket>();
  let paused = false;
  const server: Server = createServer((client) => {
    if (paused) {
      client.destroy();
      return;
    }
    const upstream = connect(Number(t.port), t.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, t.hostname, () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    url: `${t.protocol}//${t.hostname}:${port}`,
    pause() {
      paused = true;
      for (const s of sockets) s.destroy();
    },
    resume() {
      paused = false;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Poll until @fn returns a value (not undefined/false); fails naming @what with the last error. */
export async function until<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`, { cause: last });
    await new Promise((r) => setTimeout(r, 50));
  }
}
