/**
 * `podtap controller`: reconcile SniffPolicies into per-node SniffNodeAssignments
 * until SIGTERM/SIGINT.
 */
import { parseArgs } from 'node:util';
import { ExitCode, UserError, errorMessage } from '../util/errors.ts';
import { parseAllowList, type DestinationAllowList } from './destinations.ts';
import { rootLogger, type Logger } from '../util/log.ts';
import { DEFAULT_INSTALL_NAMESPACE } from '../api/index.ts';
import { DEFAULT_WORKERS, LEASE_NAME, startController, type ControllerOptions } from './controller.ts';

export const CONTROLLER_HELP = `Usage: podtap controller [options]

Watches SniffPolicies, pods, nodes, namespaces, collector Services and their
EndpointSlices, and writes each node's work in its SniffNodeAssignment: an
entry per policy with selected pods on the node (the node's agent acts on
them). Aggregates the agents' reports into each policy's status (conditions,
counters, the nodes that need a look) and records
Events when a policy's Ready condition changes. Runs as a Deployment; with
several replicas one leads (a Lease) and the others stand by with warm caches.

Options:
  --kubeconfig FILE           kubeconfig to use (default: $KUBECONFIG, then the
                              pod's service account, then ~/.kube/config)
  --metrics-addr ADDR         serve /metrics, /healthz and /readyz on ADDR
                              (default :8080; "0" disables)
  --leader-elect=true|false   elect a leader through a Lease (default true)
  --namespace NS              podtap's own namespace: the SniffNodeAssignments are
                              written there (only there: tenants have no access
                              to it) and the Lease "${LEASE_NAME}" (default:
                              $POD_NAMESPACE, the service account's namespace,
                              or ${DEFAULT_INSTALL_NAMESPACE})
  --allowed-collector-service NS/NAME
                              a collector Service policies may name (repeat
                              or comma-separate; default: NS/podtap-collector
                              of --namespace, unless either list is given)
  --allowed-collector-cidr CIDR
                              a network policies may name by
                              spec.collector.address (repeat or comma-separate;
                              default: none). Any other destination makes the
                              policy Ready=False DestinationNotAllowed and
                              removes its assignments
  --max-packets-per-second N  the most packets per second any policy mirrors
                              on a node, and the rate of a policy that sets
                              none (default 0: no ceiling)
  --max-bytes-per-second N    the same for bytes (default 0: no ceiling)
  --workers N                 policies reconciled in parallel (default ${DEFAULT_WORKERS})
  --report-stale-seconds N    a node whose agent has not reported for N seconds
                              is AgentNotReporting (default 30: three report
                              intervals)
  -h, --help                  show this help

Exit codes: 0 after SIGTERM/SIGINT (in-flight reconciles finish, the lease is
released so a standby takes over at once); 1 when leadership is lost (the
process exits so that Kubernetes restarts it as a clean candidate); 2 on a
usage error. Logs (JSON) go to stderr; level: PODTAP_LOG_LEVEL.
`;

function positiveInt(name: string, v: string | undefined, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1) throw new UserError(`--${name}: expected a positive integer, got "${v}"`, { exitCode: ExitCode.usage });
  return n;
}

function nonNegativeInt(name: string, v: string | undefined): number {
  if (v === undefined) return 0;
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new UserError(`--${name}: expected a whole number (0 = no ceiling), got "${v}"`, { exitCode: ExitCode.usage });
  return Number(v);
}

function bool(name: string, v: string | undefined, def: boolean): boolean {
  if (v === undefined) return def;
  if (/^(true|1|yes)$/i.test(v)) return true;
  if (/^(false|0|no)$/i.test(v)) return false;
  throw new UserError(`--${name}: expected true or false, got "${v}"`, { exitCode: ExitCode.usage });
}

/** Parse the command line into controller options (exported for tests). */
export function parseControllerArgs(argv: string[]): { help: true } | { help: false; options: ControllerOptions } {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        kubeconfig: { type: 'string' },
        'metrics-addr': { type: 'string' },
        'leader-elect': { type: 'string' },
        namespace: { type: 'string' },
        'allowed-collector-service': { type: 'string', multiple: true },
        'allowed-collector-cidr': { type: 'string', multiple: true },
        'max-packets-per-second': { type: 'string' },
        'max-bytes-per-second': { type: 'string' },
        workers: { type: 'string' },
        'report-stale-seconds': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UserError(err instanceof Error ? err.message : String(err), { exitCode: ExitCode.usage, hint: 'see podtap controller --help', cause: err });
  }
  if (values.help) return { help: true };
  const services = values['allowed-collector-service'];
  const cidrs = values['allowed-collector-cidr'];
  let destinations: DestinationAllowList | undefined;
  if (services || cidrs) {
    try {
      destinations = parseAllowList(services ?? [], cidrs ?? []);
    } catch (err) {
      throw new UserError(`--allowed-collector-*: ${errorMessage(err)}`, { exitCode: ExitCode.usage, cause: err });
    }
  }
  return {
    help: false,
    options: {
      kubeconfig: values.kubeconfig,
      metricsAddr: values['metrics-addr'] ?? ':8080',
      leaderElect: bool('leader-elect', values['leader-elect'], true),
      namespace: values.namespace,
      destinations,
      rateCeiling: {
        packetsPerSecond: nonNegativeInt('max-packets-per-second', values['max-packets-per-second']),
        bytesPerSecond: nonNegativeInt('max-bytes-per-second', values['max-bytes-per-second']),
      },
      workers: positiveInt('workers', values.workers, DEFAULT_WORKERS),
      reportStaleSeconds: positiveInt('report-stale-seconds', values['report-stale-seconds'], 30),
    },
  };
}

/** Runs the controller until SIGTERM/SIGINT; resolves to the exit code. */
export async function controllerCommand(argv: string[], logger?: Logger): Promise<number> {
  const parsed = parseControllerArgs(argv);
  if (parsed.help) {
    process.stdout.write(CONTROLLER_HELP);
    return ExitCode.ok;
  }
  const log = logger ?? rootLogger('controller');
  let lost = false;
  let wake: () => void = () => {};
  const done = new Promise<void>((resolve) => (wake = resolve));
  const controller = await startController({
    ...parsed.options,
    logger: log,
    defaultMetrics: true,
    onLeadershipLost: () => {
      lost = true;
      wake();
    },
  });
  const onSignal = (signal: string) => {
    log.info({ signal }, 'shutting down');
    wake();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  await done;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  if (lost) {
    // Another replica may be writing already: do not linger to clean up.
    log.error('leadership lost, exiting');
    process.exit(ExitCode.failure);
  }
  await controller.stop();
  return ExitCode.ok;
}
