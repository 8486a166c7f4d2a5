/**
 * The node capture service: one capture on one node, whoever asks for it (the
 * agent for an assignment, `podtap sniff` for a policy file). It owns what
 * both need and must do the same way: the data-plane session, the announcer
 * that names the interfaces to the collector, the order in which they act,
 * the limits and the counters.
 *
 *   apply(config, interfaces, limits)
 *     1. the object for this configuration (compiled, cached, loaded): a new
 *        object is announced before traffic reaches it;
 *     2. the interfaces announced, so the collector knows each name before
 *        its first packet can arrive;
 *     3. then attached, and the ones no longer wanted detached;
 *     4. the collector probed. A caller that cannot work without it (sniff)
 *        has it probed before 2 instead, and nothing is announced or attached
 *        when it does not answer; the agent attaches first (the probe takes a
 *        third of a second) and reports the collector unreachable.
 *   counters(), limitReached(): what was mirrored, and whether a limit is met.
 *   renew(): push the data plane's lease forward; a caller that stops
 *     renewing (killed, hung) leaves taps that go quiet by themselves.
 *   stop(): the final counters, then everything detached and removed.
 *   close(): stop announcing but leave the capture attached (an agent restart
 *     must not interrupt it; the next process adopts the session).
 */
import { hostname } from 'node:os';
import type { CaptureConfig } from '../api/index.ts';
import { Session, type ApplyResult, type Counters, type Hook, type NodeBudget, type Runner } from '../datapath/index.ts';
import { errorMessage, UserError } from '../util/errors.ts';
import { silentLogger, type Logger } from '../util/log.ts';
import { nodeNameOf } from '../wire/announce.ts';
import type { NodeKeySource } from '../wire/auth.ts';
import { Announcer, probeCollector } from './announcer.ts';
import { hooksFor, policyTypesCaptured } from './directions.ts';

/** An interface to capture: the host side of a pod's veth, or any interface of a host. */
export interface CaptureTarget {
  name: string;
  ifindex: number;
  /** The pod behind it (announced as namespace/name), null for a plain interface. */
  pod: { namespace: string; name: string } | null;
}

/** When the capture on this node must stop; 0 = no such limit. */
export interface CaptureLimits {
  /** Epoch milliseconds; the data plane stops mirroring at it by itself. */
  deadline?: number | undefined;
  maxPackets: number;
  maxBytes: number;
  /**
   * A lease the caller renews (renew()): without renewal, the data plane
   * stops mirroring this long (ms) after the last one. None: no lease.
   */
  leaseMs?: number | undefined;
}

export type LimitName = 'duration' | 'maxPackets' | 'maxBytes';

export interface CaptureServiceOptions {
  /** Session id ([a-z0-9-], stable across restarts of the same capture). */
  id: string;
  /** Node name announced to the collector; default: this host's name, made a valid one. */
  node?: string | undefined;
  sender: 'agent' | 'sniff';
  /** This node's key: announcements are signed with it (wire/auth.ts); none: unsigned. */
  key?: NodeKeySource | undefined;
  /** The policy announced with the interfaces. */
  policy: { namespace: string; name: string; uid: string } | null;
  runner?: Runner | undefined;
  logger?: Logger | undefined;
  pinRoot?: string | undefined;
  cacheDir?: string | undefined;
  /** The node's mirror budget this caller sets (the agent's); undefined: shared, never written (sniff). */
  nodeBudget?: NodeBudget | undefined;
}

export interface ApplyOutcome extends ApplyResult {
  /** Why the collector looks unreachable (nothing listens, no route); undefined when it answered. */
  unreachable: UserError | undefined;
  /** The interfaces now captured. */
  interfaces: CaptureTarget[];
}

export class CaptureService {
  readonly session: Session;
  /** The policy announced with the interfaces (an adopted capture learns it later). */
  policy: { namespace: string; name: string; uid: string } | null;
  private readonly opts: CaptureServiceOptions;
  private readonly log: Logger;
  private announcer: Announcer | undefined;
  /** The collector the announcer talks to, `address:port`. */
  private announcing = '';
  private targets: CaptureTarget[] = [];
  private limits: CaptureLimits = { maxPackets: 0, maxBytes: 0 };
  /**
   * Where apply() is, or stopped: 'object' while compiling and loading (a
   * failure there is the program's: compile, verifier, no route), 'collector'
   * for sniff's probe, 'attach' while announcing and attaching (a failure
   * there is the node's: an interface gone, tc), 'done'.
   */
  phase: 'object' | 'collector' | 'attach' | 'done' = 'done';

  private constructor(session: Session, opts: CaptureServiceOptions) {
    this.session = session;
    this.opts = opts;
    this.policy = opts.policy;
    this.log = opts.logger ?? silentLogger;
  }

  /** Open the capture, adopting what a previous process left attached. */
  static async open(opts: CaptureServiceOptions): Promise<CaptureService> {
    const session = await Session.open({
      id: opts.id,
      ...(opts.runner ? { runner: opts.runner } : {}),
      ...(opts.logger ? { logger: opts.logger } : {}),
      ...(opts.pinRoot ? { pinRoot: opts.pinRoot } : {}),
      ...(opts.cacheDir ? { cacheDir: opts.cacheDir } : {}),
      ...(opts.nodeBudget ? { nodeBudget: opts.nodeBudget } : {}),
    });
    return new CaptureService(session, opts);
  }

  get id(): string {
    return this.session.id;
  }

  /** The interfaces captured, as the last apply() left them. */
  get interfaces(): CaptureTarget[] {
    return this.targets;
  }

  /**
   * Capture @targets with @config within @limits (the data plane enforces the
   * packet and byte caps exactly; the deadline is checked by limitReached).
   * With requireCollector, an unreachable collector is thrown before anything
   * is announced or attached.
   */
  async apply(config: CaptureConfig, targets: CaptureTarget[], limits: CaptureLimits, opts: { requireCollector?: boolean } = {}): Promise<ApplyOutcome> {
    this.limits = limits;
    this.phase = 'object';
    const expiry = { deadline: limits.deadline, leaseMs: limits.leaseMs };
    const applied = await this.session.apply(config, config.mtu ? { mtu: config.mtu } : {}, { packets: limits.maxPackets, bytes: limits.maxBytes, ...expiry }, async (instance) => {
      // a swapped-in object announces itself before its first copy can arrive
      await this.announcer?.announceNow(instance);
    });
    this.phase = 'collector';
    if (opts.requireCollector) await probeCollector(config.collector);
    this.phase = 'attach';
    this.targets = targets;
    await this.announce(config);
    const hooks = hooksFor(config);
    const wanted = new Set(targets.map((t) => t.name));
    for (const cur of this.session.interfaces()) if (!wanted.has(cur.dev)) await this.session.detach(cur.dev);
    for (const t of targets) await this.session.attach(t.name, hooks);
    let unreachable: UserError | undefined;
    if (!opts.requireCollector) {
      try {
        await probeCollector(config.collector);
      } catch (err) {
        if (!(err instanceof UserError)) throw err;
        unreachable = err;
      }
    }
    this.phase = 'done';
    return { ...applied, unreachable, interfaces: targets };
  }

  /** Announce the interfaces now; a new collector gets a new announcer. */
  private async announce(config: CaptureConfig): Promise<void> {
    const collector = `${config.collector.address}:${config.collector.port}`;
    if (this.announcer && this.announcing === collector) {
      await this.announcer.announceNow();
      return;
    }
    await this.announcer?.stop();
    const policyTypes = policyTypesCaptured(config);
    this.announcer = new Announcer({
      collector: config.collector,
      node: this.opts.node ?? nodeNameOf(hostname()),
      sender: this.opts.sender,
      tunnel: config.tunnel.protocol,
      snapLength: config.snapLength,
      key: this.opts.key,
      instance: () => this.session.currentInstance,
      policy: this.policy,
      interfaces: async () => this.targets.map((t) => ({ ifindex: t.ifindex, name: t.name, pod: t.pod, directions: policyTypes })),
      logger: this.log,
    });
    try {
      await this.announcer.start();
      this.announcing = collector;
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'announcer not started');
      this.announcer = undefined;
    }
  }

  /** Change the limits (a deadline counted from the first attachment): the data plane's expiry follows. */
  async setLimits(limits: CaptureLimits): Promise<void> {
    this.limits = limits;
    await this.session.setExpiry({ deadline: limits.deadline, leaseMs: limits.leaseMs });
  }

  /** Push the data plane's lease forward (CaptureLimits.leaseMs); false when there is none. */
  renew(): Promise<boolean> {
    return this.session.renew();
  }

  /** The tapped hooks whose podtap filter someone removed (Session.missingTaps). */
  missingTaps(): Promise<{ dev: string; hook: Hook }[]> {
    return this.session.missingTaps();
  }

  /** Announce again (a restarted collector learns the names from the next one). */
  async reannounce(): Promise<void> {
    await this.announcer?.announceNow();
  }

  /** The counters of this capture (across object swaps in this process). */
  counters(): Promise<Counters> {
    return this.session.counters();
  }

  /**
   * The limit @counters (this capture's, or any the caller counts from) have
   * reached at @now, if any.
   */
  limitReached(counters: Counters, now = Date.now()): LimitName | undefined {
    const l = this.limits;
    if (l.deadline !== undefined && now >= l.deadline) return 'duration';
    if (l.maxPackets && counters.mirrored.packets >= l.maxPackets) return 'maxPackets';
    if (l.maxBytes && counters.mirrored.bytes >= l.maxBytes) return 'maxBytes';
    return undefined;
  }

  /** Detach everything and remove the session; the final counters, when they could be read. */
  async stop(): Promise<Counters | undefined> {
    let final: Counters | undefined;
    try {
      final = await this.session.counters();
    } catch {
      /* the maps may be gone already */
    }
    await this.close();
    await this.session.destroy();
    this.targets = [];
    return final;
  }

  /** Stop announcing; the capture stays attached for the next process to adopt. */
  async close(): Promise<void> {
    const a = this.announcer;
    this.announcer = undefined;
    this.announcing = '';
    await a?.stop();
  }
}
