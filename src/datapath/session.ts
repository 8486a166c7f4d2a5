/**
 * A capture session: one data-plane object (tap + tunnel programs, maps) with
 * its capture device, attached to any number of interfaces. One per policy on
 * a node (agent) or per `podtap sniff` policy (standalone).
 *
 * Kernel state is the source of truth, so a restarted process adopts what a
 * previous one attached:
 *   /sys/fs/bpf/podtap/<session>/<object key>/{pt_tap_ingress,pt_tap_egress,pt_tunnel,maps/}
 *   capture device ptc<id> (peer ptp<id>), tunnel program at its egress
 *   tc filters on each tapped interface whose program id is one of the session's
 *   /sys/fs/bpf/podtap/node_budget_v1: the node's mirror budget, which every
 *     session's objects share (node-budget.ts)
 * A configuration change loads a new object and swaps every filter in place
 * (`tc filter replace` at the same preference): no moment without a tap, never
 * two taps of the same session on one hook.
 */
import { randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { release } from 'node:os';
import { join } from 'node:path';
import { ExitCode, UserError } from '../util/errors.ts';
import { silentLogger, type Logger } from '../util/log.ts';
import {
  describePinned, readConfig, readCounters, writeCidrs, writeConfig, type PinnedObject, type RuntimeConfig,
} from './bpftool.ts';
import { compileObject } from './compile.ts';
import { compileDefines, type DataplaneConfig, type NodeParams } from './config.ts';
import { addCounters, emptyCounters, type Counters } from './counters.ts';
import { CommandError, createRunner, type Runner } from './exec.ts';
import { carrierMtuRefusal, kernelVariant } from './features.ts';
import { loadSharingNodeBudget, releaseNodeBudget, writeNodeBudget, type NodeBudget } from './node-budget.ts';
import { captureDeviceNames, deleteLink, ensureCaptureDevice, getLink, listLinks, routeTo, type Route } from './netdev.ts';
import { choosePref, deleteFilter, ensureClsact, listFilters, replaceFilter, type Hook } from './tc.ts';
import { possibleCpus } from './tools.ts';

export const PIN_ROOT = process.env.PODTAP_PIN_ROOT ?? '/sys/fs/bpf/podtap';
export const STATE_DIR = process.env.PODTAP_STATE_DIR ?? '/run/podtap';

export interface SessionOptions {
  /** Session id: [a-z0-9-], stable across restarts of the same capture. */
  id: string;
  runner?: Runner;
  cacheDir?: string;
  pinRoot?: string;
  stateDir?: string;
  logger?: Logger;
  /**
   * The node's mirror budget, written to the node's shared map whenever it
   * differs (the agent's); undefined: the map is shared but left as it is
   * (`podtap sniff`: bound by whatever budget the node's agent set).
   */
  nodeBudget?: NodeBudget | undefined;
}

export interface ApplyResult {
  /** true when a new object was loaded (first time or configuration change). */
  loaded: boolean;
  /** true when the object came from the compile cache. */
  cached: boolean;
  compileMs: number;
  key: string;
  route: Route;
  mtu: number;
  instance: number;
}

export interface Attachment {
  dev: string;
  /** tc hooks tapped: ingress = packets the pod sends, egress = packets to it. */
  hooks: Hook[];
}

/** When a session's data plane stops mirroring by itself. */
export interface Expiry {
  /** The policy's deadline, epoch ms (spec.limits.duration). */
  deadline?: number | undefined;
  /** A lease the owner renews (renew()); without renewal mirroring stops this long after the last one. */
  leaseMs?: number | undefined;
}

export class Session {
  readonly id: string;
  readonly runner: Runner;
  private readonly log: Logger;
  private readonly cacheDir: string | undefined;
  private readonly pinRoot: string;
  private readonly stateDir: string;
  private object: PinnedObject | undefined;
  private objectKey: string | undefined;
  private instance = 0;
  private route: Route | undefined;
  /** Counters of objects this session replaced (maps die with their object). */
  private baseline: Counters = emptyCounters();
  /** What pt_config of the current object holds (renew() rewrites it with a new expiry). */
  private runtime: RuntimeConfig | undefined;
  /** When mirroring must stop: the policy's deadline (epoch ms) and the lease the owner renews (ms). */
  private expiry: Expiry = {};
  /** The pt_config write under way (serialized()). */
  private configWrites: Promise<void> = Promise.resolve();
  private readonly attachments = new Map<string, Attachment>();
  /** Program ids of objects adopted at open() that are not the current one. */
  private staleIds = new Set<number>();
  /** The capture device's MTU where the kernel's XDP lacks frags (features.ts). */
  private carrierMtu: number | undefined;
  private readonly nodeBudget: NodeBudget | undefined;

  private constructor(opts: SessionOptions) {
    if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(opts.id)) throw new Error(`invalid session id "${opts.id}"`);
    this.id = opts.id;
    this.runner = opts.runner ?? createRunner();
    this.log = (opts.logger ?? silentLogger).child({ session: opts.id });
    this.cacheDir = opts.cacheDir;
    this.pinRoot = opts.pinRoot ?? PIN_ROOT;
    this.stateDir = opts.stateDir ?? STATE_DIR;
    this.nodeBudget = opts.nodeBudget;
  }

  get dir(): string {
    return join(this.pinRoot, this.id);
  }

  get capture(): { dev: string; peer: string } {
    return captureDeviceNames(this.id);
  }

  /** Open a session, adopting whatever a previous process left attached. */
  static async open(opts: SessionOptions): Promise<Session> {
    const s = new Session(opts);
    await ensureBpffs(s.runner, s.pinRoot);
    await s.adopt();
    return s;
  }

  private async pinnedObjects(): Promise<string[]> {
    if (!existsSync(this.dir)) return [];
    return (await readdir(this.dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
  }

  private async adopt(): Promise<void> {
    const keys = await this.pinnedObjects();
    if (!keys.length) return;
    const objects = new Map<string, PinnedObject>();
    for (const key of keys) {
      try {
        objects.set(key, await describePinned(join(this.dir, key), this.runner));
      } catch (err) {
        this.log.warn({ key, err }, 'unusable pinned object removed');
        await rm(join(this.dir, key), { recursive: true, force: true });
      }
    }
    // The current object is the one the capture device's tunnel filter runs.
    const tunnel = (await listFilters(this.runner, this.capture.dev, 'egress'))[0];
    let current = [...objects.entries()].find(([, o]) => o.progs.pt_tunnel.id === tunnel?.progId);
    current ??= [...objects.entries()][0];
    if (!current) return;
    const [key, obj] = current;
    this.object = obj;
    this.objectKey = key;
    this.instance = (await readConfig(obj.maps, this.runner)).instance;
    // Interfaces tapped by any of this session's objects.
    const ids = new Map<number, string>();
    for (const o of objects.values()) for (const p of Object.values(o.progs)) ids.set(p.id, p.path);
    for (const [k, o] of objects) if (k !== key) for (const p of Object.values(o.progs)) this.staleIds.add(p.id);
    for (const link of await listLinks(this.runner)) {
      const hooks: Hook[] = [];
      for (const hook of ['ingress', 'egress'] as const) {
        if ((await listFilters(this.runner, link.ifname, hook)).some((f) => ids.has(f.progId) && f.progName.startsWith('pt_tap'))) hooks.push(hook);
      }
      if (hooks.length && link.ifname !== this.capture.dev) this.attachments.set(link.ifname, { dev: link.ifname, hooks });
    }
    this.log.info({ key, interfaces: [...this.attachments.keys()], stale: keys.length - 1 }, 'adopted existing session');
  }

  /** Interfaces currently tapped, with their hooks. */
  interfaces(): Attachment[] {
    return [...this.attachments.values()];
  }

  get loadedKey(): string | undefined {
    return this.objectKey;
  }

  get pinned(): PinnedObject | undefined {
    return this.object;
  }

  get currentInstance(): number {
    return this.instance;
  }

  /**
   * Make the session run @cfg: resolve the route to the collector, compile
   * (cached), load and pin if the object changed, configure it, and move the
   * tunnel and every tapped interface to it.
   */
  async apply(
    cfg: DataplaneConfig,
    node: Partial<NodeParams> = {},
    limits: { packets?: number; bytes?: number } & Expiry = {},
    /** Called with a new object's instance before traffic reaches it (announce it first). */
    beforeSwap?: (instance: number) => Promise<void>,
  ): Promise<ApplyResult> {
    const route = await routeTo(this.runner, cfg.collector.address);
    if (!route) {
      throw new UserError(`no route to the collector ${cfg.collector.address}`, {
        exitCode: ExitCode.unreachable,
        hint: 'check the collector address and the node routing table (ip route get ADDRESS)',
      });
    }
    const mtu = node.mtu || route.mtu;
    const params: NodeParams = { mtu, nrCpus: node.nrCpus ?? (await possibleCpus()) };
    // the variant this kernel can run (features.ts), or KernelUnsupportedError
    const kernel = await kernelVariant(this.runner, { pinRoot: this.pinRoot, stateDir: this.stateDir, ...(this.cacheDir ? { cacheDir: this.cacheDir } : {}) });
    const defines = [...compileDefines(cfg, params), ...kernel.defines];
    const compiled = await compileObject(defines, { runner: this.runner, ...(this.cacheDir ? { cacheDir: this.cacheDir } : {}) });
    this.carrierMtu = kernel.xdpFrags ? undefined : mtu;
    const capture = await ensureCaptureDevice(this.runner, this.id, { queues: params.nrCpus, mtu: this.carrierMtu });
    const loaded = compiled.key !== this.objectKey;
    const previous = this.object;
    this.expiry = { deadline: limits.deadline, leaseMs: limits.leaseMs };

    // the budget left for this object: what the limits allow minus what the
    // objects this session replaced mirrored
    const budget = (base: Counters) => ({
      budgetPackets: limits.packets ? Math.max(1, limits.packets - base.mirrored.packets) : 0,
      budgetBytes: limits.bytes ? Math.max(1, limits.bytes - base.mirrored.bytes) : 0,
    });
    if (loaded) {
      if (previous) {
        try {
          this.baseline = addCounters(this.baseline, await readCounters(previous.maps, this.runner));
        } catch (err) {
          this.log.warn({ err }, 'counters of the replaced object could not be read');
        }
      }
      const dir = join(this.dir, compiled.key);
      await rm(dir, { recursive: true, force: true });
      await mkdir(this.dir, { recursive: true });
      const obj = await loadSharingNodeBudget(compiled.path, dir, { runner: this.runner, logDir: this.stateDir, key: compiled.key, pinRoot: this.pinRoot });
      await this.writeNodeBudget();
      let instance = randomInt(1, 0x10000);
      while (instance === this.instance) instance = randomInt(1, 0x10000);
      await writeCidrs(obj.maps, cfg.filter.cidrs, this.runner);
      const runtime: RuntimeConfig = {
        enabled: true, captureIfindex: capture.ifindex, instance, routeIfindex: route.ifindex,
        src: route.src, dst: cfg.collector.address, ...budget(this.baseline),
      };
      await this.writeRuntime(obj.maps, runtime);
      const oldIds = previous ? new Set(Object.values(previous.progs).map((p) => p.id)) : new Set<number>();
      const previousInstance = this.instance;
      this.instance = instance;
      try {
        await beforeSwap?.(instance);
      } catch (err) {
        this.log.warn({ err }, 'before-swap hook failed');
      }
      this.instance = previousInstance;
      // Emit stage, then tunnel, then taps: each stage is in place before the
      // one feeding it moves to the new object.
      await this.attachStages(obj, oldIds);
      this.object = obj;
      this.runtime = runtime;
      this.objectKey = compiled.key;
      this.instance = instance;
      for (const a of this.attachments.values()) await this.attachHooks(a.dev, a.hooks, oldIds);
      if (previous) await rm(previous.dir, { recursive: true, force: true });
      await this.removeStaleObjects();
      this.log.info({ key: compiled.key, cached: compiled.cached, compileMs: compiled.ms, mtu, instance }, 'object loaded');
    } else {
      // Same object: refresh what may have changed on the node.
      const runtime: RuntimeConfig = {
        enabled: true, captureIfindex: capture.ifindex, instance: this.instance, routeIfindex: route.ifindex,
        src: route.src, dst: cfg.collector.address, ...budget(this.baseline),
      };
      this.runtime = runtime;
      await this.writeRuntime(this.object!.maps, runtime);
      await this.writeNodeBudget();
      await this.attachStages(this.object!, new Set());
      if (this.staleIds.size) {
        // a previous process died mid-swap: finish it
        for (const a of this.attachments.values()) await this.attachHooks(a.dev, a.hooks, new Set());
        await this.removeStaleObjects();
      }
    }
    this.staleIds.clear();
    this.route = route;
    return { loaded, cached: compiled.cached, compileMs: compiled.ms, key: compiled.key, route, mtu, instance: this.instance };
  }

  /** The node's budget into its shared map, where this session sets it and it changed. */
  private async writeNodeBudget(): Promise<void> {
    if (this.nodeBudget && (await writeNodeBudget(this.pinRoot, this.nodeBudget, this.runner))) {
      this.log.info({ nodeBudget: this.nodeBudget }, "node's mirror budget set");
    }
  }

  private ownIds(extra: Set<number>): Set<number> {
    const ids = new Set([...extra, ...this.staleIds]);
    if (this.object) for (const p of Object.values(this.object.progs)) ids.add(p.id);
    return ids;
  }

  private async attachProgram(dev: string, hook: Hook, progPath: string, oldIds: Set<number>): Promise<void> {
    await ensureClsact(this.runner, dev);
    const existing = await listFilters(this.runner, dev, hook);
    const pref = choosePref(existing, this.ownIds(oldIds));
    await replaceFilter(this.runner, dev, hook, pref, progPath);
  }

  /** The capture device's programs: pt_carrier (XDP) and pt_emit on the peer,
   *  pt_tunnel at the device's egress. */
  private async attachStages(obj: PinnedObject, oldIds: Set<number>): Promise<void> {
    const { dev, peer } = this.capture;
    const xdp = ['-force', 'link', 'set', 'dev', peer, 'xdpdrv', 'pinned', obj.progs.pt_carrier.path];
    const r = await this.runner.run('ip', xdp);
    if (r.exitCode !== 0) {
      const err = new CommandError(`ip ${xdp.join(' ')}`, r);
      // veth: "Peer MTU is too large to set XDP" (no multi-buffer XDP here)
      if (this.carrierMtu !== undefined && /MTU is too large/.test(r.stderr)) throw carrierMtuRefusal(release(), this.carrierMtu, err);
      throw err;
    }
    await this.attachProgram(peer, 'ingress', obj.progs.pt_emit.path, oldIds);
    await this.attachProgram(dev, 'egress', obj.progs.pt_tunnel.path, oldIds);
  }

  private async attachHooks(dev: string, hooks: readonly Hook[], oldIds: Set<number>): Promise<void> {
    const obj = this.object;
    if (!obj) throw new Error('session has no object loaded: call apply() first');
    for (const hook of ['ingress', 'egress'] as const) {
      if (hooks.includes(hook)) {
        await this.attachProgram(dev, hook, hook === 'ingress' ? obj.progs.pt_tap_ingress.path : obj.progs.pt_tap_egress.path, oldIds);
      } else {
        await this.removeFilters(dev, hook, oldIds);
      }
    }
  }

  private async removeFilters(dev: string, hook: Hook, extra: Set<number> = new Set()): Promise<void> {
    const ids = this.ownIds(extra);
    for (const f of await listFilters(this.runner, dev, hook)) {
      if (ids.has(f.progId)) await deleteFilter(this.runner, f);
    }
  }

  /** Tap @dev at @hooks (idempotent; changes the hooks in place). */
  async attach(dev: string, hooks: readonly Hook[]): Promise<void> {
    if (!(await getLink(this.runner, dev))) {
      throw new UserError(`unknown interface "${dev}"`, { exitCode: ExitCode.badInput, hint: 'list interfaces with: ip link' });
    }
    if (dev === this.capture.dev || dev === this.capture.peer) throw new UserError(`refusing to tap podtap's own capture device ${dev}`, { exitCode: ExitCode.badInput });
    await this.attachHooks(dev, hooks, new Set());
    this.attachments.set(dev, { dev, hooks: [...hooks] });
  }

  /** Stop tapping @dev (idempotent; a vanished interface is fine). */
  async detach(dev: string): Promise<void> {
    for (const hook of ['ingress', 'egress'] as const) await this.removeFilters(dev, hook);
    this.attachments.delete(dev);
  }

  /**
   * The tapped hooks whose podtap filter is gone: someone deleted it (or the
   * interface's clsact qdisc, and every filter with it) behind the session's
   * back. Interfaces that are gone themselves are not listed: a pod that
   * went takes its veth along, and that is the assignment's business.
   */
  async missingTaps(): Promise<{ dev: string; hook: Hook }[]> {
    const ids = this.ownIds(new Set());
    const out: { dev: string; hook: Hook }[] = [];
    for (const a of this.attachments.values()) {
      for (const hook of a.hooks) {
        if ((await listFilters(this.runner, a.dev, hook)).some((f) => ids.has(f.progId))) continue;
        if (await getLink(this.runner, a.dev)) out.push({ dev: a.dev, hook });
      }
    }
    return out;
  }

  /** Counters since the session started (across object swaps in this process). */
  async counters(): Promise<Counters> {
    if (!this.object) return this.baseline;
    return addCounters(this.baseline, await readCounters(this.object.maps, this.runner));
  }

  get collectorRoute(): Route | undefined {
    return this.route;
  }

  private async removeStaleObjects(): Promise<void> {
    for (const key of await this.pinnedObjects()) {
      if (key !== this.objectKey) await rm(join(this.dir, key), { recursive: true, force: true });
    }
  }

  /**
   * The CLOCK_MONOTONIC time (bpf_ktime_get_ns) at which the data plane stops
   * mirroring: the earlier of the deadline and now + the lease; 0n = never.
   * process.hrtime is CLOCK_MONOTONIC too (libuv), the wall clock only turns
   * the deadline into a distance from now.
   */
  private expiresNs(): bigint {
    const now = process.hrtime.bigint();
    const ms = (x: number) => BigInt(Math.max(0, Math.ceil(x))) * 1_000_000n;
    const at: bigint[] = [];
    if (this.expiry.deadline !== undefined) at.push(now + ms(this.expiry.deadline - Date.now()));
    if (this.expiry.leaseMs !== undefined) at.push(now + ms(this.expiry.leaseMs));
    return at.reduce((a, b) => (b < a ? b : a), at[0] ?? 0n);
  }

  /**
   * Push the expiry forward by the lease (apply's limits.leaseMs). The owner
   * calls this well within the lease; when it stops (killed, hung), the taps
   * go quiet by themselves at most one lease later. False when there is
   * nothing to renew (no object, no lease).
   */
  async renew(): Promise<boolean> {
    if (!this.object || !this.runtime || this.expiry.leaseMs === undefined) return false;
    await this.renewNow();
    return true;
  }

  private renewNow(): Promise<void> {
    // what is current when the write's turn comes, not when it was asked for
    return this.serialized(() => (this.object && this.runtime ? writeConfig(this.object.maps, { ...this.runtime, expiresNs: this.expiresNs() }, this.runner) : Promise.resolve()));
  }

  /** New deadline or lease, written to the data plane at once when an object is loaded. */
  async setExpiry(e: Expiry): Promise<void> {
    this.expiry = { deadline: e.deadline, leaseMs: e.leaseMs };
    if (this.object && this.runtime) await this.renewNow();
  }

  /** pt_config of @maps := @runtime with the current expiry, after any write already under way. */
  private writeRuntime(maps: string, runtime: RuntimeConfig): Promise<void> {
    return this.serialized(() => writeConfig(maps, { ...runtime, expiresNs: this.expiresNs() }, this.runner));
  }

  /**
   * One pt_config write at a time: a renewal (its own timer) must not land
   * after apply()'s newer write and put back an older budget.
   */
  private serialized(write: () => Promise<void>): Promise<void> {
    const next = this.configWrites.then(write, write);
    this.configWrites = next.catch(() => undefined);
    return next;
  }

  /** Detach everything, remove the capture device and the pins. */
  async destroy(): Promise<void> {
    for (const dev of [...this.attachments.keys()]) await this.detach(dev);
    await deleteLink(this.runner, this.capture.dev);
    await rm(this.dir, { recursive: true, force: true });
    // the last session of the pin root takes the node's budget map with it
    if (await releaseNodeBudget(this.pinRoot, this.runner)) this.log.info("node's mirror budget map removed: no session left");
    this.object = undefined;
    this.objectKey = undefined;
    this.log.info('session destroyed');
  }
}

/** Make sure a BPF filesystem is mounted where pins go. */
export async function ensureBpffs(runner: Runner, pinRoot: string): Promise<void> {
  const mountPoint = '/sys/fs/bpf';
  if (!pinRoot.startsWith(`${mountPoint}/`)) {
    // a pin root elsewhere is a BPF filesystem (or a directory of one) mounted
    // there, as the chart mounts the host's /sys/fs/bpf/podtap: never mount one
    // ourselves, the pins would be lost with this mount namespace
    await mkdir(pinRoot, { recursive: true });
    const type = (await runner.run('stat', ['-f', '-c', '%T', pinRoot], { netnsScoped: false })).stdout.trim();
    if (type !== 'bpf_fs') {
      throw new UserError(`the pin root ${pinRoot} (PODTAP_PIN_ROOT) is not on a BPF filesystem (it is ${type || 'unreadable'})`, {
        exitCode: ExitCode.failure,
        hint: "mount a directory of the host's BPF filesystem there (the chart mounts /sys/fs/bpf/podtap), or unset PODTAP_PIN_ROOT",
      });
    }
    return;
  }
  const fsType = (await runner.run('stat', ['-f', '-c', '%T', mountPoint], { netnsScoped: false })).stdout.trim();
  if (fsType !== 'bpf_fs') {
    const r = await runner.run('mount', ['-t', 'bpf', 'bpf', mountPoint], { netnsScoped: false });
    if (r.exitCode !== 0) {
      throw new UserError(`no BPF filesystem at ${mountPoint} and mounting one failed: ${r.stderr.trim()}`, {
        exitCode: ExitCode.failure,
        hint: 'mount it with: mount -t bpf bpf /sys/fs/bpf',
      });
    }
  }
  await mkdir(pinRoot, { recursive: true });
}
