/**
 * `kubectl podtap`: the kubectl plugin (the `kubectl-podtap` executable).
 * Argument parsing and help; the work is in capture.ts and commands.ts.
 */
import { parseArgs } from 'node:util';
import { complete } from './complete.ts';
import { foreignOption, parseArgsOptions, Subcommands, type Subcommand } from './options.ts';
import { DURATION_EXAMPLES, parseDuration } from '../api/index.ts';
import { CAPTURE_DIRECTIONS, parseCaptureDirection } from './direction.ts';
import { ExitCode, UserError } from '../util/errors.ts';
import { podtapVersion } from '../util/version.ts';
import { capture, type PluginIO } from './capture.ts';
import { defaultCollector, findCollector, type CollectorFlags } from './collector-api.ts';
import { fetchCapture, listCaptures, status } from './commands.ts';
import { Kube } from './kube.ts';

export type { PluginIO };

/** What parseArgs gives for OPTIONS (options.ts). */
interface ParsedValues {
  namespace?: string; 'all-namespaces'?: boolean; selector?: string; filter?: string[]; direction: string; snaplen: string;
  'max-packets': string; duration: string; for?: string; write?: string; output?: string; wireshark?: boolean; policy?: string;
  kubeconfig?: string; context?: string; 'collector-namespace'?: string; 'collector-service'?: string; 'collector-port'?: string;
  'collector-url'?: string; 'token-file'?: string; 'collector-token-secret'?: string; help?: boolean; version?: boolean;
}

export const PLUGIN_HELP = `kubectl podtap: capture a pod's packets, whole, into Wireshark — no tcpdump in the pod.

Usage:
  kubectl podtap capture [-n NS] POD | deploy/NAME | sts/NAME | ds/NAME | -l SELECTOR
                         [-f EXPR]... [-w FILE | -o - | --wireshark]
  kubectl podtap list    [-n NS | -A] [--policy NAME] [-o json]
  kubectl podtap status  [-n NS | -A] [NAME]
  kubectl podtap fetch   PATH | --policy NAME [-n NS] [-w FILE | -o -]

capture creates a short-lived SniffPolicy for the pod (or every pod of the
workload, or every pod the selector picks in the namespace), streams its
packets live from the podtap collector through the API server's port-forward,
and deletes the policy when you press Ctrl-C, when Wireshark closes, or after
--for.
  -l, --selector SEL     pods by label (app=web,tier!=db, env in (a,b), !canary)
  -f, --filter EXPR      a tcpdump-like expression: "tcp port 443 and host 10.0.0.5",
                         "(port 80 or port 443) and net 10.0.0.0/8",
                         "tcp[tcpflags] & (tcp-syn|tcp-rst) != 0"; or K=V[,V]:
                         proto=tcp,udp | port=443,8000-8100 | cidr=10.0.0.0/8 |
                         host=IP | tcp-flags=syn,rst   (repeat: ANDed). What a
                         SniffPolicy cannot express (not, src/dst, or across
                         kinds) is refused, never approximated
  --direction D          from the pod's side, as tcpdump -Q inside the pod:
${Object.entries(CAPTURE_DIRECTIONS).map(([w, d]) => `                           ${`${w}`.padEnd(5)} ${d.help}`).join('\n')}
  --snaplen N            bytes kept per packet (default 0: whole packets)
  --max-packets N        the policy completes after N packets
  --duration D           the policy's own limit, so a capture whose command
                         dies still ends (default 10m)
  --for D                stop the command after D (30s, 5m; default: Ctrl-C)
  -w FILE                write pcapng to FILE
  -o -                   write pcapng to standard output: | wireshark -k -i -
  --wireshark            start Wireshark on the live stream

list    the capture files the collector keeps (per policy, rotated)
status  SniffPolicies with their state and counts, and the collector's counts;
        with NAME, its conditions and the tunnel check: the packets the
        agents mirrored against those the collector rebuilt
fetch   download a stored capture (PATH from list; --policy: its newest file)

Cluster and collector:
  -n, --namespace NS     namespace of the pod and the policy (default: the context's)
  -A, --all-namespaces   list/status: every namespace
  --kubeconfig FILE, --context NAME
  --collector-namespace NS   where podtap's collector runs (default: found by
                             the chart's labels in any namespace, else
                             podtap-system)
  --collector-service NAME   its Service (default: found likewise, else
                             podtap-collector)
  --collector-port N         its HTTP port (default: the Service's port named http)
  --collector-url URL        reach the collector directly instead of through the
                             API server's port-forward (e.g. http://127.0.0.1:8080
                             after kubectl port-forward, or from inside the cluster)
  --token-file FILE          the install's API token for the collector (break-
                             glass: reads every namespace; default:
                             $PODTAP_COLLECTOR_TOKEN). Without it the kubeconfig
                             user's own token is sent: the collector checks it
                             with the API server and lets you read the
                             namespaces where RBAC grants "get" on
                             sniffpolicies/captures (the edit and admin roles
                             with the chart's rbac.aggregateToEdit). A user
                             without a token (client certificate) falls back to
                             the Secret <collector service>-token, if readable
  --collector-token-secret NAME
  -h, --help
  --version              print the plugin's version (also: kubectl podtap version)

Completion (kubectl 1.26+): put kubectl_complete-podtap on your PATH beside
kubectl-podtap (npm installs it; from the krew archive, link it); kubectl
then completes subcommands, options, pods, workloads, policies, namespaces.

Exit codes: 0 done, 1 failure, 2 usage, 4 a missing tool (wireshark),
5 bad input, 7 the cluster or collector unreachable (capture: also when the
live stream is cut before Ctrl-C or --for; what came is written).
`;


/** The kubeconfig's cluster and user when there is a kubeconfig; undefined when there is none (a collector reached by --collector-url alone). */
function optionalKube(flags: ConstructorParameters<typeof Kube>[0]): Kube | undefined {
  if (flags.kubeconfig || flags.context) return new Kube(flags);
  try {
    return new Kube(flags);
  } catch (err) {
    if (err instanceof UserError) return undefined;
    throw err;
  }
}

function usage(message: string): UserError {
  return new UserError(message, { exitCode: ExitCode.usage, hint: 'see kubectl podtap --help' });
}

export async function kubectlPodtap(argv: string[], io: PluginIO): Promise<number> {
  let parsed;
  // shell completion: the words as typed so far, unparsed (the last may be half an option)
  if (argv[0] === '__complete') return complete(argv.slice(1), io);
  try {
    parsed = parseArgs({ args: argv, strict: true, allowPositionals: true, tokens: true, options: parseArgsOptions() });
  } catch (err) {
    throw usage(err instanceof Error ? err.message : String(err));
  }
  const { positionals, tokens } = parsed;
  const v = parsed.values as ParsedValues;
  const [cmd, ...args] = positionals;
  if (cmd !== undefined && (Subcommands as readonly string[]).includes(cmd)) {
    const foreign = foreignOption(cmd as Subcommand, tokens.filter((t) => t.kind === 'option').map((t) => t.name));
    if (foreign) {
      throw usage(`--${foreign.option} is not an option of ${cmd}${foreign.takenBy.length ? ` (${foreign.takenBy.join(', ')} ${foreign.takenBy.length > 1 ? 'take' : 'takes'} it)` : ''}`);
    }
  }
  if (v.version || cmd === 'version') {
    io.stdout.write(`kubectl-podtap ${podtapVersion()}\n`);
    return ExitCode.ok;
  }
  if (v.help || !cmd || cmd === 'help') {
    io.stdout.write(PLUGIN_HELP);
    return v.help || cmd === 'help' ? ExitCode.ok : ExitCode.usage;
  }
  const collectorPort = v['collector-port'] === undefined ? undefined : Number(v['collector-port']);
  if (collectorPort !== undefined && !(Number.isInteger(collectorPort) && collectorPort > 0 && collectorPort < 65536)) throw usage('--collector-port: 1..65535');
  const given = { namespace: v['collector-namespace'], service: v['collector-service'], tokenSecret: v['collector-token-secret'] };
  /** The collector: found through the cluster when there is one to ask (findCollector), else the flags or defaults. */
  const collectorOf = async (kube: Kube | undefined): Promise<CollectorFlags> => ({
    url: v['collector-url'], port: collectorPort, tokenFile: v['token-file'],
    ...(kube && !v['collector-url'] ? await findCollector(kube, given) : defaultCollector(given)),
  });
  const kubeFlags = { kubeconfig: v.kubeconfig, context: v.context, namespace: v.namespace };
  const json = v.output === 'json';
  const toStdout = v.output === '-';
  if (v.output !== undefined && !json && !toStdout) throw usage('-o: "-" (capture, fetch) or "json" (list)');

  switch (cmd) {
    case 'capture': {
      if (args.length > 1) throw usage(`capture takes one pod, got ${args.join(' ')}`);
      const policyTypes = parseCaptureDirection(v.direction);
      const snapLength = Number(v.snaplen);
      if (!Number.isInteger(snapLength) || snapLength < 0 || snapLength > 65535) throw usage('--snaplen: 0..65535');
      const maxPackets = Number(v['max-packets']);
      if (!Number.isInteger(maxPackets) || maxPackets < 0) throw usage('--max-packets: a count');
      if (parseDuration(v.duration) === undefined) throw usage(`--duration: "${v.duration}" is not a duration (${DURATION_EXAMPLES})`);
      const stopAfterMs = v.for === undefined ? 0 : parseDuration(v.for);
      if (stopAfterMs === undefined) throw usage(`--for: "${v.for}" is not a duration (${DURATION_EXAMPLES})`);
      if (json) throw usage('capture writes pcapng: -o - or -w FILE');
      const kube = new Kube(kubeFlags);
      return capture(
        kube,
        {
          namespace: kube.namespace, pod: args[0], selector: v.selector, filters: v.filter ?? [], policyTypes, snapLength,
          duration: v.duration, stopAfterMs, maxPackets, write: v.write, stdout: toStdout, wireshark: v.wireshark ?? false, collector: await collectorOf(kube),
        },
        io,
      );
    }
    case 'list': {
      // (with --collector-url the kubeconfig is still read when there is one: its user's token is the credential)
      const kube = v['collector-url'] ? optionalKube(kubeFlags) : new Kube(kubeFlags);
      return listCaptures(kube, { namespace: v['all-namespaces'] ? undefined : (v.namespace ?? kube?.namespace), policy: v.policy, json, collector: await collectorOf(kube) }, io);
    }
    case 'status': {
      const kube = new Kube(kubeFlags);
      return status(kube, { namespace: v['all-namespaces'] ? undefined : kube.namespace, name: args[0], collector: await collectorOf(kube), withCollector: true }, io);
    }
    case 'fetch': {
      if (v.write !== undefined && toStdout) throw usage('choose -w FILE or -o -');
      const kube = v['collector-url'] ? optionalKube(kubeFlags) : new Kube(kubeFlags);
      return fetchCapture(kube, { path: args[0], namespace: v.namespace ?? kube?.namespace, policy: v.policy, write: v.write, stdout: toStdout, collector: await collectorOf(kube) }, io);
    }
    default:
      throw usage(`unknown command "${cmd}" (capture, list, status, fetch)`);
  }
}
