/**
 * The node agent: this node's SniffAssignments are the desired state; one
 * node capture service (src/capture/service.ts) per assignment makes it so,
 * and each assignment's status says how it went. The assignments are the
 * entries of the node's stored SniffNodeAssignments (an AssignmentView
 * expands them); their statuses are written per stored object, all entries
 * at once (status-writer.ts).
 *
 *   view (own node's assignments only) ─┐
 *   report timer (every few seconds)   ─┴─► queue of assignment keys ─► sync(key) ─► status writer
 *
 *   sync(key), one key at a time (k8s/worker.ts):
 *     gone or deleting   → stop the capture (detach, remove), forget it
 *     spec.stopped       → stop the capture, keep its final counters (Completed)
 *     spec changed, or a retry is due
 *                        → resolve the pods' host-side interfaces, capture.apply()
 *     otherwise          → counters; a limit reached stops the capture;
 *                          announce again; write the status
 *
 * The loops only enqueue keys: everything that changes a capture happens in
 * sync, so a report can never race an apply or a stop of the same capture.
 *
 * Captures outlive the agent: kernel state is the source of truth, so a
 * restarted agent adopts them (no gap, no duplicate), and a policy changed
 * while it was down converges on the next sync.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, rmdir } from 'node:fs/promises';
import {
  AssignmentView, CaptureConfigSchema, LABEL_NODE, labelValue, type PolicyType, type SniffAssignment, type SniffAssignmentSpec, type SniffAssignmentStatus,
} from '../api/index.ts';
import { hooksFor, policyTypesCaptured } from '../capture/directions.ts';
import { CaptureService, type CaptureTarget } from '../capture/service.ts';
import {
  CompileError, createRunner, KernelUnsupportedError, LOSS_REASONS, lost, PIN_ROOT, VerifierError, type Counters, type Hook, type NodeBudget, type Runner,
} from '../datapath/index.ts';
import { objectKey, runWorkers, WorkQueue, type KubeClient, type SyncResult } from '../k8s/index.ts';
import { ExitCode, UserError, errorMessage } from '../util/errors.ts';
import { jsonEqual } from '../util/json.ts';
import { silentLogger, type Logger } from '../util/log.ts';
import type { NodeKeySource } from '../wire/auth.ts';
import { describeForeign, foreignPrograms } from './foreign.ts';
import { resolvePodInterface, type ResolveOptions } from './resolve.ts';
import type { AgentMetrics } from './metrics.ts';
import { StatusWriter, type ReportedStatus } from './status-writer.ts';
import { byCodePoint } from '../util/compare.ts';

export interface AgentOptions {
  client: KubeClient;
  nodeName: string;
  /**
   * The install namespace: the only one whose assignments this agent reads.
   * An assignment anywhere else is not a work order (tenants may own other
   * namespaces), and the agent's role is granted in this one only.
   */
  namespace: string;
  runner?: Runner;
  logger?: Logger;
  /** How often counters are written to each assignment's status. */
  reportIntervalMs?: number;
  /** How often each capture's interfaces are checked in the kernel (default DEFAULT_CHECK_MS). */
  checkIntervalMs?: number;
  /**
   * The data plane's lease: each capture stops mirroring by itself this long
   * after the agent last renewed it (renewed every third of it, without the
   * API), so a killed or hung agent's taps go quiet (default 30 s).
   */
  leaseMs?: number;
  /** This node's key: announcements to the collector are signed with it (wire/auth.ts). */
  nodeKey?: NodeKeySource | undefined;
  resolve?: ResolveOptions;
  metrics?: AgentMetrics;
  pinRoot?: string;
  cacheDir?: string;
  /** The node's mirror budget across every capture on it (written to the data plane's shared bucket); none: no budget. */
  nodeBudget?: NodeBudget | undefined;
  /**
   * The most capture sessions this node runs at once (0 or none: no cap). An
   * assignment beyond it is refused on this node (NodeSessionLimit) and
   * attached when a session ends, the oldest policy first; a running session
   * is never displaced.
   */
  maxSessions?: number | undefined;
}

interface Tracked {
  key: string;
  capture: CaptureService;
  policy: { namespace: string; name: string; uid: string };
  /** The assignment spec last applied (also when applying it failed): a new one is applied again. */
  applied: SniffAssignmentSpec | undefined;
  /** Apply again from this time on (epoch ms): a degraded capture retries. */
  retryAt: number | undefined;
  interfaces: { pod: string; name: string; ifindex: number; policyTypes: PolicyType[] }[];
  state: SniffAssignmentStatus['state'];
  reason: string | undefined;
  message: string | undefined;
  collectorReachable: boolean;
  /** the hooks tapped, and when (epoch ms) the kernel was last checked for them (podtap's filters there, nothing running first) */
  hooks: Hook[];
  checkedAt: number;
  /** detached (policy completed or assignment gone); final holds the last counters */
  stopped: boolean;
  /** The spec under which this node reached a limit and stopped: the same spec never resumes (a fresh budget). */
  limitStopped: SniffAssignmentSpec | undefined;
  final: Counters | undefined;
}

/** The data plane's lease when the agent is not told otherwise (AgentOptions.leaseMs). */
export const DEFAULT_LEASE_MS = 30_000;

/**
 * How often each capture's tapped interfaces are checked in the kernel
 * (AgentOptions.checkIntervalMs, `--check-interval`): podtap's filter still on
 * every tapped hook (attached again if someone removed it), and no program of
 * someone else running before it. One `tc filter show` per interface and
 * hook: a minute keeps that cost small on a node of hundreds of pods; the
 * gap a removed filter leaves is at most this long.
 */
export const DEFAULT_CHECK_MS = 60_000;

/**
 * Whether the capture of @a wants a session slot: it has none (@t absent) or
 * was stopped and resumes; not one running, nor one stopped at a limit under
 * this very spec (it never resumes with a fresh budget).
 */
function wantsSlot(t: Tracked | undefined, a: SniffAssignment): boolean {
  return !t || (t.stopped && !(t.limitStopped && jsonEqual(t.limitStopped, a.spec)));
}

export function sessionIdForPolicy(uid: string): string {
  return `a-${createHash('sha256').update(uid).digest('hex').slice(0, 12)}`;
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
  /** This node's assignments, expanded from its SniffNodeAssignments (the name is an informer's: the surface is one). */
  readonly informer: AssignmentView;
  /** Status reports, written per stored object. */
  private readonly status: StatusWriter;
  private readonly queue = new WorkQueue({ baseDelayMs: 200, maxDelayMs: 60_000 });
  private readonly tracked = new Map<string, Tracked>();
  /** Assignments that took a session slot and are opening their capture (not yet in tracked). */
  private readonly claiming = new Set<string>();
  /** Assignments refused a slot and told so (logged once, not on every report). */
  private readonly refused = new Set<string>();
  private reportTimer: NodeJS.Timeout | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private workers: Promise<void> | undefined;
  private running = false;

  constructor(opts: AgentOptions) {
    this.opts = opts;
    this.log = (opts.logger ?? silentLogger).child({ node: opts.nodeName });
    this.runner = opts.runner ?? createRunner();
    this.informer = new AssignmentView({
      client: opts.client,
      namespace: opts.namespace,
      labelSelector: `${LABEL_NODE}=${labelValue(opts.nodeName)}`,
      logger: this.log,
      // the agent acts on spec changes; its own status writes need no sync
      equal: (a, b) => jsonEqual(a.spec, b.spec) && a.metadata.deletionTimestamp === b.metadata.deletionTimestamp,
    });
    this.informer.on({
      add: (a) => this.queue.add(objectKey(a)),
      update: (_, a) => this.queue.add(objectKey(a)),
      delete: (a) => this.queue.add(objectKey(a)),
    });
    this.status = new StatusWriter({ client: opts.client, view: this.informer, logger: this.log, metrics: opts.metrics });
  }

  get sessions(): number {
    return this.tracked.size;
  }

  /** Policies refused a session slot on this node (--max-sessions), waiting for one. */
  get waitingSessions(): number {
    return this.refused.size;
  }

  async start(): Promise<void> {
    this.running = true;
    await this.adoptOrphans();
    this.informer.start();
    await this.informer.waitForSync();
    // adopted captures go to their assignments; the rest belong to policies
    // deleted while no agent ran, and are detached
    for (const a of this.informer.store.list()) {
      this.findTracked(objectKey(a), a.spec.policy.uid);
      this.queue.add(objectKey(a));
    }
    for (const t of [...this.tracked.values()]) if (t.key.startsWith('orphan:')) this.queue.add(t.key);
    this.workers = runWorkers({
      queue: this.queue,
      workers: 2,
      logger: this.log,
      keyField: 'assignment',
      sync: (key, log) => this.sync(key, log),
      observe: (result, seconds) => this.opts.metrics?.reconciled(result === 'error' ? 'error' : 'success', seconds),
    });
    // a report is a sync of each running capture: the timer only queues them
    this.reportTimer = setInterval(() => {
      for (const t of this.tracked.values()) if (!t.stopped && !t.key.startsWith('orphan:')) this.queue.add(t.key);
      // those refused a session slot report too, and take one that freed
      if (this.opts.maxSessions) for (const k of this.waiting()) this.queue.add(k);
    }, this.opts.reportIntervalMs ?? 5000);
    // renewing the data plane's lease needs no API: its own timer, not the queue's
    this.renewTimer = setInterval(() => void this.renew(), this.leaseMs / 3);
    this.log.info({ sessions: this.tracked.size }, 'agent started');
  }

  private openCapture(id: string, policy: Tracked['policy'] | null, log: Logger): Promise<CaptureService> {
    return CaptureService.open({
      id, node: this.opts.nodeName, sender: 'agent', key: this.opts.nodeKey, policy, runner: this.runner, logger: log,
      pinRoot: this.opts.pinRoot, cacheDir: this.opts.cacheDir, nodeBudget: this.opts.nodeBudget ?? { packetsPerSecond: 0, bytesPerSecond: 0 },
    });
  }

  /** Captures a previous agent left pinned: adopt them; the informer decides their fate. */
  private async adoptOrphans(): Promise<void> {
    const root = this.opts.pinRoot ?? PIN_ROOT;
    if (!existsSync(root)) return;
    for (const id of await readdir(root)) {
      if (!id.startsWith('a-')) continue;
      const capture = await this.openCapture(id, null, this.log);
      // the key is learned when the informer delivers the assignment
      this.tracked.set(`orphan:${id}`, this.newTracked(`orphan:${id}`, capture, { namespace: '', name: '', uid: '' }));
    }
  }

  private newTracked(key: string, capture: CaptureService, policy: Tracked['policy']): Tracked {
    return {
      key, capture, policy, applied: undefined, retryAt: undefined, interfaces: [], hooks: [], checkedAt: 0,
      state: 'Attaching', reason: undefined, message: undefined, collectorReachable: true, stopped: false, final: undefined, limitStopped: undefined,
    };
  }

  /**
   * Why @key may not take a session slot on this node now, or undefined when
   * it may. Sessions that run (attached, failed or adopted: anything not
   * stopped) hold their slot; the free ones go to the waiting assignments in
   * order of their policy's creation, then namespace/name, so the outcome
   * does not depend on which sync runs first.
   */
  private sessionRefusal(key: string): string | undefined {
    const cap = this.opts.maxSessions;
    if (!cap) return undefined;
    let taken = [...this.claiming].filter((k) => k !== key).length;
    for (const t of this.tracked.values()) if (!t.stopped && t.key !== key) taken++;
    const waiting = this.waiting();
    const ahead = Math.max(0, waiting.indexOf(key));
    if (ahead < cap - taken) return undefined;
    const queue = ahead ? `; ${ahead} older polic${ahead === 1 ? 'y waits' : 'ies wait'} before this one` : '';
    return `node ${this.opts.nodeName} runs ${taken} of the ${cap} capture sessions it may (agent --max-sessions)${queue}; attached when a session there ends`;
  }

  /** Keys of the assignments that want a session slot and hold none, oldest policy first. */
  private waiting(): string[] {
    const order = (a: SniffAssignment) => `${a.spec.policy.creationTimestamp ?? a.metadata.creationTimestamp ?? ''}\u0000${a.spec.policy.namespace}\u0000${a.spec.policy.name}`;
    return [...this.informer.store.list()]
      .filter((a) => a.metadata.namespace === this.opts.namespace && !a.metadata.deletionTimestamp && !a.spec.stopped && !this.claiming.has(objectKey(a)))
      .filter((a) => wantsSlot(this.tracked.get(objectKey(a)) ?? this.tracked.get(`orphan:${sessionIdForPolicy(a.spec.policy.uid)}`), a))
      .sort((a, b) => byCodePoint(order(a), order(b)))
      .map((a) => objectKey(a));
  }

  /** A session ended: the assignments waiting for a slot are synced again. */
  private slotFreed(): void {
    if (this.opts.maxSessions) for (const k of this.waiting()) this.queue.add(k);
  }

  private findTracked(key: string, uid: string | undefined): Tracked | undefined {
    const t = this.tracked.get(key);
    if (t) return t;
    if (!uid) return undefined;
    // an adopted capture: match it by the policy it was made for
    const orphanKey = `orphan:${sessionIdForPolicy(uid)}`;
    const o = this.tracked.get(orphanKey);
    if (o) {
      this.tracked.delete(orphanKey);
      o.key = key;
      this.tracked.set(key, o);
    }
    return o;
  }

  /** Make this node's capture for @key what its assignment says, and report. */
  async sync(key: string, attemptLog: Logger = this.log.child({ assignment: key })): Promise<SyncResult> {
    const stored = this.informer.store.get(key);
    // the watch is the install namespace's; whatever else arrives is ignored
    const a = stored && stored.metadata.namespace === this.opts.namespace ? stored : undefined;
    try {
      return await this.syncAssignment(key, a, attemptLog);
    } finally {
      // Acted on, also when the attempt threw (it is retried): the object's
      // observedGeneration waits for every entry's sync, and one entry that
      // keeps failing must not hold back the others' (it goes stale by its
      // own lastReportTime, as an assignment of its own did).
      if (a) this.status.synced(a);
      else this.status.forget(key);
    }
  }

  private async syncAssignment(key: string, a: SniffAssignment | undefined, attemptLog: Logger): Promise<SyncResult> {
    const log = a ? attemptLog.child({ policy: a.spec.policy.name }) : attemptLog;
    const t = this.findTracked(key, a?.spec.policy.uid);
    if (!a || a.metadata.deletionTimestamp) {
      if (t) await this.stop(t, log, 'Detached', undefined);
      if (key.startsWith('orphan:') || (t && !a)) {
        this.tracked.delete(t?.key ?? key);
        // its series go with it: capture policies are many and short-lived
        if (t) this.opts.metrics?.forget(t.policy);
      }
      if (t) this.slotFreed();
      this.refused.delete(key);
      return { result: 'detached' };
    }
    const policy = { namespace: a.spec.policy.namespace, name: a.spec.policy.name, uid: a.spec.policy.uid };
    if (a.spec.stopped) {
      if (t && !t.stopped) await this.stop(t, log, 'Completed', 'LimitReached');
      else if (!t) this.writeStatus(a, { state: 'Completed', reason: 'LimitReached', interfaces: [], attachedInterfaces: 0 });
      return { result: 'stopped' };
    }
    // a capture that holds no session slot (new, or resuming after a stop) takes one only if one is free for it
    if (wantsSlot(t, a)) {
      const refusal = this.sessionRefusal(key);
      if (refusal) {
        if (!this.refused.has(key)) log.info({ reason: 'NodeSessionLimit', message: refusal }, 'capture refused on this node: no session slot');
        this.refused.add(key);
        this.writeStatus(a, { state: 'Failed', reason: 'NodeSessionLimit', message: refusal, interfaces: [], attachedInterfaces: 0 });
        return { result: 'refused' };
      }
      this.refused.delete(key);
    }
    let tr = t;
    if (!tr) {
      // the slot is this key's from now on, while its capture opens
      this.claiming.add(key);
      try {
        tr = this.newTracked(key, await this.openCapture(sessionIdForPolicy(policy.uid), policy, log), policy);
        this.tracked.set(key, tr);
      } finally {
        this.claiming.delete(key);
      }
    }
    tr.policy = policy;
    tr.capture.policy = policy;
    if (tr.stopped) {
      // A limit reached here holds for the spec it was reached under: the
      // same spec again (a resync, a retry) must not attach with a fresh budget.
      if (tr.limitStopped && jsonEqual(tr.limitStopped, a.spec)) {
        await this.reportOne(tr, a);
        return { result: 'stopped' };
      }
      // resumed (a raised limit, a new generation): the capture starts again
      tr.stopped = false;
      tr.limitStopped = undefined;
      tr.applied = undefined;
    }
    const due = tr.applied === undefined || !jsonEqual(tr.applied, a.spec) || (tr.retryAt !== undefined && Date.now() >= tr.retryAt);
    return due ? this.apply(tr, a, log) : this.report(tr, a, log);
  }

  private async apply(tr: Tracked, a: SniffAssignment, log: Logger): Promise<SyncResult> {
    // until this spec is applied (or known to fail), every sync applies it
    tr.applied = undefined;
    tr.retryAt = undefined;
    // as the controller wrote it, every default applied (an older controller's
    // config gets the defaults of the fields it did not know). A config without
    // a field that has no safe default (hooks: podtap 0.1's config.direction
    // named them) is not guessed at: retried until the controller rewrites it.
    const parsed = CaptureConfigSchema.safeParse(a.spec.config);
    if (!parsed.success) {
      throw new Error(`spec.config cannot be captured with (${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}); waiting for the controller to rewrite it`, {
        cause: parsed.error,
      });
    }
    const cfg = parsed.data;
    // pods -> host-side interfaces
    const targets: CaptureTarget[] = [];
    const missing: string[] = [];
    for (const pod of a.spec.pods) {
      const r = await resolvePodInterface(this.runner, pod, this.opts.resolve ?? {});
      if (r) targets.push({ name: r.ifname, ifindex: r.ifindex, pod: { namespace: tr.policy.namespace, name: pod.name } });
      else missing.push(pod.name);
    }
    const l = a.spec.limits;
    let outcome;
    try {
      // the data plane enforces the node's cap on mirrored packets/bytes exactly
      outcome = await tr.capture.apply(cfg, targets, { deadline: l.deadline ? Date.parse(l.deadline) : undefined, maxPackets: l.maxPackets, maxBytes: l.maxBytes, leaseMs: this.leaseMs });
      if (outcome.loaded) log.info({ key: outcome.key, cached: outcome.cached, compileMs: outcome.compileMs, mtu: outcome.mtu }, 'data plane loaded');
    } catch (err) {
      // the node's trouble (an interface gone, tc): retried with backoff
      if (tr.capture.phase !== 'object') throw err;
      // the program's: the kernel, compile, verifier, no route to the collector
      tr.applied = a.spec;
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
      this.writeStatus(a, { state, reason, message: tr.message, collectorReachable: tr.collectorReachable });
      // an unreachable collector can come back: retry later; a rejected program cannot
      return reason === 'CollectorUnreachable' ? this.retry(tr, 10_000) : { result: 'failed' };
    }
    tr.applied = a.spec;
    tr.interfaces = targets.map((t) => ({ pod: t.pod!.name, name: t.name, ifindex: t.ifindex, policyTypes: policyTypesCaptured(cfg) }));
    tr.collectorReachable = outcome.unreachable === undefined;
    let result: SyncResult = { result: 'applied' };
    if (outcome.unreachable) {
      tr.state = 'Degraded';
      tr.reason = 'CollectorUnreachable';
      tr.message = `collector ${cfg.collector.address}:${cfg.collector.port} does not answer (port unreachable); packets are mirrored but dropped there`;
      result = this.retry(tr, 10_000);
    } else if (missing.length) {
      tr.state = 'Degraded';
      tr.reason = 'InterfaceNotFound';
      tr.message = `no host-side interface found for pod(s) ${missing.join(', ')}`;
      result = this.retry(tr, 5_000);
    } else {
      tr.state = 'Attached';
      tr.reason = 'Attached';
      tr.message = `${targets.length} interface(s) tapped`;
    }
    tr.hooks = hooksFor(cfg);
    tr.checkedAt = Date.now();
    await this.checkForeign(tr, log);
    await this.reportOne(tr, a);
    return result;
  }

  /**
   * podtap doctor's interface check on what this capture taps: a program that
   * runs first on a tapped hook turns an Attached capture Degraded
   * (ForeignProgramFirst), and back once it is gone. Checked on apply and
   * then every check interval: a CNI may attach after podtap did.
   */
  private async checkForeign(tr: Tracked, log: Logger): Promise<void> {
    const foreignBefore = tr.reason === 'ForeignProgramFirst';
    if (tr.stopped || !(tr.state === 'Attached' || foreignBefore)) return;
    let found;
    try {
      found = await foreignPrograms(this.runner, tr.interfaces.map((i) => ({ name: i.name, pod: i.pod })), tr.hooks);
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'checking for programs before ours failed');
      return;
    }
    if (found.length) {
      if (!foreignBefore) log.warn({ programs: found.length }, 'a program runs before podtap on a tapped interface');
      tr.state = 'Degraded';
      tr.reason = 'ForeignProgramFirst';
      tr.message = describeForeign(found);
    } else if (foreignBefore) {
      tr.state = 'Attached';
      tr.reason = 'Attached';
      tr.message = `${tr.interfaces.length} interface(s) tapped`;
    }
  }

  /** Apply @tr again in @ms (and not before: a report in between only reports). */
  private retry(tr: Tracked, ms: number): SyncResult {
    tr.retryAt = Date.now() + ms;
    return { result: 'degraded', requeueAfterMs: ms };
  }

  get leaseMs(): number {
    return this.opts.leaseMs ?? DEFAULT_LEASE_MS;
  }

  /**
   * Renew the data plane's lease of every capture an assignment still wants.
   * Not those adopted and not yet claimed by an assignment (orphans) nor
   * stopped ones: they go quiet when the lease a previous agent gave runs out.
   */
  private async renew(): Promise<void> {
    for (const t of this.tracked.values()) {
      if (t.stopped || t.key.startsWith('orphan:')) continue;
      try {
        await t.capture.renew();
      } catch (err) {
        this.log.warn({ assignment: t.key, err: errorMessage(err) }, 'lease renewal failed');
      }
    }
  }

  /** Counters to the status; a limit reached stops the capture on this node. */
  private async report(tr: Tracked, a: SniffAssignment, log: Logger): Promise<SyncResult> {
    const counters = await tr.capture.counters().catch(() => undefined);
    if (counters && tr.capture.limitReached(counters)) {
      await this.stop(tr, log, 'Completed', 'LimitReached');
      tr.limitStopped = a.spec;
      return { result: 'stopped' };
    }
    await tr.capture.reannounce();
    if (Date.now() - tr.checkedAt >= (this.opts.checkIntervalMs ?? DEFAULT_CHECK_MS)) {
      tr.checkedAt = Date.now();
      // the kernel is the truth: a filter someone removed (a CNI that resets the
      // veth's clsact, an admin's tc) is attached again, not reported Attached
      const gone = await tr.capture.missingTaps().catch((err: unknown) => {
        log.warn({ err: errorMessage(err) }, "checking podtap's filters failed");
        return [];
      });
      if (gone.length) {
        log.warn({ gone: gone.map((g) => `${g.dev} ${g.hook}`) }, "podtap's filter is gone from a tapped hook (someone removed it): attaching again");
        this.opts.metrics?.reattached(gone.length);
        return this.apply(tr, a, log);
      }
      await this.checkForeign(tr, log);
    }
    await this.reportOne(tr, a, counters);
    return { result: 'reported' };
  }

  /** Detach everything of @t, keep its final counters in the status. */
  private async stop(t: Tracked, log: Logger, state: 'Detached' | 'Completed', reason: string | undefined): Promise<void> {
    t.final = await t.capture.stop();
    t.stopped = true;
    t.interfaces = [];
    t.state = state;
    t.reason = reason;
    t.message = state === 'Completed' ? 'a limit was reached; detached' : 'detached';
    log.info({ state }, 'capture stopped on this node');
    this.slotFreed();
    const a = this.informer.store.get(t.key);
    if (a) await this.reportOne(t, a);
  }

  private async reportOne(t: Tracked, a: SniffAssignment, current?: Counters): Promise<void> {
    let counters: Counters | undefined = t.stopped ? t.final : current;
    if (!t.stopped && !counters) {
      try {
        counters = await t.capture.counters();
      } catch {
        /* report without counters */
      }
    }
    if (counters) this.opts.metrics?.observe(t.policy, counters);
    this.writeStatus(a, {
      state: t.state,
      ...(t.reason ? { reason: t.reason } : {}),
      ...(t.message ? { message: t.message } : {}),
      interfaces: t.interfaces,
      attachedInterfaces: t.interfaces.length,
      collectorReachable: t.collectorReachable,
      ...(counters ? { counters: statusCounters(counters) } : {}),
    });
  }

  /**
   * Record @a's status for its object's next status write, without waiting
   * for it: the statuses of a report round go out together only if the syncs
   * that record them do not each wait for a write (two workers would make it
   * a write per entry or two). A failed write is retried by the writer (it
   * holds the latest status of every entry), not by syncing again.
   */
  private writeStatus(a: SniffAssignment, status: Omit<ReportedStatus, 'lastReportTime'>): void {
    const full: ReportedStatus = { ...status, lastReportTime: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z') };
    this.status.write(a, full).catch((err: unknown) => this.log.debug({ assignment: objectKey(a), err }, 'status not written'));
  }

  /**
   * Stop acting. Captures stay attached (an agent restart or rolling update must
   * not interrupt capture) unless @detach: uninstall.
   */
  async shutdown(opts: { detach?: boolean } = {}): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (this.reportTimer) clearInterval(this.reportTimer);
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.queue.shutDown();
    await this.workers;
    // the last statuses the syncs recorded (a detached capture's final counters)
    await this.status.drain();
    await this.informer.stop();
    for (const t of this.tracked.values()) {
      if (opts.detach && !t.stopped) await t.capture.stop();
      else await t.capture.close();
    }
    // Uninstall leaves nothing: the sessions removed their pins, the directory
    // that held them goes too (rmdir: only when nothing else is pinned there).
    if (opts.detach) await rmdir(this.opts.pinRoot ?? PIN_ROOT).catch(() => undefined);
    this.log.info({ detached: !!opts.detach }, 'agent stopped');
  }
}
