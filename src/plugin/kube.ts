/**
 * What `kubectl podtap` asks of the Kubernetes API, through
 * @kubernetes/client-node: SniffPolicies (create, get, list, delete), the
 * target pod (read, label), the collector's Service, pods and token Secret,
 * and a port-forward to the collector pod (client-node's PortForward: the
 * pods/portforward subresource over a WebSocket, v4.channel.k8s.io).
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import {
  ApiException,
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PortForward,
  type V1Pod,
} from '@kubernetes/client-node';
import { GROUP, VERSION, type LabelSelector, type SniffPolicy } from '../api/index.ts';
import { selectorString } from '../k8s/labels.ts';
import { ExitCode, UserError } from '../util/errors.ts';
import type { WorkloadKind } from './target.ts';

const PLURAL = 'sniffpolicies';

export interface KubeFlags {
  kubeconfig?: string | undefined;
  context?: string | undefined;
  namespace?: string | undefined;
}

/** A failed API call as a user reads it. */
export function apiError(what: string, err: unknown): UserError {
  if (err instanceof ApiException) {
    const body = typeof err.body === 'string' ? safeJson(err.body) : err.body;
    const message = (body as { message?: string } | undefined)?.message ?? err.message;
    const hint =
      err.code === 403 ? 'your account lacks the permission (kubectl auth can-i …)' : err.code === 404 ? 'check the name and the namespace (-n)' : undefined;
    return new UserError(`${what}: ${message} (HTTP ${err.code})`, { exitCode: ExitCode.failure, cause: err, ...(hint ? { hint } : {}) });
  }
  const m = err instanceof Error ? err.message : String(err);
  return new UserError(`${what}: ${m}`, { exitCode: ExitCode.unreachable, cause: err, hint: 'is the cluster reachable? (kubectl cluster-info)' });
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return { message: s };
  }
}

export function isStatus(err: unknown, code: number): boolean {
  return err instanceof ApiException && err.code === code;
}

export class Kube {
  readonly kc: KubeConfig;
  readonly namespace: string;
  readonly core: CoreV1Api;
  readonly custom: CustomObjectsApi;
  readonly apps: AppsV1Api;

  constructor(flags: KubeFlags) {
    const kc = new KubeConfig();
    try {
      if (flags.kubeconfig) kc.loadFromFile(flags.kubeconfig);
      else kc.loadFromDefault();
      if (flags.context) kc.setCurrentContext(flags.context);
    } catch (err) {
      throw new UserError(`cannot load the kubeconfig: ${err instanceof Error ? err.message : String(err)}`, { exitCode: ExitCode.usage, cause: err });
    }
    if (!kc.getCurrentCluster()) throw new UserError('the kubeconfig names no cluster', { exitCode: ExitCode.usage, hint: 'set KUBECONFIG or pass --kubeconfig' });
    this.kc = kc;
    this.namespace = flags.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
    this.core = kc.makeApiClient(CoreV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.apps = kc.makeApiClient(AppsV1Api);
  }

  async createPolicy(p: SniffPolicy): Promise<SniffPolicy> {
    const ns = p.metadata.namespace ?? this.namespace;
    try {
      return (await this.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: p })) as SniffPolicy;
    } catch (err) {
      if (isStatus(err, 404)) {
        throw new UserError(`the cluster does not serve ${PLURAL}.${GROUP}/${VERSION}`, { exitCode: ExitCode.failure, cause: err, hint: 'is podtap installed? (helm install podtap charts/podtap)' });
      }
      throw apiError(`creating SniffPolicy ${ns}/${p.metadata.name}`, err);
    }
  }

  async getPolicy(namespace: string, name: string): Promise<SniffPolicy | undefined> {
    try {
      return (await this.custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PLURAL, name })) as SniffPolicy;
    } catch (err) {
      if (isStatus(err, 404)) return undefined;
      throw apiError(`reading SniffPolicy ${namespace}/${name}`, err);
    }
  }

  async listPolicies(namespace: string | undefined): Promise<SniffPolicy[]> {
    try {
      const list = (namespace
        ? await this.custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PLURAL })
        : await this.custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL })) as { items: SniffPolicy[] };
      return list.items;
    } catch (err) {
      throw apiError('listing SniffPolicies', err);
    }
  }

  /** Deletes a policy; true when it was there. */
  async deletePolicy(namespace: string, name: string): Promise<boolean> {
    try {
      await this.custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PLURAL, name });
      return true;
    } catch (err) {
      if (isStatus(err, 404)) return false;
      throw apiError(`deleting SniffPolicy ${namespace}/${name}`, err);
    }
  }

  async pod(namespace: string, name: string): Promise<V1Pod> {
    try {
      return await this.core.readNamespacedPod({ namespace, name });
    } catch (err) {
      throw apiError(`reading pod ${namespace}/${name}`, err);
    }
  }

  /** The pod selector of a Deployment, StatefulSet, DaemonSet or ReplicaSet: the pods it owns. */
  async workloadSelector(namespace: string, kind: WorkloadKind, name: string): Promise<LabelSelector> {
    const read = {
      Deployment: () => this.apps.readNamespacedDeployment({ namespace, name }),
      StatefulSet: () => this.apps.readNamespacedStatefulSet({ namespace, name }),
      DaemonSet: () => this.apps.readNamespacedDaemonSet({ namespace, name }),
      ReplicaSet: () => this.apps.readNamespacedReplicaSet({ namespace, name }),
    }[kind];
    let sel;
    try {
      sel = (await read()).spec?.selector;
    } catch (err) {
      throw apiError(`reading ${kind} ${namespace}/${name}`, err);
    }
    if (!sel || (!Object.keys(sel.matchLabels ?? {}).length && !sel.matchExpressions?.length)) {
      throw new UserError(`${kind} ${namespace}/${name} has an empty selector`, { exitCode: ExitCode.badInput });
    }
    return {
      ...(sel.matchLabels ? { matchLabels: sel.matchLabels } : {}),
      ...(sel.matchExpressions?.length ? { matchExpressions: sel.matchExpressions.map((e) => ({ key: e.key, operator: e.operator, ...(e.values ? { values: e.values } : {}) })) } : {}),
    } as LabelSelector;
  }

  async pods(namespace: string, selector: LabelSelector): Promise<V1Pod[]> {
    const labelSelector = selectorString(selector);
    try {
      return (await this.core.listNamespacedPod({ namespace, labelSelector })).items;
    } catch (err) {
      throw apiError(`listing pods in ${namespace}`, err);
    }
  }

  /**
   * The collector pod behind a Service and its HTTP port: the Service's port
   * named "http" (its targetPort, a number or a container port's name), else
   * `port`.
   */
  async collectorPod(namespace: string, service: string, port: number | undefined): Promise<{ pod: string; port: number }> {
    let svc;
    try {
      svc = await this.core.readNamespacedService({ namespace, name: service });
    } catch (err) {
      if (isStatus(err, 404)) {
        throw new UserError(`no collector Service ${namespace}/${service}`, {
          exitCode: ExitCode.failure,
          hint: 'is podtap installed there? (--collector-namespace, --collector-service, or --collector-url for a collector outside the cluster)',
        });
      }
      throw apiError(`reading Service ${namespace}/${service}`, err);
    }
    const selector = svc.spec?.selector ?? {};
    if (Object.keys(selector).length === 0) throw new UserError(`Service ${namespace}/${service} has no selector`, { exitCode: ExitCode.failure });
    const pods = await this.pods(namespace, { matchLabels: selector });
    const ready = pods.find(
      (p) => p.status?.phase === 'Running' && !p.metadata?.deletionTimestamp && (p.status.conditions ?? [{ type: 'Ready', status: 'True' }]).some((c) => c.type === 'Ready' && c.status === 'True'),
    );
    if (!ready?.metadata?.name) {
      throw new UserError(`no ready collector pod behind Service ${namespace}/${service}`, {
        exitCode: ExitCode.unreachable,
        hint: `kubectl -n ${namespace} get pods -l ${Object.entries(selector).map(([k, v]) => `${k}=${v}`).join(',')}`,
      });
    }
    if (port !== undefined) return { pod: ready.metadata.name, port };
    const sp = svc.spec?.ports?.find((p) => p.name === 'http') ?? svc.spec?.ports?.find((p) => (p.protocol ?? 'TCP') === 'TCP');
    const target = sp?.targetPort ?? sp?.port;
    if (typeof target === 'number') return { pod: ready.metadata.name, port: target };
    if (typeof target === 'string' && /^\d+$/.test(target)) return { pod: ready.metadata.name, port: Number(target) };
    const named = ready.spec?.containers.flatMap((c) => c.ports ?? []).find((p) => p.name === target);
    if (named) return { pod: ready.metadata.name, port: named.containerPort };
    return { pod: ready.metadata.name, port: 8080 };
  }

  /**
   * podtap collector Services, found by the chart's labels
   * (app.kubernetes.io/name=podtap, component=collector) in @namespace or, when
   * undefined, in every namespace; undefined when the account may not list
   * Services there.
   */
  async collectorServices(namespace: string | undefined): Promise<{ namespace: string; name: string }[] | undefined> {
    const labelSelector = 'app.kubernetes.io/name=podtap,app.kubernetes.io/component=collector';
    try {
      const list = namespace
        ? await this.core.listNamespacedService({ namespace, labelSelector })
        : await this.core.listServiceForAllNamespaces({ labelSelector });
      // the chart's metrics Service carries the same labels: the collector's own has the tunnel port
      return list.items
        .filter((s) => (s.spec?.ports ?? []).some((p) => p.name === 'tunnel'))
        .map((s) => ({ namespace: s.metadata?.namespace ?? '', name: s.metadata?.name ?? '' }));
    } catch (err) {
      if (isStatus(err, 403)) return undefined;
      throw apiError(`listing collector Services${namespace ? ` in ${namespace}` : ''}`, err);
    }
  }

  /** A key of a Secret, or undefined when there is none or we may not read it. */
  async secretValue(namespace: string, name: string, key: string): Promise<string | undefined> {
    try {
      const s = await this.core.readNamespacedSecret({ namespace, name });
      const v = s.data?.[key];
      return v === undefined ? undefined : Buffer.from(v, 'base64').toString('utf8').trim();
    } catch (err) {
      if (isStatus(err, 404) || isStatus(err, 403)) return undefined;
      throw apiError(`reading Secret ${namespace}/${name}`, err);
    }
  }

  /**
   * A local TCP port forwarded to `pod`:`port` through the API server, as
   * `kubectl port-forward` does: each local connection gets its own
   * WebSocket stream pair. Returns the local address and a stopper.
   */
  async forward(namespace: string, pod: string, port: number): Promise<{ host: string; port: number; close(): Promise<void> }> {
    const pf = new PortForward(this.kc);
    const sockets = new Set<Socket>();
    const server: Server = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      const errors = new PassThrough();
      let errText = '';
      errors.on('data', (d: Buffer) => (errText += d.toString()));
      pf.portForward(namespace, pod, [port], socket, errors, socket).then(
        (ws) => {
          const w = ws as { on(e: string, f: () => void): void; close(): void };
          w.on('close', () => (errText ? socket.destroy(new Error(errText)) : socket.end()));
          socket.on('close', () => w.close());
        },
        (err: unknown) => socket.destroy(err instanceof Error ? err : new Error(String(err))),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const a = server.address() as AddressInfo;
    return {
      host: '127.0.0.1',
      port: a.port,
      close: () =>
        new Promise<void>((resolve) => {
          for (const s of sockets) s.destroy();
          server.close(() => resolve());
        }),
    };
  }
}
