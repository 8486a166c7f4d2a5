/**
 * The controller process: informers fill the caches (leader or not, so a
 * standby takes over warm), a lease elects the replica whose workers
 * reconcile, a shared limiter bounds concurrent API writes, and an HTTP
 * endpoint serves metrics and health.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { API_VERSION, installNamespace, PodtapResources, type RateLimit, type SniffNodeAssignment } from '../api/index.ts';
import {
  EventRecorder, KubeClient, LeaderElector, Limiter, loadKubeConfig, runWorkers, startHttp, WorkQueue, type HttpEndpoint, type LeaderTimings,
} from '../k8s/index.ts';
import { rootLogger, type Logger } from '../util/log.ts';
import { createInformers, policyKey, type ControllerInformers } from './informers.ts';
import { createMetrics, type ControllerMetrics } from './metrics.ts';
import type { PolicyObject } from './objects.ts';
import { RecentWrites, withRecentWrites, type RecentPolicyWrites } from './recent.ts';
import { NodeWriter, type NodeObjectApi } from './nodes.ts';
import { Reconciler, TerminalError, type ReconcileApi } from './reconcile.ts';
import type { StoreWorld } from './world.ts';
import { defaultAllowList, type DestinationAllowList } from './destinations.ts';

export const LEASE_NAME = 'podtap-controller';

export interface ControllerOptions {
  /** A kubeconfig file; without it $KUBECONFIG, in-cluster, ~/.kube/config. */
  kubeconfig?: string | undefined;
  /** An already resolved cluster (tests, the demo): loadKubeConfig()'s result or a client-node KubeConfig; wins over `kubeconfig`. */
  kubeConfig?: ConstructorParameters<typeof KubeClient>[0] | undefined;
  /** HOST:PORT for /metrics, /healthz, /readyz; '' disables. Default ':8080'. */
  metricsAddr?: string | undefined;
  leaderElect?: boolean | undefined;
  /** The install namespace: the assignments and the Lease (default: installNamespace()). */
  namespace?: string | undefined;
  /** Where policies may send copies (default: the install's collector Service only). */
  destinations?: DestinationAllowList | undefined;
  /** The ceiling (and default) of each policy's per-node rates; 0 = none. */
  rateCeiling?: RateLimit | undefined;
  leaseName?: string | undefined;
  /** holderIdentity; default $POD_NAME or the hostname, plus a random suffix. */
  identity?: string | undefined;
  workers?: number | undefined;
  /** An agent silent for longer makes its node AgentNotReporting. Default 30. */
  reportStaleSeconds?: number | undefined;
  /** Concurrent API writes across all workers. Default 32. */
  maxConcurrentWrites?: number | undefined;
  /** Status-only assignment updates are coalesced this long. Default 1000. */
  statusCoalesceMs?: number | undefined;
  /** Every policy is reconciled again this often, whatever happened. Default 10 min. */
  resyncMs?: number | undefined;
  leaderTimings?: Partial<LeaderTimings> | undefined;
  logger?: Logger | undefined;
  /** Process metrics (CPU, memory, event loop) in /metrics. */
  defaultMetrics?: boolean | undefined;
  /** Called after leadership was lost and reconciling stopped (the CLI exits). */
  onLeadershipLost?: (() => void) | undefined;
}

export interface RunningController {
  identity: string;
  /** host:port of the metrics endpoint, when enabled. */
  metricsAddress: string | undefined;
  metrics: ControllerMetrics;
  world: StoreWorld;
  informers: ControllerInformers;
  queue: WorkQueue;
  isLeader(): boolean;
  hasSynced(): boolean;
  waitForSync(): Promise<void>;
  /** Resolves when this replica starts reconciling. */
  leading: Promise<void>;
  /** Graceful stop: no new reconciles, in-flight ones finish, the lease is released, caches stop. */
  stop(): Promise<void>;
}

/**
 * Policies reconciled at once. Why 16: a reconcile is mostly waiting for its
 * status write, and while policies wait their turn the node writer holds the
 * nodes back (nodes.ts); with 4, planning 100 policies took 2 s of a
 * convergence at 1,000 nodes.
 */
export const DEFAULT_WORKERS = 16;

function defaultIdentity(): string {
  return `${process.env.POD_NAME || hostname()}_${randomBytes(4).toString('hex')}`;
}

/** The API calls of reconciles and node writes, counted in podtap_controller_assignment_writes_total. */
function reconcileApi(client: KubeClient, metrics: ControllerMetrics): { policies: ReconcileApi; nodes: NodeObjectApi } {
  const counted = async <T>(operation: string, call: () => Promise<T>): Promise<T> => {
    try {
      const r = await call();
      metrics.writes.inc({ operation, result: 'ok' });
      return r;
    } catch (err) {
      metrics.writes.inc({ operation, result: 'error' });
      throw err;
    }
  };
  const ref = PodtapResources.sniffNodeAssignments;
  return {
    policies: { patchPolicyStatus: (ns, name, patch) => counted('status', () => client.patchStatus<PolicyObject>(PodtapResources.sniffPolicies, ns, name, patch, 'merge')) },
    nodes: {
      create: (o) => counted('create', () => client.create<SniffNodeAssignment>(ref, o)),
      patch: (ns, name, patch) => counted('update', () => client.patch<SniffNodeAssignment>(ref, ns, name, patch, 'merge')),
      delete: (ns, name, uid) => counted('delete', () => client.delete(ref, ns, name, uid ? { uid } : {})),
    },
  };
}

export async function startController(opts: ControllerOptions = {}): Promise<RunningController> {
  const log = opts.logger ?? rootLogger('controller');
  const identity = opts.identity ?? defaultIdentity();
  const access = opts.kubeConfig ?? loadKubeConfig(opts.kubeconfig);
  const client = new KubeClient(access, { userAgent: 'podtap-controller' });
  const metrics = createMetrics({ defaultMetrics: opts.defaultMetrics ?? false });
  const queue = new WorkQueue({ metrics: metrics.queue });
  const namespace = opts.namespace ?? installNamespace();
  const informers = createInformers({ client, queue, logger: log, statusCoalesceMs: opts.statusCoalesceMs, assignmentNamespace: namespace });
  const world = informers.world;
  metrics.setPolicySource(() => informers.policies.store.list());
  const recent: RecentPolicyWrites = { policies: new RecentWrites<PolicyObject>((k) => informers.policies.store.get(k)) };
  informers.policies.on({ add: (o) => recent.policies.observe(o), update: (_old, o) => recent.policies.observe(o), delete: (o) => recent.policies.observeDelete(o) });
  informers.policies.onRelist(() => recent.policies.clear());
  const apis = reconcileApi(client, metrics);
  // Assignments are written node by node, on a queue of their own (nodes.ts).
  const nodeQueue = new WorkQueue({});
  const nodeWriter = new NodeWriter({
    objectsOfNode: (n) => informers.assignments.objectsOfNode(n),
    api: apis.nodes,
    namespace,
    queue: nodeQueue,
    // only the policies still in line: a reconcile in progress spends most of
    // its time on its status write, after it has handed in its changes
    policiesBusy: () => queue.waiting > 0,
  });
  informers.assignments.objects.on({ add: (o) => nodeWriter.observe(o), update: (_old, o) => nodeWriter.observe(o), delete: (o) => nodeWriter.observeDelete(o) });
  informers.assignments.onRelist(() => nodeWriter.clearWritten());
  const recorder = new EventRecorder(client, { component: 'podtap-controller', instance: identity, logger: log });
  const reconciler = new Reconciler({
    world: withRecentWrites(world, recent),
    recent,
    api: apis.policies,
    assignments: nodeWriter,
    limiter: new Limiter(opts.maxConcurrentWrites ?? 32),
    staleMs: (opts.reportStaleSeconds ?? 30) * 1000,
    assignmentNamespace: namespace,
    destinations: opts.destinations ?? defaultAllowList(namespace),
    rateCeiling: opts.rateCeiling,
    events: (policy: PolicyObject, type, reason, message) => {
      void recorder.record({ ...policy, apiVersion: API_VERSION, kind: 'SniffPolicy' }, type, reason, message);
    },
  });

  informers.start();
  let http: HttpEndpoint | undefined;
  const metricsAddr = opts.metricsAddr ?? ':8080';
  if (metricsAddr !== '' && metricsAddr !== '0') {
    try {
      http = await startHttp(metricsAddr, { registry: metrics.registry, notReady: () => (informers.hasSynced() ? undefined : 'caches not synced') }, log);
    } catch (err) {
      await informers.stop();
      throw new Error(`cannot serve metrics on ${metricsAddr}`, { cause: err });
    }
  }

  let stopping = false;
  let workers: Promise<void> | undefined;

  let resync: NodeJS.Timeout | undefined;
  let markLeading: () => void = () => {};
  const leading = new Promise<void>((resolve) => (markLeading = resolve));
  let isLeading = false;
  const lead = async () => {
    isLeading = true;
    metrics.leader.set(1);
    await informers.waitForSync();
    if (stopping || !isLeading) return;
    // Every policy and every owner of an assignment (orphans too), whatever the handlers queued before.
    for (const p of informers.policies.store.keys()) queue.add(p);
    for (const v of informers.assignments.store.indexValues('byPolicy')) queue.add(v);
    const n = Math.max(1, opts.workers ?? DEFAULT_WORKERS);
    const nodeWorkers = runWorkers({
      queue: nodeQueue,
      workers: opts.maxConcurrentWrites ?? 32,
      logger: log,
      keyField: 'node',
      attemptPrefix: identity.slice(-8),
      sync: (key, rlog) => nodeWriter.sync(key, rlog),
    });
    const policyWorkers = runWorkers({
      queue,
      workers: n,
      logger: log,
      keyField: 'policy',
      attemptPrefix: identity.slice(-8),
      sync: (key, rlog) => reconciler.reconcile(key, rlog),
      isTerminal: (err) => err instanceof TerminalError,
      observe: (result, seconds) => {
        metrics.reconciles.inc({ result });
        metrics.reconcileDuration.observe(seconds);
      },
    });
    workers = Promise.all([policyWorkers, nodeWorkers]).then(() => undefined);
    resync = setInterval(() => {
      for (const p of informers.policies.store.list()) queue.add(policyKey(p));
    }, opts.resyncMs ?? 600_000);
    resync.unref();
    log.info({ workers: n, policies: informers.policies.store.size }, 'reconciling');
    markLeading();
  };

  let elector: LeaderElector | undefined;
  if (opts.leaderElect ?? true) {
    elector = new LeaderElector({
      client,
      namespace,
      name: opts.leaseName ?? LEASE_NAME,
      identity,
      timings: opts.leaderTimings,
      logger: log,
      onStartedLeading: () => void lead(),
      onStoppedLeading: () => {
        // Stop at once: another replica may be leading already.
        isLeading = false;
        metrics.leader.set(0);
        queue.shutDown({ drop: true });
        nodeQueue.shutDown({ drop: true });
        clearInterval(resync);
        (opts.onLeadershipLost ?? (() => log.error('leadership lost; this replica no longer reconciles')))();
      },
    });
    elector.start();
  } else {
    void lead();
  }

  return {
    identity,
    metricsAddress: http?.address,
    metrics,
    world,
    informers,
    queue,
    isLeader: () => isLeading,
    hasSynced: () => informers.hasSynced(),
    waitForSync: () => informers.waitForSync(),
    leading,
    async stop() {
      if (stopping) return;
      stopping = true;
      queue.shutDown({ drop: true });
      nodeQueue.shutDown({ drop: true });
      clearInterval(resync);
      await queue.drain();
      await nodeQueue.drain();
      await workers;
      await elector?.stop({ release: true });
      isLeading = false;
      metrics.leader.set(0);
      await informers.stop();
      await http?.close();
      client.close();
      log.info('controller stopped');
    },
  };
}
