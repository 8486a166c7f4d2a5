/** `podtap agent`: the node agent (DaemonSet). */
import { hostname } from 'node:os';
import { readFile, stat, statfs } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { MAX_RATE_PER_SECOND, PIN_ROOT, requireCapabilities, requireRoot, requireTools, type NodeBudget } from '../datapath/index.ts';
import { KubeClient, loadKubeConfig, podNamespace, startHttp } from '../k8s/index.ts';
import { ExitCode, UserError, errorMessage } from '../util/errors.ts';
import { rootLogger, type Logger } from '../util/log.ts';
import { installSecretKeySource } from '../wire/auth.ts';
import { DEFAULT_INSTALL_NAMESPACE, installNamespace } from '../api/index.ts';
import { DEFAULT_CHECK_MS, DEFAULT_LEASE_MS, NodeAgent } from './agent.ts';
import { createAgentMetrics } from './metrics.ts';
import { RESOLVE_METHODS, type ResolveMethod } from './resolve.ts';
import { uninstalling } from './uninstall.ts';

const HELP = `Usage: podtap agent [options]

Runs on every node (a DaemonSet with hostNetwork). Watches this node's
SniffNodeAssignments only (an entry per policy), attaches podtap's eBPF
programs to the host-side veths of the selected pods, sends their traffic to
the collector, and reports state and counters per entry in the objects'
status.

Options:
  --node NAME             this node (default: $NODE_NAME, else the hostname)
  --kubeconfig FILE       kubeconfig (default: $KUBECONFIG, else in-cluster)
  --namespace NS          podtap's own namespace, the only one whose
                          SniffNodeAssignments the agent reads (default:
                          $POD_NAMESPACE, the service account's, else
                          ${DEFAULT_INSTALL_NAMESPACE})
  --metrics-addr ADDR     /metrics, /healthz, /readyz (default :9090; "" = off)
  --report-interval SEC   how often counters are written to status (default 5)
  --check-interval SEC    how often each capture's interfaces are checked in
                          the kernel: podtap's filter still on every tapped
                          hook (attached again if someone removed it), no
                          other program running before it (default ${DEFAULT_CHECK_MS / 1000})
  --lease-seconds SEC     the data plane stops mirroring by itself SEC seconds
                          after the agent last renewed it (every SEC/3, without
                          the API): a killed or hung agent's taps go quiet
                          (default ${DEFAULT_LEASE_MS / 1000}; a restart slower than this
                          leaves a gap in the capture)
  --token-file FILE       the install's collector secret: the agent derives this
                          node's key from it and signs its announcements with
                          it; neither ever leaves the node (default: none,
                          unsigned announcements, for a collector without one)
  --resolve METHODS       how pods' host-side veths are found, comma-separated,
                          tried in order (default: pod). pod: by the pod's UID
                          (its cgroup, its network namespace, the veth peer of
                          the interface with its IP; needs the host's /proc).
                          route, bridge, netns: by the pod's IP alone, for pods
                          that are bare network namespaces (no kubelet)
  --node-max-packets-per-second N
                          the most packets per second this node mirrors, all
                          policies and \`podtap sniff\` captures together: one
                          token bucket (holding one second) that every capture
                          on the node shares, after each policy's own rate
                          limit; copies over it are counted lost as nodeRate
                          (default 0: no node budget)
  --node-max-bytes-per-second N
                          the same in bytes (default 0: none)
  --max-sessions N        the most capture sessions (policies) this node runs
                          at once; an assignment beyond it waits, reported as
                          NodeSessionLimit, and is attached when one ends. The
                          oldest policy (creation time, then namespace/name)
                          goes first; a running session is never displaced
                          (default 0: no cap)
  --detach-on-exit        on SIGTERM detach everything (default: only when the
                          agent's DaemonSet is being deleted: uninstall; a
                          restart or rolling update keeps capture running)
  --help                  this text`;

export interface AgentArgs {
  node: string | undefined;
  kubeconfig: string | undefined;
  namespace: string | undefined;
  metricsAddr: string;
  reportIntervalMs: number;
  checkIntervalMs: number;
  leaseMs: number;
  tokenFile: string | undefined;
  resolve: ResolveMethod[] | undefined;
  detachOnExit: boolean;
  nodeBudget: NodeBudget;
  /** 0 = no cap. */
  maxSessions: number;
}

/** A whole number from 0 to @max, named in the error (0 = none). */
function wholeNumber(name: string, v: string | undefined, max: number): number {
  if (v === undefined) return 0;
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n > max) {
    throw new UserError(`--${name}: expected a whole number from 0 (none) to ${max}, got "${v}"`, { exitCode: ExitCode.usage, hint: 'see podtap agent --help' });
  }
  return n;
}

/** The most sessions --max-sessions takes: each is a capture device pair and a loaded object on the node. */
export const MAX_SESSIONS = 4096;

/** Parse the command line into the agent's settings (exported for tests); null: --help. */
export function parseAgentArgs(argv: string[]): AgentArgs | null {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        node: { type: 'string' },
        kubeconfig: { type: 'string' },
        namespace: { type: 'string' },
        'metrics-addr': { type: 'string', default: ':9090' },
        'report-interval': { type: 'string', default: '5' },
        'check-interval': { type: 'string', default: String(DEFAULT_CHECK_MS / 1000) },
        'lease-seconds': { type: 'string', default: String(DEFAULT_LEASE_MS / 1000) },
        'token-file': { type: 'string' },
        resolve: { type: 'string' },
        'node-max-packets-per-second': { type: 'string' },
        'node-max-bytes-per-second': { type: 'string' },
        'max-sessions': { type: 'string' },
        'detach-on-exit': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UserError(errorMessage(err), { exitCode: ExitCode.usage, hint: 'see podtap agent --help', cause: err });
  }
  if (values.help) return null;
  const interval = Number(values['report-interval']);
  if (!Number.isFinite(interval) || interval <= 0) throw new UserError('--report-interval must be a positive number of seconds', { exitCode: ExitCode.usage });
  const check = Number(values['check-interval']);
  if (!Number.isFinite(check) || check <= 0) throw new UserError(`--check-interval must be a positive number of seconds (got "${values['check-interval']}")`, { exitCode: ExitCode.usage });
  const lease = Number(values['lease-seconds']);
  if (!Number.isFinite(lease) || lease < 1) throw new UserError(`--lease-seconds must be a number of seconds, at least 1 (got "${values['lease-seconds']}")`, { exitCode: ExitCode.usage });
  const methods = values.resolve?.split(',').map((m) => m.trim());
  const bad = methods?.filter((m) => !RESOLVE_METHODS.includes(m as ResolveMethod));
  if (methods && (bad?.length || !methods.length)) {
    throw new UserError(`--resolve: unknown method(s) ${bad?.join(', ') || '(none given)'}; known: ${RESOLVE_METHODS.join(', ')}`, { exitCode: ExitCode.usage });
  }
  return {
    node: values.node,
    kubeconfig: values.kubeconfig,
    namespace: values.namespace,
    metricsAddr: values['metrics-addr'],
    reportIntervalMs: interval * 1000,
    checkIntervalMs: check * 1000,
    leaseMs: lease * 1000,
    tokenFile: values['token-file'],
    resolve: methods as ResolveMethod[] | undefined,
    detachOnExit: values['detach-on-exit'] ?? false,
    nodeBudget: {
      packetsPerSecond: wholeNumber('node-max-packets-per-second', values['node-max-packets-per-second'], MAX_RATE_PER_SECOND),
      bytesPerSecond: wholeNumber('node-max-bytes-per-second', values['node-max-bytes-per-second'], MAX_RATE_PER_SECOND),
    },
    maxSessions: wholeNumber('max-sessions', values['max-sessions'], MAX_SESSIONS),
  };
}

export async function agentCommand(argv: string[], logger?: Logger): Promise<number> {
  const args = parseAgentArgs(argv);
  if (!args) {
    console.log(HELP);
    return ExitCode.ok;
  }
  const log = logger ?? rootLogger('agent');
  requireRoot('podtap agent');
  await requireCapabilities('podtap agent');
  await requireTools();
  const nodeName = args.node ?? process.env.NODE_NAME ?? hostname();
  const secret = args.tokenFile ? (await readFile(args.tokenFile, 'utf8')).trim() : undefined;
  // (docs/security.md: until the key service hands each agent only its own key)
  const nodeKey = secret ? installSecretKeySource(secret, nodeName) : undefined;
  const kc = loadKubeConfig(args.kubeconfig);
  const client = new KubeClient(kc, { userAgent: `podtap-agent/${nodeName}` });
  const metrics = createAgentMetrics({ defaultMetrics: true });
  const namespace = args.namespace ?? installNamespace();
  const agent = new NodeAgent({
    client, nodeName, namespace, logger: log, reportIntervalMs: args.reportIntervalMs, checkIntervalMs: args.checkIntervalMs, leaseMs: args.leaseMs, nodeKey, metrics,
    nodeBudget: args.nodeBudget, maxSessions: args.maxSessions, ...(args.resolve ? { resolve: { methods: args.resolve } } : {}),
  });
  metrics.setSessionSource(() => agent.sessions);
  metrics.setWaitingSource(() => agent.waitingSessions);
  const pinRoot = watchPinRoot(PIN_ROOT, log);
  const http = args.metricsAddr
    ? await startHttp(args.metricsAddr, { registry: metrics.registry, notReady: () => (agent.informer.hasSynced() ? undefined : 'assignments not synced'), notLive: pinRoot.lost }, log)
    : undefined;
  await agent.start();
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  const detach = args.detachOnExit || (await uninstalling(client, podNamespace(), log));
  log.info({ signal, detach }, 'agent stopping');
  pinRoot.stop();
  await agent.shutdown({ detach });
  await http?.close();
  return ExitCode.ok;
}

/** statfs(2) f_type of a BPF filesystem (BPF_FS_MAGIC, uapi/linux/magic.h). */
const BPF_FS_MAGIC = 0xcafe4a11;

/**
 * The pin root must stay a live directory of a BPF filesystem. The chart
 * mounts only the host's /sys/fs/bpf/podtap there; when that directory is
 * removed on the host (a `podtap cleanup` there), the container's mount keeps
 * the removed directory (its link count 0), in which nothing can be created
 * any more and which no restarted agent would find. Then /healthz fails, so
 * the kubelet restarts the container and the runtime binds the directory anew.
 */
export function watchPinRoot(pinRoot: string, log: Logger, everyMs = 5000): { lost: () => string | undefined; stop: () => void } {
  let lost: string | undefined;
  const check = async () => {
    // (a pin root that does not exist yet is made by the first session, on bpffs)
    const [fs, st] = await Promise.all([statfs(pinRoot).catch(() => undefined), stat(pinRoot).catch(() => undefined)]);
    let now: string | undefined;
    if (fs && fs.type !== BPF_FS_MAGIC) now = `the pin root ${pinRoot} is no longer on a BPF filesystem (statfs type 0x${fs.type.toString(16)})`;
    else if (st && st.nlink === 0) now = `the pin root ${pinRoot} was removed (on the host?): nothing can be pinned in it`;
    if (now && !lost) log.error({ pinRoot, why: now }, 'pin root lost: restart needed');
    lost = now;
  };
  const timer = setInterval(() => void check(), everyMs);
  timer.unref();
  void check();
  return { lost: () => lost, stop: () => clearInterval(timer) };
}
