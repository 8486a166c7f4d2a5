/** `podtap agent`: the node agent (DaemonSet). */
import { hostname } from 'node:os';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { requireRoot, requireTools } from '../datapath/index.ts';
import { KubeClient, loadKubeConfig, podNamespace, startHttp } from '../k8s/index.ts';
import { ExitCode, UserError, errorMessage } from '../util/errors.ts';
import { rootLogger, type Logger } from '../util/log.ts';
import { installSecretKeySource } from '../wire/auth.ts';
import { NodeAgent } from './agent.ts';
import { createAgentMetrics } from './metrics.ts';
import { RESOLVE_METHODS, type ResolveMethod } from './resolve.ts';
import { uninstalling } from './uninstall.ts';

const HELP = `Usage: podtap agent [options]

Runs on every node (a DaemonSet with hostNetwork). Watches this node's
SniffAssignments only, attaches podtap's eBPF programs to the host-side veths
of the selected pods, sends their traffic to the collector, and reports state
and counters on each assignment's status.

Options:
  --node NAME             this node (default: $NODE_NAME, else the hostname)
  --kubeconfig FILE       kubeconfig (default: $KUBECONFIG, else in-cluster)
  --metrics-addr ADDR     /metrics, /healthz, /readyz (default :9090; "" = off)
  --report-interval SEC   how often counters are written to status (default 5)
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
  --detach-on-exit        on SIGTERM detach everything (default: only when the
                          agent's DaemonSet is being deleted: uninstall; a
                          restart or rolling update keeps capture running)
  --help                  this text`;

export async function agentCommand(argv: string[], logger?: Logger): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        node: { type: 'string' },
        kubeconfig: { type: 'string' },
        'metrics-addr': { type: 'string', default: ':9090' },
        'report-interval': { type: 'string', default: '5' },
        'token-file': { type: 'string' },
        resolve: { type: 'string' },
        'detach-on-exit': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UserError(errorMessage(err), { exitCode: ExitCode.usage, hint: 'see podtap agent --help' });
  }
  if (values.help) {
    console.log(HELP);
    return ExitCode.ok;
  }
  const log = logger ?? rootLogger('agent');
  requireRoot('podtap agent');
  await requireTools();
  const nodeName = values.node ?? process.env.NODE_NAME ?? hostname();
  const interval = Number(values['report-interval']);
  if (!Number.isFinite(interval) || interval <= 0) throw new UserError('--report-interval must be a positive number of seconds', { exitCode: ExitCode.usage });
  const methods = values.resolve?.split(',').map((m) => m.trim());
  const bad = methods?.filter((m) => !RESOLVE_METHODS.includes(m as ResolveMethod));
  if (methods && (bad?.length || !methods.length)) {
    throw new UserError(`--resolve: unknown method(s) ${bad?.join(', ') || '(none given)'}; known: ${RESOLVE_METHODS.join(', ')}`, { exitCode: ExitCode.usage });
  }
  const secret = values['token-file'] ? (await readFile(values['token-file'], 'utf8')).trim() : undefined;
  // (docs/security.md: until the key service hands each agent only its own key)
  const nodeKey = secret ? installSecretKeySource(secret, nodeName) : undefined;
  const kc = loadKubeConfig(values.kubeconfig);
  const client = new KubeClient(kc, { userAgent: `podtap-agent/${nodeName}` });
  const metrics = createAgentMetrics({ defaultMetrics: true });
  const agent = new NodeAgent({ client, nodeName, logger: log, reportIntervalMs: interval * 1000, nodeKey, metrics, ...(methods ? { resolve: { methods: methods as ResolveMethod[] } } : {}) });
  metrics.setSessionSource(() => agent.sessions);
  const http = values['metrics-addr']
    ? await startHttp(values['metrics-addr'], { registry: metrics.registry, notReady: () => (agent.informer.hasSynced() ? undefined : 'assignments not synced') }, log)
    : undefined;
  await agent.start();
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  const detach = values['detach-on-exit'] || (await uninstalling(client, podNamespace(), log));
  log.info({ signal, detach }, 'agent stopping');
  await agent.shutdown({ detach });
  await http?.close();
  return ExitCode.ok;
}
