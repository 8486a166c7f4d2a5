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
import { durationSeconds, type SniffPolicy } from '../api/sniffpolicy.ts';
import { ObjectNameSchema, parseSniffPolicyYaml } from '../api/index.ts';
import { configFromSpec, DEFAULT_PORT, type DataplaneConfig } from '../datapath/config.ts';
import { formatCounters, LOSS_REASONS, lost, subCounters, type Counters } from '../datapath/counters.ts';
import { createRunner } from '../datapath/exec.ts';
import { Session } from '../datapath/session.ts';
import { requireRoot, requireTools } from '../datapath/tools.ts';
import { ExitCode, UserError } from '../util/errors.ts';
import { rootLogger, silentLogger } from '../util/log.ts';
import { Announcer, probeCollector } from '../datapath/announcer.ts';
import { nodeNameOf } from '../wire/announce.ts';

const HELP = `Usage: podtap sniff --policy FILE.yaml --iface NAME[,NAME...] [options]

Taps the given interfaces of this host with podtap's eBPF programs and mirrors
every matching packet, whole, through a Geneve (or VXLAN) tunnel to a collector
(run one with: podtap collector --listen ADDR:PORT --out DIR).

FILE is a SniffPolicy (podtap.io/v1alpha1). Its filter, sampling, snapLength,
rateLimit, tunnel, mtu, limits and collector.address are used; podSelector and
nodeSelector are ignored here, so the same file works in a cluster.

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
  --quiet               no live progress line
  --help                this text

Exit codes: 0 ok; 2 usage; 3 not root; 4 missing tool; 5 invalid policy or
unknown interface; 6 the kernel's verifier rejected the program; 7 collector
unreachable; 8 this kernel lacks a BPF feature the capture needs (the kernel
and the feature are named; podtap features lists what it has).`;

export function parseHostPort(s: string, defaultPort: number): { address: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s) ?? /^([^:]+)(?::(\d+))?$/.exec(s) ?? [s, s, undefined];
  const address = m[1] ?? '';
  const port = m[2] ? Number(m[2]) : defaultPort;
  if (!isIP(address)) throw new UserError(`--collector: "${s}" is not ADDR:PORT with an IP address`, { exitCode: ExitCode.usage });
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UserError(`--collector: bad port in "${s}"`, { exitCode: ExitCode.usage });
  return { address, port };
}

export function sessionIdFor(policy: SniffPolicy): string {
  const key = `${policy.metadata.namespace ?? 'default'}/${policy.metadata.name ?? 'sniff'}`;
  return `s-${createHash('sha256').update(key).digest('hex').slice(0, 10)}`;
}

interface Limits {
  deadline: number | undefined;
  maxPackets: number;
  maxBytes: number;
}

function limitReached(l: Limits, c: Counters, now: number): string | undefined {
  if (l.deadline !== undefined && now >= l.deadline) return 'duration';
  if (l.maxPackets && c.mirrored.packets >= l.maxPackets) return 'maxPackets';
  if (l.maxBytes && c.mirrored.bytes >= l.maxBytes) return 'maxBytes';
  return undefined;
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
  if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < 1280 || mtu > 9216)) {
    throw new UserError(`--mtu must be an integer in 1280..9216, got "${o.mtu}"`, { exitCode: ExitCode.usage });
  }

  requireRoot('podtap sniff');
  await requireTools();

  const text = await readFile(o.policy, 'utf8').catch((err: unknown) => {
    throw new UserError(`cannot read ${o.policy}: ${(err as Error).message}`, { exitCode: ExitCode.badInput });
  });
  const { policies } = parseSniffPolicyYaml(text, o.policy);
  const policy = policies[0];
  if (!policy) throw new UserError(`${o.policy} holds no SniffPolicy`, { exitCode: ExitCode.badInput });
  if (policies.length > 1) console.error(`podtap: ${o.policy} holds ${policies.length} policies; using the first, ${policy.metadata.name}`);
  const spec = policy.spec;
  const tunnel = spec.tunnel?.protocol ?? 'Geneve';
  let collector: { address: string; port: number };
  if (o.collector) collector = parseHostPort(o.collector, spec.collector.port ?? DEFAULT_PORT[tunnel]);
  else if (spec.collector.address) collector = { address: spec.collector.address, port: spec.collector.port ?? DEFAULT_PORT[tunnel] };
  else {
    throw new UserError('spec.collector.service needs Kubernetes to resolve; give the collector with --collector ADDR:PORT', {
      exitCode: ExitCode.badInput,
    });
  }
  const cfg: DataplaneConfig = configFromSpec(spec, collector);
  const log = process.env.PODTAP_LOG_LEVEL ? rootLogger('sniff') : silentLogger;
  const runner = createRunner();

  for (const name of ifaces) {
    const r = await runner.run('ip', ['link', 'show', 'dev', name]);
    if (r.exitCode !== 0) throw new UserError(`unknown interface "${name}"`, { exitCode: ExitCode.badInput, hint: 'list interfaces with: ip link' });
  }

  const session = await Session.open({ id: sessionIdFor(policy), runner, logger: log });
  const cleanup = async () => {
    await session.destroy();
  };
  let announcer: Announcer | undefined;
  // the duration counts from now; the data plane itself stops at the deadline
  // (a frozen or killed sniff cannot overrun it)
  const deadline = spec.limits?.duration ? Date.now() + durationSeconds(spec.limits.duration) * 1000 : undefined;
  try {
    const applied = await session.apply(cfg, mtu ? { mtu } : spec.mtu ? { mtu: spec.mtu } : {}, {
      packets: spec.limits?.maxPackets ?? 0,
      bytes: spec.limits?.maxBytes ?? 0,
      deadline,
    });
    await probeCollector(cfg.collector);
    // announce first: the collector knows each interface's name before its
    // first packet can arrive
    const indexes = new Map<string, number>();
    for (const name of ifaces) {
      const l = JSON.parse(await runner.check('ip', ['-j', 'link', 'show', 'dev', name])) as { ifindex: number }[];
      indexes.set(name, l[0]?.ifindex ?? 0);
    }
    announcer = new Announcer({
      collector: cfg.collector,
      node: o.node ?? nodeNameOf(hostname()),
      sender: 'sniff',
      tunnel,
      snapLength: cfg.snapLength,
      instance: () => session.currentInstance,
      policy: { namespace: policy.metadata.namespace ?? 'default', name: policy.metadata.name ?? 'sniff', uid: '' },
      interfaces: async () =>
        ifaces.map((name) => ({
          ifindex: indexes.get(name) ?? 0,
          name,
          pod: null,
          directions: cfg.direction === 'Both' ? ['Ingress', 'Egress'] : [cfg.direction],
        })),
      logger: log,
    });
    await announcer.start();
    for (const name of ifaces) await session.attach(name, cfg.direction);
    console.error(
      `podtap: tapping ${ifaces.join(', ')} (${cfg.direction}) -> ${cfg.collector.address}:${cfg.collector.port} ` +
        `${tunnel}, MTU ${applied.mtu} via ${applied.route.dev}${applied.cached ? ', cached object' : `, compiled in ${applied.compileMs} ms`}`,
    );
  } catch (err) {
    await announcer?.stop();
    await cleanup().catch(() => undefined);
    throw err;
  }

  const limits: Limits = {
    deadline,
    maxPackets: spec.limits?.maxPackets ?? 0,
    maxBytes: spec.limits?.maxBytes ?? 0,
  };
  const tty = process.stderr.isTTY && !o.quiet;
  // from here on, whatever happens, the session is detached before exiting
  try {
    const r = await monitor(session, limits, { tty, quiet: !!o.quiet });
    console.error(`podtap: stopped (${r.reason}) after ${r.seconds.toFixed(1)}s; detaching ${ifaces.length} interface(s)`);
    console.error(`podtap: ${formatCounters(r.counters)}`);
    const drops = Object.entries(r.counters).filter(([k, v]) => v.packets > 0 && (LOSS_REASONS as string[]).includes(k));
    if (drops.length) console.error(`podtap: lost ${lost(r.counters)}: ${drops.map(([k, v]) => `${k} ${v.packets}`).join(', ')}`);
    return ExitCode.ok;
  } finally {
    await announcer?.stop().catch(() => undefined);
    await cleanup().catch((err: unknown) => console.error(`podtap: detaching failed: ${(err as Error).message} (run podtap cleanup)`));
  }
}

/** Live counters until a signal or a limit; the counts since this run began. */
async function monitor(
  session: Session,
  limits: Limits,
  out: { tty: boolean; quiet: boolean },
): Promise<{ reason: string; seconds: number; counters: Counters }> {
  const started = Date.now();
  // an adopted object keeps its maps: count from here
  const base = await session.counters();
  let last = subCounters(base, base);
  let reason = '';
  await new Promise<void>((resolve) => {
    let lastPrint = 0;
    // the handlers stay for the life of the process: a second Ctrl-C while
    // detaching must not kill it half way (that would leave programs attached)
    const stop = (why: string) => {
      if (reason) {
        console.error('podtap: detaching, please wait');
        return;
      }
      reason = why;
      clearInterval(timer);
      resolve();
    };
    const onInt = () => stop('SIGINT');
    const onTerm = () => stop('SIGTERM');
    const tick = async () => {
      try {
        last = subCounters(await session.counters(), base);
      } catch {
        return;
      }
      const now = Date.now();
      const reached = limitReached(limits, last, now);
      if (reached) return stop(`limit ${reached} reached`);
      if (out.tty) process.stderr.write(`\r\x1b[K${Math.round((now - started) / 1000)}s  ${formatCounters(last)}`);
      else if (!out.quiet && now - lastPrint >= 10_000) {
        lastPrint = now;
        console.error(`podtap: ${formatCounters(last)}`);
      }
    };
    const timer = setInterval(() => void tick(), 500);
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    void tick();
  });
  if (out.tty) process.stderr.write('\n');
  try {
    last = subCounters(await session.counters(), base);
  } catch {
    /* keep the last reading */
  }
  return { reason, seconds: (Date.now() - started) / 1000, counters: last };
}
