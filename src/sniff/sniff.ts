/**
 * `podtap sniff`: the data plane on any Linux host, without Kubernetes. Reads
 * a SniffPolicy file (its selectors are ignored, so the same file works in a
 * cluster), taps the named interfaces, mirrors to the collector, shows live
 * counters, and on SIGINT/SIGTERM detaches everything and prints a summary.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { captureConfig, collectorPort, MTU_MAX, MTU_MIN, ObjectNameSchema, parseDuration, parseSniffPolicyYaml, type CaptureConfig, type SniffPolicy } from '../api/index.ts';
import { CaptureService, type CaptureTarget } from '../capture/service.ts';
import { createRunner, formatCounters, getLink, LOSS_REASONS, lost, requireCapabilities, requireRoot, requireTools, subCounters, type Counters } from '../datapath/index.ts';
import { errorMessage, ExitCode, UserError } from '../util/errors.ts';
import { parseHostPort } from '../util/hostport.ts';
import { rootLogger, silentLogger } from '../util/log.ts';
import { nodeNameOf } from '../wire/announce.ts';
import { installSecretKeySource } from '../wire/auth.ts';

const HELP = `Usage: podtap sniff --policy FILE.yaml --iface NAME[,NAME...] [options]

Taps the given interfaces of this host with podtap's eBPF programs and mirrors
every matching packet, whole, through a Geneve (or VXLAN) tunnel to a collector
(run one with: podtap collector --listen ADDR:PORT --out DIR).

FILE is a SniffPolicy (podtap.io/v1alpha1). Its filter, sampling, snapLength,
rateLimit, tunnel, mtu, limits and collector.address are used; podSelector and
nodeSelector are ignored here, so the same file works in a cluster. On a node
whose podtap agent sets a mirror budget (--node-max-packets-per-second), the
capture shares it with the node's policies: copies over it are counted lost
as node-rate.

Options:
  --policy FILE         SniffPolicy YAML (required)
  --iface NAMES         comma-separated interfaces to tap (required); for a pod,
                        the host side of its veth
  --collector ADDR:PORT collector to send to (overrides spec.collector);
                        IPv6 as [ADDR]:PORT
  --mtu N               outer MTU (overrides spec.mtu; default: the MTU of the
                        route to the collector)
  --node NAME           node name announced to the collector (default: the host
                        name, in lower case with other characters as -)
  --secret-file FILE    the collector's install secret (its --token, or the
                        chart's Secret key "token"): announcements are signed
                        with this node's key, derived from it, so a collector
                        with a secret takes them; the secret itself is never
                        sent. Without it, announcements are unsigned, and only
                        a collector without a secret takes them
  --quiet               no live progress line
  --help                this text

Exit codes: 0 ok; 2 usage; 3 not root; 4 missing tool; 5 invalid policy or
unknown interface; 6 the kernel's verifier rejected the program; 7 collector
unreachable; 8 this kernel lacks a BPF feature the capture needs (the kernel
and the feature are named; podtap features lists what it has).`;

/** --collector ADDR[:PORT] or [V6][:PORT] (util/hostport.ts): an IP address, the policy's port by default. */
export function collectorFlag(s: string, defaultPort: number): { address: string; port: number } {
  let parsed;
  try {
    parsed = parseHostPort(s);
  } catch (err) {
    throw new UserError(`--collector: "${s}": ${errorMessage(err)}`, { exitCode: ExitCode.usage, cause: err });
  }
  const { host, port = defaultPort } = parsed;
  if (host === undefined || !isIP(host)) throw new UserError(`--collector: "${s}" is not ADDR:PORT with an IP address`, { exitCode: ExitCode.usage });
  if (port < 1) throw new UserError(`--collector: bad port in "${s}"`, { exitCode: ExitCode.usage });
  return { address: host, port };
}

export function sessionIdFor(policy: SniffPolicy): string {
  const key = `${policy.metadata.namespace ?? 'default'}/${policy.metadata.name ?? 'sniff'}`;
  return `s-${createHash('sha256').update(key).digest('hex').slice(0, 10)}`;
}

export async function sniffCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        policy: { type: 'string' },
        iface: { type: 'string' },
        collector: { type: 'string' },
        mtu: { type: 'string' },
        node: { type: 'string' },
        'secret-file': { type: 'string' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UserError((err as Error).message, { exitCode: ExitCode.usage, hint: 'see podtap sniff --help' });
  }
  const o = parsed.values;
  if (o.help) {
    console.log(HELP);
    return ExitCode.ok;
  }
  if (!o.policy || !o.iface) throw new UserError('--policy and --iface are required', { exitCode: ExitCode.usage, hint: 'see podtap sniff --help' });
  if (o.node !== undefined && !ObjectNameSchema.safeParse(o.node).success) {
    throw new UserError(`--node: "${o.node}" is not a node name (lowercase letters, digits, "-" and ".", at most 253)`, { exitCode: ExitCode.usage });
  }
  const ifaces = o.iface.split(',').map((s) => s.trim()).filter(Boolean);
  const mtu = o.mtu === undefined ? undefined : Number(o.mtu);
  if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < MTU_MIN || mtu > MTU_MAX)) {
    throw new UserError(`--mtu must be an integer in ${MTU_MIN}..${MTU_MAX}, got "${o.mtu}"`, { exitCode: ExitCode.usage });
  }

  // read before anything is attached: a wrong path is a usage error, not a half-started capture
  let secret: string | undefined;
  if (o['secret-file'] !== undefined) {
    const file = o['secret-file'];
    secret = (
      await readFile(file, 'utf8').catch((err: unknown) => {
        throw new UserError(`--secret-file: cannot read ${file}: ${errorMessage(err)}`, { exitCode: ExitCode.badInput, cause: err });
      })
    ).trim();
    if (secret === '') throw new UserError(`--secret-file: ${file} is empty`, { exitCode: ExitCode.badInput });
  }
  const node = o.node ?? nodeNameOf(hostname());

  requireRoot('podtap sniff');
  await requireCapabilities('podtap sniff');
  await requireTools();

  const text = await readFile(o.policy, 'utf8').catch((err: unknown) => {
    throw new UserError(`cannot read ${o.policy}: ${(err as Error).message}`, { exitCode: ExitCode.badInput });
  });
  const { policies } = parseSniffPolicyYaml(text, o.policy);
  const policy = policies[0];
  if (!policy) throw new UserError(`${o.policy} holds no SniffPolicy`, { exitCode: ExitCode.badInput });
  if (policies.length > 1) console.error(`podtap: ${o.policy} holds ${policies.length} policies; using the first, ${policy.metadata.name}`);
  const spec = policy.spec;
  let collector: { address: string; port: number };
  if (o.collector) collector = collectorFlag(o.collector, collectorPort(spec));
  else if (spec.collector.address) collector = { address: spec.collector.address, port: collectorPort(spec) };
  else {
    throw new UserError('spec.collector.service needs Kubernetes to resolve; give the collector with --collector ADDR:PORT', {
      exitCode: ExitCode.badInput,
    });
  }
  // the configuration an assignment would carry, --mtu in place of spec.mtu
  const cfg: CaptureConfig = captureConfig({ ...spec, mtu: mtu ?? spec.mtu }, collector);
  const log = process.env.PODTAP_LOG_LEVEL ? rootLogger('sniff') : silentLogger;
  const runner = createRunner();

  const targets: CaptureTarget[] = [];
  for (const name of ifaces) {
    const link = await getLink(runner, name);
    if (!link) throw new UserError(`unknown interface "${name}"`, { exitCode: ExitCode.badInput, hint: 'list interfaces with: ip link' });
    targets.push({ name, ifindex: link.ifindex, pod: null });
  }

  const capture = await CaptureService.open({
    id: sessionIdFor(policy),
    node,
    ...(secret !== undefined ? { key: installSecretKeySource(secret, node) } : {}),
    sender: 'sniff',
    policy: { namespace: policy.metadata.namespace ?? 'default', name: policy.metadata.name ?? 'sniff', uid: '' },
    runner,
    logger: log,
  });
  const duration = spec.limits?.duration ? parseDuration(spec.limits.duration) : undefined;
  const limits = { maxPackets: spec.limits?.maxPackets ?? 0, maxBytes: spec.limits?.maxBytes ?? 0 };
  // from before the first attachment: a Ctrl-C while attaching, or just after
  // "tapping" (a slow machine reads the first counters for seconds), detaches
  // everything rather than killing the process half way
  const signals = watchSignals();
  try {
    // a collector that does not answer stops sniff before anything is attached
    const applied = await capture.apply(cfg, targets, limits, { requireCollector: true });
    console.error(
      `podtap: tapping ${ifaces.join(', ')} (policyTypes ${spec.policyTypes.join(', ')}) -> ${cfg.collector.address}:${cfg.collector.port} ` +
        `${cfg.tunnel.protocol}, MTU ${applied.mtu} via ${applied.route.dev}${applied.cached ? ', cached object' : `, compiled in ${applied.compileMs} ms`}`,
    );
  } catch (err) {
    await capture.stop().catch(() => undefined);
    throw err;
  }
  // spec.limits.duration runs from the first attachment; the data plane
  // itself stops at the deadline (a frozen or killed sniff cannot overrun it)
  if (duration !== undefined) await capture.setLimits({ ...limits, deadline: Date.now() + duration });

  const tty = process.stderr.isTTY && !o.quiet;
  // from here on, whatever happens, the session is detached before exiting
  try {
    const r = await monitor(capture, signals, { tty, quiet: !!o.quiet });
    console.error(`podtap: stopped (${r.reason}) after ${r.seconds.toFixed(1)}s; detaching ${ifaces.length} interface(s)`);
    console.error(`podtap: ${formatCounters(r.counters)}`);
    const drops = Object.entries(r.counters).filter(([k, v]) => v.packets > 0 && (LOSS_REASONS as string[]).includes(k));
    if (drops.length) console.error(`podtap: lost ${lost(r.counters)}: ${drops.map(([k, v]) => `${k} ${v.packets}`).join(', ')}`);
    return ExitCode.ok;
  } finally {
    await capture.stop().catch((err: unknown) => console.error(`podtap: detaching failed: ${(err as Error).message} (run podtap cleanup)`));
  }
}

interface Signals {
  /** Calls @stop with the first SIGINT/SIGTERM, at once if it came already. */
  onStop(stop: (why: string) => void): void;
}

/**
 * SIGINT and SIGTERM for the life of the process: the first is kept for
 * onStop; the handlers stay, so a second Ctrl-C while detaching cannot kill
 * it half way (that would leave programs attached).
 */
function watchSignals(): Signals {
  let first: string | undefined;
  let waiter: ((why: string) => void) | undefined;
  const on = (why: string) => () => {
    if (first === undefined) first = why;
    if (waiter) waiter(why);
    else console.error('podtap: stopping once attaching is done (then detaching), please wait');
  };
  process.on('SIGINT', on('SIGINT'));
  process.on('SIGTERM', on('SIGTERM'));
  return {
    onStop(stop) {
      waiter = stop;
      if (first !== undefined) stop(first);
    },
  };
}

/** Live counters until a signal or a limit; the counts since this run began. */
async function monitor(capture: CaptureService, signals: Signals, out: { tty: boolean; quiet: boolean }): Promise<{ reason: string; seconds: number; counters: Counters }> {
  const started = Date.now();
  // an adopted object keeps its maps: count from here
  const base = await capture.counters();
  let last = subCounters(base, base);
  let reason = '';
  await new Promise<void>((resolve) => {
    let lastPrint = 0;
    const stop = (why: string) => {
      if (reason) {
        console.error('podtap: detaching, please wait');
        return;
      }
      reason = why;
      clearInterval(timer);
      resolve();
    };
    const tick = async () => {
      try {
        last = subCounters(await capture.counters(), base);
      } catch {
        return;
      }
      const now = Date.now();
      const reached = capture.limitReached(last, now);
      if (reached) return stop(`limit ${reached} reached`);
      if (out.tty) process.stderr.write(`\r\x1b[K${Math.round((now - started) / 1000)}s  ${formatCounters(last)}`);
      else if (!out.quiet && now - lastPrint >= 10_000) {
        lastPrint = now;
        console.error(`podtap: ${formatCounters(last)}`);
      }
    };
    const timer = setInterval(() => void tick(), 500);
    signals.onStop(stop);
    void tick();
  });
  if (out.tty) process.stderr.write('\n');
  try {
    last = subCounters(await capture.counters(), base);
  } catch {
    /* keep the last reading */
  }
  return { reason, seconds: (Date.now() - started) / 1000, counters: last };
}
