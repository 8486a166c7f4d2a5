/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go does it:
 * a candidate takes the lease when it is free or its holder has not renewed
 * it for leaseDuration (measured on our own clock, from when we last saw the
 * record change, so clock skew between replicas does not matter); the leader
 * renews every renewInterval and, after a failed renewal, retries every
 * retryPeriod; if it cannot renew within renewDeadline (shorter than the
 * lease, so it stops before anyone else may start) or sees another holder,
 * it has lost. Every write is conditional on the resourceVersion read, so two
 * candidates cannot both win.
 *
 * On losing, the caller stops reconciling at once (the CLI exits, as
 * controller-runtime does: a restarted process starts clean as a candidate).
 * On a graceful stop the leader releases the lease (empty holder), so a
 * standby takes over on its next retry instead of waiting out the lease.
 */
import type { Logger } from '../util/log.ts';
import { silentLogger } from '../util/log.ts';
import type { KubeClient, KubeObject } from './client.ts';
import { httpStatus, isConflict, isNotFound } from './errors.ts';
import { Resources } from './resources.ts';

export interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number;
  acquireTime?: string | null;
  renewTime?: string | null;
  leaseTransitions?: number;
}

export interface Lease extends KubeObject {
  spec?: LeaseSpec;
}

export interface LeaderTimings {
  leaseDurationMs: number;
  renewIntervalMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

export const DEFAULT_TIMINGS: LeaderTimings = { leaseDurationMs: 15_000, renewIntervalMs: 5_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

export interface LeaderElectorOptions {
  client: KubeClient;
  namespace: string;
  name: string;
  identity: string;
  timings?: Partial<LeaderTimings> | undefined;
  logger?: Logger | undefined;
  onStartedLeading: () => void;
  /** Leadership lost (not called after stop()). */
  onStoppedLeading: () => void;
}

/** metav1.MicroTime: RFC 3339 with microseconds. */
export function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

type Attempt = 'held' | 'taken' | 'failed';

export class LeaderElector {
  private readonly opts: LeaderElectorOptions;
  private readonly t: LeaderTimings;
  private readonly log: Logger;
  private leading = false;
  private stopped = false;
  private observedRv: string | undefined;
  private observedAt = 0;
  private lease: Lease | undefined;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;

  constructor(opts: LeaderElectorOptions) {
    this.opts = opts;
    this.t = { ...DEFAULT_TIMINGS, ...opts.timings };
    if (this.t.renewDeadlineMs >= this.t.leaseDurationMs) throw new Error('leader election: renewDeadline must be shorter than leaseDuration');
    this.log = (opts.logger ?? silentLogger).child({ lease: `${opts.namespace}/${opts.name}`, identity: opts.identity });
  }

  isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Stop campaigning; the leader releases the lease unless `release` is false. */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
    if (this.leading && opts.release !== false) await this.release();
    this.leading = false;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const wake = () => done();
      this.wake = wake;
      function done() {
        clearTimeout(timer);
        resolve();
      }
    });
  }

  private async run(): Promise<void> {
    while (!this.stopped && !this.leading) {
      if ((await this.tryAcquireOrRenew()) === 'taken') {
        this.leading = true;
        if (this.stopped) return; // stop() releases what we just took
        this.log.info('became leader');
        this.opts.onStartedLeading();
        break;
      }
      await this.sleep(this.t.retryPeriodMs);
    }
    let lastRenew = performance.now();
    let wait = this.t.renewIntervalMs;
    while (!this.stopped && this.leading) {
      await this.sleep(wait);
      if (this.stopped) break;
      const r = await this.tryAcquireOrRenew();
      if (r === 'taken') {
        lastRenew = performance.now();
        wait = this.t.renewIntervalMs;
        continue;
      }
      if (r === 'held' || performance.now() - lastRenew >= this.t.renewDeadlineMs) {
        this.leading = false;
        this.log.error({ holder: this.lease?.spec?.holderIdentity, sinceRenewMs: Math.round(performance.now() - lastRenew) }, 'leadership lost');
        if (!this.stopped) this.opts.onStoppedLeading();
        return;
      }
      wait = this.t.retryPeriodMs;
    }
  }

  private async tryAcquireOrRenew(): Promise<Attempt> {
    const { client, namespace, name, identity } = this.opts;
    const now = new Date();
    const durationSeconds = Math.max(1, Math.round(this.t.leaseDurationMs / 1000));
    let lease: Lease;
    try {
      lease = await client.get<Lease>(Resources.leases, namespace, name);
    } catch (err) {
      if (!isNotFound(err)) {
        this.log.warn({ err, status: httpStatus(err) }, 'cannot read the lease');
        return 'failed';
      }
      try {
        this.lease = await client.create<Lease>(Resources.leases, {
          metadata: { name, namespace },
          spec: { holderIdentity: identity, leaseDurationSeconds: durationSeconds, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: 0 },
        });
        this.observe(this.lease);
        return 'taken';
      } catch (err2) {
        if (!isConflict(err2)) this.log.warn({ err: err2 }, 'cannot create the lease');
        return 'failed';
      }
    }
    this.observe(lease);
    const holder = lease.spec?.holderIdentity ?? '';
    if (holder && holder !== identity) {
      const ttlMs = (lease.spec?.leaseDurationSeconds ?? durationSeconds) * 1000;
      if (performance.now() < this.observedAt + ttlMs) return 'held';
    }
    const spec: LeaseSpec = { ...lease.spec, holderIdentity: identity, leaseDurationSeconds: durationSeconds, renewTime: microTime(now) };
    if (holder !== identity) {
      spec.acquireTime = microTime(now);
      spec.leaseTransitions = (lease.spec?.leaseTransitions ?? 0) + 1;
    }
    try {
      this.lease = await client.replace<Lease>(Resources.leases, { ...lease, spec });
      this.observe(this.lease);
      return 'taken';
    } catch (err) {
      if (!isConflict(err)) this.log.warn({ err, status: httpStatus(err) }, 'cannot update the lease');
      return 'failed';
    }
  }

  private observe(lease: Lease): void {
    this.lease = lease;
    if (lease.metadata.resourceVersion !== this.observedRv) {
      this.observedRv = lease.metadata.resourceVersion;
      this.observedAt = performance.now();
    }
  }

  private async release(): Promise<void> {
    const lease = this.lease;
    if (!lease || lease.spec?.holderIdentity !== this.opts.identity) return;
    const now = microTime(new Date());
    try {
      await this.opts.client.replace<Lease>(Resources.leases, {
        ...lease,
        spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: now, acquireTime: now },
      });
      this.log.info('lease released');
    } catch (err) {
      this.log.warn({ err }, 'cannot release the lease; a standby takes over when it expires');
    }
  }
}
