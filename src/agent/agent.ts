/**
 * The node agent: turns this node's SniffAssignments into data-plane sessions
 * and reports back on each assignment's status subresource.
 *
 *   informer (own node's assignments only) -> queue -> reconcile(key)
 *     reconcile: resolve pods to host veths, session.apply(config), attach and
 *     detach the difference, announce names to the collector, write status
 *   report loop: counters, limits (deadline, packets, bytes) -> status
 *
 * Sessions outlive the agent: kernel state is the source of truth, so a
 * restarted agent adopts them (no gap, no duplicate), and a policy changed
 * while it was down converges on the next reconcile.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, rmdir } from 'node:fs/promises';
import type { SniffAssignment, SniffAssignmentStatus } from '../api/index.ts';
import { LABEL_NODE, labelValue } from '../api/index.ts';
import { WorkQueue } from '../controller/queue.ts';
import { Announcer, probeCollector } from '../datapath/announcer.ts';
import type { NodeKeySource } from '../wire/auth.ts';
import { CompileError } from '../datapath/compile.ts';
import { configFromSpec, type DataplaneConfig, type Direction } from '../datapath/config.ts';
import { LOSS_REASONS, lost, type Counters } from '../datapath/counters.ts';
import { createRunner, type Runner } from '../datapath/exec.ts';
import { KernelUnsupportedError } from '../datapath/features.ts';
import { PIN_ROOT, Session } from '../datapath/session.ts';
import { VerifierError } from '../datapath/verifier.ts';
import { Informer, isNotFound, objectKey, Resources, sniffAssignments, type KubeClient, type ResourceClient } from '../k8s/index.ts';
import { ExitCode, UserError, errorMessage } from '../util/errors.ts';
import { silentLogger, type Logger } from '../util/log.ts';
import { resolvePodInterface, type ResolveOptions } from './resolve.ts';
import type { AgentMetrics } from './metrics.ts';

export interface AgentOptions {
  client: KubeClient;
  nodeName: string;
  runner?: Runner;
  logger?: Logger;
  /** How often counters are written to each assignment's status. */
  reportIntervalMs?: number;
  /** This node's key: announcements to the collector are signed with it (wire/auth.ts). */
  nodeKey?: NodeKeySource | undefined;
  resolve?: ResolveOptions;
  metrics?: AgentMetrics;
  pinRoot?: string;
  cacheDir?: string;
}

interface Tracked {
  key: string;
  session: Session;
  announcer: Announcer | undefined;
  announced: string;
  policy: { namespace: string; name: string; uid: string };
  interfaces: { pod: string; name: string; ifindex: number; directions: ('Ingress' | 'Egress')[] }[];
  state: SniffAssignmentStatus['state'];
  reason: string | undefined;
  message: string | undefined;
  collectorReachable: boolean;
  /** detached (policy completed or assignment gone); final holds the last counters */
  stopped: boolean;
  final: Counters | undefined;
}

export function sessionIdForPolicy(uid: string): string {
  return `a-${createHash('sha256').update(uid).digest('hex').slice(0, 12)}`;
}

function directionsOf(d: Direction): ('Ingress' | 'Egress')[] {
  return d === 'Both' ? ['Ingress', 'Egress'] : [d];
}

/** The counters as an assignment status reports them. */
export function statusCounters(c: Counters): NonNullable<SniffAssignmentStatus['counters']> {
  const dropped: Record<string, number> = {};
  for (const r of [...LOSS_REASONS, 'sampledOut', 'oversize', 'truncated'] as const) if (c[r].packets) dropped[r] = c[r].packets;
  return {
    seen: c.seen.packets,
    matched: c.matched.packets,
    mirrored: c.mirrored.packets,
    bytes: c.mirrored.bytes,
    fragmented: c.fragmented.packets,
    pieces: c.pieces.packets,
    truncated: c.truncated.packets,
    oversize: c.oversize.packets,
    lost: lost(c),
    dropped,
  };
}

export class NodeAgent {
  private readonly opts: AgentOptions;
  private readonly log: Logger;
  private readonly runner: Runner;
  private readonly api: ResourceClient<SniffAssignment>;
  readonly informer: Informer<SniffAssignment>;
  private readonly queue = new WorkQueue({ baseDelayMs: 200, maxDelayMs: 60_000 });
  private readonly tracked = new Map<string, Tracked>();
  private reportTimer: NodeJS.Timeout | undefined;
  private workers: Promise<void>[] = [];
  private running = false;

  constructor(opts: AgentOptions) {
    this.opts = opts;
    this.log = (opts.logger ?? silentLogger).child({ node: opts.nodeName });
    this.runner = opts.runner ?? createRunner();
    this.api = sniffAssignments(opts.client);
    this.informer = new Informer<SniffAssignment>({
      client: opts.client,
      resource: Resources.sniffAssignments,
      labelSelector: `${LABEL_NODE}=${labelValue(opts.nodeName)}`,
      logger: this.log,
      // the agent acts on spec changes; its own status writes need no reconcile
      equal: (a, b) => JSON.stringify(a.spec) === JSON.stringify(b.spec) && a.metadata.deletionTimestamp === b.metadata.deletionTimestamp,
    });
    this.informer.on({
      add: (a) => this.queue.add(objectKey(a)),
      update: (_, a) => this.queue.add(objectKey(a)),
      delete: (a) => this.queue.add(objectKey(a)),
    });
  }

  get sessions(): number {
    return this.tracked.size;
  }

  async start(): Promise<void> {
    this.running = true;
    await this.adoptOrphans();
    this.informer.start();
    await this.informer.waitForSync();
    // adopted sessions go to their assignments; the rest belong to policies
    // deleted while no agent ran, and are detached
    for (const a of this.informer.store.list()) {
      this.findTracked(objectKey(a), a.spec.policy.uid);
      this.queue.add(objectKey(a));
    }
    for (const t of [...this.tracked.values()]) if (t.key.startsWith('orphan:')) this.queue.add(t.key);
    for (let i = 0; i < 2; i++) this.workers.push(this.work());
    this.reportTimer = setInterval(() => void this.report(), this.opts.reportIntervalMs ?? 5000);
    this.log.info({ sessions: this.tracked.size }, 'agent started');
  }

  /** Sessions a previous agent left pinned: adopt them; the informer decides their fate. */
  private async adoptOrphans(): Promise<void> {
    const root = this.opts.pinRoot ?? PIN_ROOT;
    if (!existsSync(root)) return;
    for (const id of await readdir(root)) {
      if (!id.startsWith('a-')) continue;
      const session = await Session.open({ id, runner: this.runner, logger: this.log, pinRoot: root });
      // the key is learned when the informer delivers the assignment
      this.tracked.set(`orphan:${id}`, this.newTracked(`orphan:${id}`, session, { namespace: '', name: '', uid: '' }));
    }
  }

  private newTracked(key: string, session: Session, policy: Tracked['policy']): Tracked {
    return {
      key, session, announcer: undefined, announced: '', policy, interfaces: [],
      state: 'Attaching', reason: undefined, message: undefined, collectorReachable: true, stopped: false, final: undefined,
    };
  }

  private async work(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      const started = performance.now();
      try {
        await this.reconcile(key);
        this.queue.forget(key);
        this.opts.metrics?.reconciled('success', (performance.now() - started) / 1000);
      } catch (err) {
        const delay = this.queue.addRateLimited(key);
        this.log.warn({ key, err: errorMessage(err), retryMs: delay }, 'reconcile failed, retrying');
        this.opts.metrics?.reconciled('error', (performance.now() - started) / 1000);
      } finally {
        this.queue.done(key);
      }
    }
  }

  private findTracked(key: string, uid: string | undefined): Tracked | undefined {
    const t = this.tracked.get(key);
    if (t) return t;
    if (!uid) return undefined;
    // an adopted session: match it by the policy it was made for
    const orphanKey = `orphan:${sessionIdForPolicy(uid)}`;
    const o = this.tracked.get(orphanKey);
    if (o) {
      this.tracked.delete(orphanKey);
      o.key = key;
      this.tracked.set(key, o);
    }
    return o;
  }

  async reconcile(key: string): Promise<void> {
    const a = this.informer.store.get(key);
    const t = this.findTracked(key, a?.spec.policy.uid);
    const log = this.log.child({ assignment: key, policy: a?.spec.policy.name });
    if (!a || a.metadata.deletionTimestamp) {
      if (t) await this.stop(t, log, 'Detached', undefined);
      if (key.startsWith('orphan:') || (t && !a)) {
        this.tracked.delete(t?.key ?? key);
        // its series go with it: capture policies are many and short-lived
        if (t) this.opts.metrics?.forget(t.policy);
      }
      return;
    }
    const policy = { namespace: a.metadata.namespace ?? '', name: a.spec.policy.name, uid: a.spec.policy.uid };
    if (a.spec.stopped) {
      if (t && !t.stopped) await this.stop(t, log, 'Completed', 'LimitReached');
      else if (!t) await this.writeStatus(a, { state: 'Completed', reason: 'LimitReached', interfaces: [], attachedInterfaces: 0 });
      return;
    }

    const session = t?.session ?? (await Session.open({
      id: sessionIdForPolicy(policy.uid), runner: this.runner, logger: log,
      ...(this.opts.pinRoot ? { pinRoot: this.opts.pinRoot } : {}), ...(this.opts.cacheDir ? { cacheDir: this.opts.cacheDir } : {}),
    }));
    const tr = t ?? this.newTracked(key, session, policy);
    this.tracked.set(key, tr);
    tr.policy = policy;
    tr.stopped = false;
    const c = a.spec.config;
    const cfg: DataplaneConfig = configFromSpec(
      { direction: c.direction, filter: c.filter, sampling: c.sampling, snapLength: c.snapLength, rateLimit: c.rateLimit, tunnel: c.tunnel },
      c.collector,
    );

    // 1. the data-plane object for this configuration
    try {
      // the data plane enforces the node's cap on mirrored packets/bytes exactly
      // a swapped-in object announces itself before its first copy can arrive
      const applied = await session.apply(cfg, c.mtu ? { mtu: c.mtu } : {}, { packets: a.spec.limits.maxPackets, bytes: a.spec.limits.maxBytes }, async (instance) => {
        if (tr.announcer) await tr.announcer.announceNow(instance);
      });
      if (applied.loaded) log.info({ key: applied.key, cached: applied.cached, compileMs: applied.compileMs, mtu: applied.mtu }, 'data plane loaded');
    } catch (err) {
      const [reason, state] =
        err instanceof KernelUnsupportedError ? ['KernelUnsupported', 'Failed'] as const
        : err instanceof VerifierError ? ['VerifierRejected', 'Failed'] as const
        : err instanceof CompileError ? ['CompileFailed', 'Failed'] as const
        : err instanceof UserError && err.exitCode === ExitCode.unreachable ? ['CollectorUnreachable', 'Degraded'] as const
        : ['CompileFailed', 'Failed'] as const;
      tr.state = state;
      tr.reason = reason;
      tr.message = errorMessage(err);
      tr.collectorReachable = reason !== 'CollectorUnreachable';
      log.warn({ reason, err: tr.message }, 'data plane not loaded');
      await this.writeStatus(a, { state, reason, message: tr.message, collectorReachable: tr.collectorReachable });
      // an unreachable collector can come back: retry later; a rejected program cannot
      if (reason === 'CollectorUnreachable') this.queue.addAfter(key, 10_000);
      return;
    }

    // 2. pods -> host-side interfaces
    const want = new Map<string, { pod: string; ifindex: number }>();
    const missing: string[] = [];
    for (const pod of a.spec.pods) {
      const r = await resolvePodInterface(this.runner, pod, this.opts.resolve ?? {});
      if (r) want.set(r.ifname, { pod: pod.name, ifindex: r.ifindex });
      else missing.push(pod.name);
    }
    // 3. the collector learns the names before the first packet of a new
    //    interface can reach it; then attach and detach the difference
    tr.interfaces = [...want.entries()].map(([name, w]) => ({ pod: w.pod, name, ifindex: w.ifindex, directions: directionsOf(cfg.direction) }));
    await this.announce(tr, cfg, log);
    for (const cur of session.interfaces()) if (!want.has(cur.dev)) await session.detach(cur.dev);
    for (const dev of want.keys()) await session.attach(dev, cfg.direction);
    let reachable = true;
    try {
      await probeCollector(cfg.collector);
    } catch {
      reachable = false;
    }
    tr.collectorReachable = reachable;
    if (!reachable) {
      tr.state = 'Degraded';
      tr.reason = 'CollectorUnreachable';
      tr.message = `collector ${cfg.collector.address}:${cfg.collector.port} does not answer (port unreachable); packets are mirrored but dropped there`;
      this.queue.addAfter(key, 10_000);
    } else if (missing.length) {
      tr.state = 'Degraded';
      tr.reason = 'InterfaceNotFound';
      tr.message = `no host-side interface found for pod(s) ${missing.join(', ')}`;
      this.queue.addAfter(key, 5_000);
    } else {
      tr.state = 'Attached';
      tr.reason = 'Attached';
      tr.message = `${want.size} interface(s) tapped`;
    }
    await this.reportOne(tr, a);
  }

  private async announce(tr: Tracked, cfg: DataplaneConfig, log: Logger): Promise<void> {
    const names = JSON.stringify(tr.interfaces);
    if (tr.announcer && tr.announced === `${cfg.collector.address}:${cfg.collector.port}`) {
      await tr.announcer.announceNow();
      return;
    }
    await tr.announcer?.stop();
    tr.announcer = new Announcer({
      collector: cfg.collector,
      node: this.opts.nodeName,
      sender: 'agent',
      tunnel: cfg.tunnel,
      snapLength: cfg.snapLength,
      key: this.opts.nodeKey,
      instance: () => tr.session.currentInstance,
      policy: tr.policy,
      interfaces: async () =>
        tr.interfaces.map((i) => ({ ifindex: i.ifindex, name: i.name, pod: { namespace: tr.policy.namespace, name: i.pod }, directions: i.directions })),
      logger: log,
    });
    try {
      await tr.announcer.start();
      tr.announced = `${cfg.collector.address}:${cfg.collector.port}`;
    } catch (err) {
      log.warn({ err: errorMessage(err), names }, 'announcer not started');
      tr.announcer = undefined;
    }
  }

  /** Detach everything of @t, keep its final counters in the status. */
  private async stop(t: Tracked, log: Logger, state: 'Detached' | 'Completed', reason: string | undefined): Promise<void> {
    try {
      t.final = await t.session.counters();
    } catch {
      /* maps may be gone already */
    }
    await t.announcer?.stop();
    t.announcer = undefined;
    await t.session.destroy();
    t.stopped = true;
    t.interfaces = [];
    t.state = state;
    t.reason = reason;
    t.message = state === 'Completed' ? 'a limit was reached; detached' : 'detached';
    log.info({ state }, 'capture stopped on this node');
    const a = this.informer.store.get(t.key);
    if (a) await this.reportOne(t, a);
  }

  private async reportOne(t: Tracked, a: SniffAssignment): Promise<void> {
    let counters: Counters | undefined = t.final;
    if (!t.stopped) {
      try {
        counters = await t.session.counters();
      } catch {
        /* report without counters */
      }
    }
    if (counters) this.opts.metrics?.observe(t.policy, counters);
    await this.writeStatus(a, {
      state: t.state,
      ...(t.reason ? { reason: t.reason } : {}),
      ...(t.message ? { message: t.message } : {}),
      interfaces: t.interfaces,
      attachedInterfaces: t.interfaces.length,
      collectorReachable: t.collectorReachable,
      ...(counters ? { counters: statusCounters(counters) } : {}),
    });
  }

  private async writeStatus(a: SniffAssignment, status: SniffAssignmentStatus): Promise<void> {
    const full: SniffAssignmentStatus = {
      ...status,
      observedGeneration: a.metadata.generation as number | undefined,
      lastReportTime: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    };
    try {
      await this.api.patchStatus(a.metadata.namespace, a.metadata.name!, { status: full });
      this.opts.metrics?.reported();
    } catch (err) {
      if (!isNotFound(err)) throw new Error('writing assignment status failed', { cause: err });
    }
  }

  /** Counters to every assignment's status; local enforcement of limits. */
  private async report(): Promise<void> {
    for (const t of this.tracked.values()) {
      const a = this.informer.store.get(t.key);
      if (!a || t.stopped) continue;
      try {
        const c = await t.session.counters();
        const l = a.spec.limits;
        const deadline = l.deadline ? Date.parse(l.deadline) : undefined;
        if ((deadline !== undefined && Date.now() >= deadline) || (l.maxPackets && c.mirrored.packets >= l.maxPackets) || (l.maxBytes && c.mirrored.bytes >= l.maxBytes)) {
          await this.stop(t, this.log.child({ assignment: t.key }), 'Completed', 'LimitReached');
          continue;
        }
        await t.announcer?.announceNow();
        await this.reportOne(t, a);
      } catch (err) {
        this.log.warn({ assignment: t.key, err: errorMessage(err) }, 'report failed');
      }
    }
  }

  /**
   * Stop acting. Sessions stay attached (an agent restart or rolling update must
   * not interrupt capture) unless @detach: uninstall.
   */
  async shutdown(opts: { detach?: boolean } = {}): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (this.reportTimer) clearInterval(this.reportTimer);
    this.queue.shutDown();
    await Promise.all(this.workers);
    await this.informer.stop();
    for (const t of this.tracked.values()) {
      await t.announcer?.stop();
      if (opts.detach && !t.stopped) await t.session.destroy();
    }
    // Uninstall leaves nothing: the sessions removed their pins, the directory
    // that held them goes too (rmdir: only when nothing else is pinned there).
    if (opts.detach) await rmdir(this.opts.pinRoot ?? PIN_ROOT).catch(() => undefined);
    this.log.info({ detached: !!opts.detach }, 'agent stopped');
  }
}
