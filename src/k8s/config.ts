/**
 * Finding the cluster and how to talk to it: an explicit kubeconfig file,
 * else $KUBECONFIG (several files merged, first definition wins), else the
 * pod's service account (in-cluster), else ~/.kube/config. Unlike client-node's
 * loadFromDefault we never fall back to an unauthenticated
 * http://localhost:8080: a controller talking to nothing should say so.
 *
 * Why not client-node's KubeConfig for everything: importing
 * @kubernetes/client-node loads its whole generated API (tens of MB of
 * JavaScript held in memory: +86 MB RSS measured, more than a quarter of the
 * controller's 300 MB budget). The common cases are read here — the service
 * account (token re-read on every refresh, as it rotates), tokens, token files,
 * client certificates, basic auth, no auth — and anything else (exec plugins,
 * auth-provider, proxy-url, impersonation) is handed to client-node's
 * KubeConfig, imported only then.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { isIPv6 } from 'node:net';
import type http from 'node:http';
import { parse } from 'yaml';
import { ExitCode, UserError } from '../util/errors.ts';

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface TlsSettings {
  ca?: Buffer | undefined;
  cert?: Buffer | undefined;
  key?: Buffer | undefined;
  /** insecure-skip-tls-verify (meaningless, and ignored, for http:// servers). */
  insecureSkipVerify?: boolean | undefined;
  serverName?: string | undefined;
}

export interface Credentials {
  /** Headers for every request (Authorization, Impersonate-*). */
  headers: Record<string, string>;
  tls: TlsSettings;
  /** An agent to use as is (a proxy agent from client-node). */
  agent?: http.Agent | undefined;
}

/** A cluster and how to reach it; `credentials()` is called again when they may have changed. */
export interface ClusterAccess {
  /** Where it came from: a file path, "KUBECONFIG", "in-cluster" or "client-node". */
  source: string;
  server: string;
  /** The context's namespace, or the service account's in-cluster. */
  namespace?: string | undefined;
  credentials(): Promise<Credentials>;
}

/** client-node's KubeConfig, as far as we use it (so no static import of the library is needed). */
interface ClientNodeConfig {
  getCurrentCluster(): { server: string } | null;
  getContextObject?(name: string): { namespace?: string } | null;
  getCurrentContext?(): string;
  applyToHTTPSOptions(opts: object): Promise<void>;
}

type Rec = Record<string, unknown>;
const rec = (v: unknown): Rec => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Rec) : {});
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

interface Named {
  name: string;
  value: Rec;
  dir: string;
}

interface ParsedKubeconfig {
  clusters: Named[];
  users: Named[];
  contexts: Named[];
  currentContext: string | undefined;
  texts: string[];
}

function usage(message: string, hint?: string, cause?: unknown): UserError {
  return new UserError(message, { exitCode: ExitCode.usage, ...(hint ? { hint } : {}), ...(cause ? { cause } : {}) });
}

function readKubeconfigs(files: string[]): ParsedKubeconfig {
  const out: ParsedKubeconfig = { clusters: [], users: [], contexts: [], currentContext: undefined, texts: [] };
  for (const file of files) {
    let doc: Rec;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
      doc = rec(parse(text));
    } catch (err) {
      throw usage(`cannot read the kubeconfig ${file}`, undefined, err);
    }
    out.texts.push(text);
    const dir = dirname(resolve(file));
    const add = (list: Named[], items: unknown, field: string) => {
      for (const item of Array.isArray(items) ? items : []) {
        const name = str(rec(item).name);
        if (name && !list.some((n) => n.name === name)) list.push({ name, value: rec(rec(item)[field]), dir });
      }
    };
    add(out.clusters, doc.clusters, 'cluster');
    add(out.users, doc.users, 'user');
    add(out.contexts, doc.contexts, 'context');
    out.currentContext ??= str(doc['current-context']);
  }
  return out;
}

function fileOrData(dir: string, file: unknown, data: unknown): Buffer | undefined {
  const d = str(data);
  if (d) return Buffer.from(d, 'base64');
  const f = str(file);
  if (!f) return undefined;
  return readFileSync(isAbsolute(f) ? f : join(dir, f));
}

/** The fields of a kubeconfig user this module handles itself; the rest goes to client-node. */
const SIMPLE_USER_FIELDS = new Set(['token', 'tokenFile', 'client-certificate', 'client-certificate-data', 'client-key', 'client-key-data', 'username', 'password']);

function fromKubeconfig(files: string[], source: string): ClusterAccess {
  const cfg = readKubeconfigs(files);
  const ctxName = cfg.currentContext;
  if (!ctxName) throw usage(`the kubeconfig (${source}) has no current-context`, 'Set current-context, or pass another --kubeconfig.');
  const ctx = cfg.contexts.find((c) => c.name === ctxName);
  if (!ctx) throw usage(`the kubeconfig (${source}) has no context named ${ctxName}`);
  const cluster = cfg.clusters.find((c) => c.name === str(ctx.value.cluster));
  const server = str(cluster?.value.server);
  if (!cluster || !server) throw usage(`the kubeconfig (${source}) has no server for context ${ctxName}`, 'Set current-context, or pass another --kubeconfig.');
  const user = cfg.users.find((u) => u.name === str(ctx.value.user));
  const u = user?.value ?? {};
  const namespace = str(ctx.value.namespace);
  const simple = Object.keys(u).every((k) => SIMPLE_USER_FIELDS.has(k)) && !str(cluster.value['proxy-url']);
  if (!simple) return viaClientNode(files, ctxName, server, namespace, source);

  const c = cluster.value;
  const userDir = user?.dir ?? cluster.dir;
  let tls: TlsSettings;
  try {
    tls = {
      ca: fileOrData(cluster.dir, c['certificate-authority'], c['certificate-authority-data']),
      cert: fileOrData(userDir, u['client-certificate'], u['client-certificate-data']),
      key: fileOrData(userDir, u['client-key'], u['client-key-data']),
      insecureSkipVerify: c['insecure-skip-tls-verify'] === true,
      serverName: str(c['tls-server-name']),
    };
  } catch (err) {
    throw usage(`cannot read a certificate or key named in the kubeconfig (${source})`, undefined, err);
  }
  const token = str(u.token);
  const tokenFile = str(u.tokenFile);
  const basic = str(u.username) !== undefined ? `${u.username}:${str(u.password) ?? ''}` : undefined;
  return {
    source,
    server,
    namespace,
    credentials: async () => {
      const headers: Record<string, string> = {};
      const t = token ?? (tokenFile ? readFileSync(isAbsolute(tokenFile) ? tokenFile : join(userDir, tokenFile), 'utf8').trim() : undefined);
      if (t) headers.Authorization = `Bearer ${t}`;
      else if (basic) headers.Authorization = `Basic ${Buffer.from(basic).toString('base64')}`;
      return { headers, tls };
    },
  };
}

function inCluster(env: NodeJS.ProcessEnv): ClusterAccess {
  const host = env.KUBERNETES_SERVICE_HOST!;
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  const server = `https://${isIPv6(host) ? `[${host}]` : host}:${port}`;
  const nsFile = join(SA_DIR, 'namespace');
  const ca = existsSync(join(SA_DIR, 'ca.crt')) ? readFileSync(join(SA_DIR, 'ca.crt')) : undefined;
  return {
    source: 'in-cluster',
    server,
    namespace: existsSync(nsFile) ? readFileSync(nsFile, 'utf8').trim() : undefined,
    // The projected token rotates: read it again on every refresh.
    credentials: async () => ({ headers: { Authorization: `Bearer ${readFileSync(join(SA_DIR, 'token'), 'utf8').trim()}` }, tls: { ca } }),
  };
}

/** Access through a client-node KubeConfig (exec plugins, auth providers, proxies). */
export function accessFromClientNode(kc: ClientNodeConfig, source = 'client-node'): ClusterAccess {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw usage(`the Kubernetes configuration (${source}) has no current cluster`);
  const ctx = kc.getCurrentContext ? kc.getContextObject?.(kc.getCurrentContext()) : undefined;
  return {
    source,
    server: cluster.server,
    namespace: ctx?.namespace,
    credentials: async () => {
      const o: { headers?: Record<string, unknown>; ca?: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized?: boolean; servername?: string; auth?: string; agent?: unknown } = {};
      await kc.applyToHTTPSOptions(o);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(o.headers ?? {})) headers[k] = String(v);
      if (o.auth) headers.Authorization = `Basic ${Buffer.from(o.auth).toString('base64')}`;
      const isProxy = o.agent !== undefined && (o.agent as { proxy?: unknown }).proxy !== undefined;
      return {
        headers,
        tls: { ca: o.ca, cert: o.cert, key: o.key, insecureSkipVerify: o.rejectUnauthorized === false, serverName: o.servername },
        agent: isProxy ? (o.agent as http.Agent) : undefined,
      };
    },
  };
}

function viaClientNode(files: string[], context: string, server: string, namespace: string | undefined, source: string): ClusterAccess {
  let kc: Promise<ClientNodeConfig> | undefined;
  const load = () =>
    (kc ??= import('@kubernetes/client-node').then(({ KubeConfig }) => {
      const k = new KubeConfig();
      k.loadFromFile(files[0]!);
      for (const f of files.slice(1)) {
        const more = new KubeConfig();
        more.loadFromFile(f);
        k.mergeConfig(more, true);
      }
      k.setCurrentContext(context);
      return k;
    }));
  return {
    source,
    server,
    namespace,
    credentials: async () => accessFromClientNode(await load(), source).credentials(),
  };
}

/**
 * The cluster to talk to: `path`, else $KUBECONFIG, else in-cluster, else
 * ~/.kube/config. Throws UserError (exit code 2) when there is none.
 */
export function loadKubeConfig(path?: string, env: NodeJS.ProcessEnv = process.env): ClusterAccess {
  if (path) return fromKubeconfig([path], path);
  if (env.KUBECONFIG) {
    const files = env.KUBECONFIG.split(delimiter).filter((f) => f && existsSync(f));
    if (files.length === 0) throw usage(`KUBECONFIG names no existing file (${env.KUBECONFIG})`);
    return fromKubeconfig(files, 'KUBECONFIG');
  }
  if (env.KUBERNETES_SERVICE_HOST && existsSync(join(SA_DIR, 'token'))) return inCluster(env);
  const home = join(homedir(), '.kube', 'config');
  if (existsSync(home)) return fromKubeconfig([home], home);
  throw usage('no Kubernetes configuration found', 'Pass --kubeconfig FILE, set KUBECONFIG, or run in a pod with a service account.');
}

/** The namespace this process runs in: $POD_NAMESPACE, the service account's, or undefined. */
export function podNamespace(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.POD_NAMESPACE) return env.POD_NAMESPACE;
  const file = join(SA_DIR, 'namespace');
  return existsSync(file) ? readFileSync(file, 'utf8').trim() || undefined : undefined;
}
