/**
 * `podtap collector`: receive the tunnel, write rotating pcapng files and serve
 * them (and a live stream) over HTTP, until SIGINT/SIGTERM.
 */
import { stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { DURATION_EXAMPLES, parseDuration } from '../api/vocabulary.ts';
import { errorMessage, ExitCode, UserError } from '../util/errors.ts';
import { parseHostPort } from '../util/hostport.ts';
import { rootLogger, type Logger } from '../util/log.ts';
import { parseSize } from '../util/units.ts';
import { GENEVE_PORT, VXLAN_PORT, type TunnelMode } from '../wire/format.ts';
import type { KubeClient } from '../k8s/index.ts';
import type { Reviewer } from './access.ts';
import { AssignmentSet } from './admission.ts';
import type { AssignmentFeed } from './assignments.ts';
import { defaultWorkers, startCollector, type CollectorStats } from './collector.ts';

export const COLLECTOR_HELP = `Usage: podtap collector --out DIR [options]

Receives the mirrored traffic that podtap agents (or \`podtap sniff\`) send
through a Geneve or VXLAN tunnel, rebuilds every packet exactly as it crossed
the pod's interface, writes rotating pcapng files per policy, and serves
them — and a live pcapng stream — over HTTP.

Tunnel:
  --listen ADDR:PORT   UDP address to receive on (default 0.0.0.0:6081 for
                       Geneve, 0.0.0.0:4789 for VXLAN; IPv6 as [::]:6081;
                       ":PORT" or "PORT" binds 0.0.0.0)
  --tunnel MODE        geneve (default): podtap's Geneve format, packets rebuilt
                       from their pieces, named by pod, with direction and the
                       node's capture time; vxlan: plain VXLAN, each inner
                       frame written as it arrives, one interface per sender
                       and VNI, stamped with the receive time
  --token SECRET       the install's secret (default: \$PODTAP_TOKEN): each
                       node's key is derived from it, and only announcements
                       signed with their node's key, fresh (within
                       --max-skew of our clock) and never seen before are
                       taken; data only on the streams they announce. It
                       never travels: senders send a MAC, not the secret.
                       Empty = authenticate nobody and take data from every
                       sender (a warning is logged)
  --assignments-namespace NS
                       take announcements only for a (policy namespace,
                       policy, node) that an entry of a SniffNodeAssignment
                       in NS (the install's namespace) names and that is not
                       stopped; an entry removed or stopped revokes its
                       streams at once. Nothing is taken until the first
                       list (needs get/list/watch on sniffnodeassignments in
                       NS; the API server as with --kubeconfig)
  --own-addresses LIST with --assignments-namespace: only assignments whose
                       resolved collector address is one of these
                       (comma-separated; the chart passes the pod's IPs)
  --max-skew D         how far an announcement's time may be from the
                       collector's clock (default 60s)
  --workers N          ingest threads sharing the port with SO_REUSEPORT; each
                       sequence stream stays on one thread. 0 = receive in
                       the main thread (default ${defaultWorkers()} here: the usable CPUs —
                       affinity and cgroup CPU limit — but one, at most 4;
                       0 on two CPUs or fewer)
  --sockets N          with --workers 0: sockets sharing the port in the main
                       thread (default 1)

Files:
  --out DIR            directory for the capture files (must exist)
  --layout L           policy (default): one series of files per policy,
                         DIR/<namespace>_<policy>/<policy>-<UTC start>-<seq>.pcapng
                       and packets of no announced policy in
                         DIR/unassigned/unassigned-<UTC start>-<seq>.pcapng;
                       single: every packet in one series,
                         DIR/podtap-<UTC start>-<seq>.pcapng
  --rotate-size SIZE   start a new file at this size (default 256MiB)
  --rotate-interval D  start a new file after this long (default 1h; 0 = never)
  --retain-size SIZE   delete the oldest closed files beyond this total
                       (default 0 = no limit)
  --retain-age D       delete closed files older than this (default 0 = keep)
  SIZE: bytes, or with a unit: 500MB, 1.5GiB, 512Mi. D: 30s, 10m, 1h30m, 7d.

HTTP API:
  --http ADDR:PORT     serve the API here (default: no API). GET /healthz,
                       /readyz, /metrics, /api/v1/status, /api/v1/captures
                       (the files, JSON), /api/v1/captures/<path> (one file),
                       /stream?namespace=&pod=&policy=&direction=in|out|both
                       (live pcapng, direction from the pod's side:
                       curl … | wireshark -k -i -)
  --kube-auth          authenticate Kubernetes users: each request's bearer
                       token is checked with a TokenReview, then each read
                       with a SubjectAccessReview for "get" on
                       sniffpolicies/captures (podtap.io) in the namespace
                       it reads (and for the policy, when it names one): a
                       user reads only the namespaces RBAC lets them; lists
                       of every namespace hold only those; a live stream
                       must name one, and ends when the grant does
                       (checked every --auth-recheck). The collector's own
                       account needs "create" on tokenreviews and
                       subjectaccessreviews
  --kubeconfig FILE    the API server to ask, with --kube-auth (default:
                       $KUBECONFIG, else the pod's service account, else
                       ~/.kube/config)
  --auth-recheck D     how often a live stream's reader is checked again
                       (default 60s)
  --auth-token-file F  the install's API token (break-glass: it reads every
                       namespace): "Authorization: Bearer <token>", read from
                       F (a mounted Secret; re-read when it changes). Without
                       it and without --kube-auth, nothing is authenticated
  --http-public LIST   paths served without the token, comma-separated
                       (default /healthz,/readyz,/metrics; "none": all need it)
  -h, --help           show this help

Files are opened when their first packet comes, rotated by size and time
(flushed and fsynced), and never overwritten. One interface block per pod
interface, named namespace/pod (the veth's name for interfaces without a pod,
and <sender address>/if<ifindex> until the sender announces the interface),
with the node and interface in its description, nanosecond timestamps, and
the direction in each packet's flags: inbound = sent to the pod, outbound =
sent by the pod. Every file ends with a whole block; a torn file (a crash) is
repaired (cut back to its last whole block) on start. When the disk is full
the collector stops writing, counts what it drops, keeps serving, and resumes
in new files when there is room again.

On SIGINT or SIGTERM the collector writes out what it has, closes the files,
prints a summary line (datagrams received, packets rebuilt, lost, malformed,
bytes written) and exits 0. Logs (JSON) go to stderr; level: PODTAP_LOG_LEVEL.
`;

/** ADDR:PORT, [V6]:PORT, :PORT, PORT or ADDR (util/hostport.ts); all addresses and @defaultPort by default. */
export function parseListen(s: string, defaultPort: number, flag = '--listen'): { host: string; port: number } {
  try {
    const { host, port } = parseHostPort(s);
    return { host: host ?? '0.0.0.0', port: port ?? defaultPort };
  } catch (err) {
    throw new UserError(`${flag}: ${errorMessage(err)}`, { exitCode: ExitCode.usage, cause: err });
  }
}

export function summaryLine(s: CollectorStats, dir: string): string {
  return (
    `podtap collector: received ${s.received} datagrams, rebuilt ${s.rebuilt} packets, lost ${s.lost}, ` +
    `malformed ${s.malformed}, incomplete ${s.incomplete}, kernel dropped ${s.kernelDropped}, write dropped ${s.writeDropped}, ` +
    `wrote ${s.bytesWritten} bytes in ${s.files} files under ${dir}\n`
  );
}

function usage(message: string): UserError {
  return new UserError(message, { exitCode: ExitCode.usage, hint: 'see podtap collector --help' });
}

function sizeFlag(flag: string, v: string): number {
  const n = parseSize(v);
  if (n === undefined) throw usage(`${flag}: "${v}" is not a size (e.g. 512MiB, 10GB)`);
  return n;
}

function durationFlag(flag: string, v: string): number {
  if (v.trim() === '0') return 0;
  const n = parseDuration(v.trim());
  if (n === undefined) throw usage(`${flag}: "${v}" is not a duration (e.g. ${DURATION_EXAMPLES})`);
  return n;
}

function intFlag(flag: string, v: string, min: number, max: number): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max) throw usage(`${flag}: expected ${min}..${max}`);
  return n;
}

/**
 * Runs the collector until SIGINT/SIGTERM; resolves to the exit code.
 * Usage errors throw UserError (exit code ExitCode.usage).
 */
export async function collectorCommand(argv: string[], logger?: Logger): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        listen: { type: 'string' },
        out: { type: 'string' },
        tunnel: { type: 'string', default: 'geneve' },
        token: { type: 'string' },
        'max-skew': { type: 'string', default: '60s' },
        workers: { type: 'string' },
        sockets: { type: 'string', default: '1' },
        layout: { type: 'string', default: 'policy' },
        'rotate-size': { type: 'string', default: '256MiB' },
        'rotate-interval': { type: 'string', default: '1h' },
        'retain-size': { type: 'string', default: '0' },
        'retain-age': { type: 'string', default: '0' },
        http: { type: 'string' },
        'auth-token-file': { type: 'string' },
        'kube-auth': { type: 'boolean', default: false },
        kubeconfig: { type: 'string' },
        'auth-recheck': { type: 'string', default: '60s' },
        'assignments-namespace': { type: 'string' },
        'own-addresses': { type: 'string' },
        'http-public': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UserError(err instanceof Error ? err.message : String(err), { exitCode: ExitCode.usage, hint: 'see podtap collector --help', cause: err });
  }
  if (values.help) {
    process.stdout.write(COLLECTOR_HELP);
    return ExitCode.ok;
  }
  const tunnel = values.tunnel.toLowerCase();
  if (tunnel !== 'geneve' && tunnel !== 'vxlan') throw usage(`--tunnel: expected geneve or vxlan, got "${values.tunnel}"`);
  const mode: TunnelMode = tunnel;
  if (!values.out) throw usage('--out DIR is required');
  const outDir = values.out;
  const isDir = await stat(outDir).then((s) => s.isDirectory(), () => false);
  if (!isDir) throw new UserError(`--out: ${outDir} is not a directory`, { exitCode: ExitCode.badInput });
  const sockets = intFlag('--sockets', values.sockets, 1, 64);
  const workers = values.workers === undefined ? defaultWorkers() : intFlag('--workers', values.workers, 0, 64);
  const layout = values.layout;
  if (layout !== 'policy' && layout !== 'single') throw usage(`--layout: expected policy or single, got "${layout}"`);
  const rotateBytes = sizeFlag('--rotate-size', values['rotate-size']);
  if (rotateBytes < 1 << 20) throw usage('--rotate-size: at least 1MiB');
  const rotateMs = durationFlag('--rotate-interval', values['rotate-interval']);
  if (rotateMs > 0 && rotateMs < 1000) throw usage('--rotate-interval: at least 1s (or 0: never)');
  const retainBytes = sizeFlag('--retain-size', values['retain-size']);
  const retainMs = durationFlag('--retain-age', values['retain-age']);
  const { host, port } = parseListen(values.listen ?? '', mode === 'vxlan' ? VXLAN_PORT : GENEVE_PORT);
  // one client for the API server, made only when a flag needs one (the Kubernetes client is not loaded otherwise)
  let client: KubeClient | undefined;
  const kube = async (): Promise<KubeClient> => {
    if (client) return client;
    const k8s = await import('../k8s/index.ts');
    client = new k8s.KubeClient(k8s.loadKubeConfig(values.kubeconfig), { userAgent: 'podtap-collector', timeoutMs: 10_000 });
    return client;
  };
  let http: { host: string; port: number; tokenFile?: string; publicPaths?: string[]; reviewer?: Reviewer; recheckMs?: number } | undefined;
  if (values.http !== undefined) {
    http = { ...parseListen(values.http, 8080, '--http') };
    if (values['auth-token-file']) http.tokenFile = values['auth-token-file'];
    if (values['http-public'] !== undefined) {
      const list = values['http-public'].trim();
      http.publicPaths = list === 'none' || list === '' ? [] : list.split(',').map((p) => (p.trim().startsWith('/') ? p.trim() : `/${p.trim()}`));
    }
    if (values['kube-auth']) {
      const { kubeReviewer } = await import('./access.ts');
      http.reviewer = kubeReviewer(await kube());
      http.recheckMs = durationFlag('--auth-recheck', values['auth-recheck']);
      if (http.recheckMs < 1000) throw usage('--auth-recheck: at least 1s');
    }
  } else if (values['auth-token-file'] || values['http-public'] || values['kube-auth']) {
    throw usage('--auth-token-file, --kube-auth and --http-public need --http ADDR:PORT');
  }
  if (values.kubeconfig && !values['kube-auth'] && !values['assignments-namespace']) throw usage('--kubeconfig is for --kube-auth and --assignments-namespace');
  let allow: AssignmentSet | undefined;
  let feed: AssignmentFeed | undefined;
  const ownAddresses = (values['own-addresses'] ?? '').split(',').map((a) => a.trim()).filter(Boolean);
  if (values['assignments-namespace'] !== undefined) {
    const ns = values['assignments-namespace'];
    if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(ns)) throw usage(`--assignments-namespace: "${ns}" is not a namespace name`);
    const bad = ownAddresses.find((a) => isIP(a) === 0);
    if (bad) throw usage(`--own-addresses: "${bad}" is not an IP address`);
    allow = new AssignmentSet();
  } else if (ownAddresses.length) {
    throw usage('--own-addresses is for --assignments-namespace');
  }
  const token = values.token ?? process.env.PODTAP_TOKEN ?? '';
  const maxSkewMs = durationFlag('--max-skew', values['max-skew']);
  if (maxSkewMs < 1000) throw usage('--max-skew: at least 1s');

  const log = logger ?? rootLogger('collector');
  // listen for the signals first: one that comes while starting (or right
  // after the "listening" line) still gets a clean close
  const stopped = new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  let collector;
  try {
    collector = await startCollector({
      logger: log,
      ingest: { host, port, tunnel: mode, secret: token || undefined, maxSkewMs, workers, sockets },
      store: { dir: outDir, layout, rotateBytes, rotateMs },
      retention: { maxBytes: retainBytes, maxAgeMs: retainMs },
      ...(allow ? { admission: { allow } } : {}),
      ...(http ? { http } : {}),
      processMetrics: true,
    });
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`cannot start the collector on udp ${host}:${port}${http ? ` and http ${http.host}:${http.port}` : ''}: ${(err as Error & { cause?: Error }).cause?.message ?? String(err)}`, {
      exitCode: ExitCode.failure,
      cause: err,
    });
  }
  if (allow) {
    // fed once the collector runs: until its first list, nothing is admitted
    const { startAssignmentFeed } = await import('./assignments.ts');
    feed = startAssignmentFeed({ client: await kube(), namespace: values['assignments-namespace']!, set: allow, addresses: ownAddresses, logger: log });
  }
  const api = collector.http ? `, API on http://${collector.http.host}:${collector.http.port}` : '';
  process.stdout.write(`podtap collector: listening on udp ${host}:${collector.address.port} (${mode}), writing ${outDir}${api}\n`);

  await stopped;
  await feed?.stop();
  await collector.close();
  client?.close();
  process.stdout.write(summaryLine(collector.stats(), outDir));
  return ExitCode.ok;
}
