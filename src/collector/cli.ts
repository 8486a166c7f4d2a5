/**
 * `podtap collector`: receive the tunnel and write pcapng until SIGINT/SIGTERM.
 */
import { stat } from 'node:fs/promises';
import { isIPv6 } from 'node:net';
import { parseArgs } from 'node:util';
import { ExitCode, UserError } from '../util/errors.ts';
import { rootLogger, type Logger } from '../util/log.ts';
import { GENEVE_PORT, VXLAN_PORT, type TunnelMode } from '../wire/format.ts';
import { startCollector, type CollectorStats } from './collector.ts';

export const COLLECTOR_HELP = `Usage: podtap collector --out DIR [options]

Receives the mirrored traffic that podtap agents (or \`podtap sniff\`) send
through a Geneve or VXLAN tunnel, rebuilds every packet exactly as it crossed
the pod's interface, and writes the packets to a pcapng file.

Options:
  --listen ADDR:PORT   UDP address to receive on (default 0.0.0.0:6081 for
                       Geneve, 0.0.0.0:4789 for VXLAN; IPv6 as [::]:6081;
                       ":PORT" or "PORT" binds 0.0.0.0)
  --out DIR            directory for the capture files (must exist)
  --tunnel MODE        geneve (default): podtap's Geneve format, packets rebuilt
                       from their pieces, named by pod, with direction and the
                       node's capture time; vxlan: plain VXLAN, each inner
                       frame written as it arrives, one interface per sender
                       and VNI, stamped with the receive time
  --token TOKEN        accept data only from senders whose announcement
                       carries this token (default: \$PODTAP_TOKEN; empty =
                       accept every sender)
  --sockets N          receive on N sockets sharing the port (SO_REUSEPORT)
  -h, --help           show this help

Files:
  DIR/podtap-<UTC start>-<NNNN>.pcapng, e.g. podtap-20251125T101530Z-0001.pcapng,
  never overwriting an existing file. One interface block per pod interface,
  named namespace/pod (the veth's name for interfaces without a pod, and
  <sender address>/if<ifindex> until the sender announces the interface), with
  the node and interface in its description, nanosecond timestamps, and the
  direction in each packet's flags: inbound = sent to the pod, outbound = sent
  by the pod. The file is complete when the collector exits.

On SIGINT or SIGTERM the collector writes out what it has, closes the file,
prints a summary line (datagrams received, packets rebuilt, lost, malformed,
bytes written) and exits 0. Logs (JSON) go to stderr; level: PODTAP_LOG_LEVEL.
`;

/** Parses ADDR:PORT, [V6]:PORT, :PORT or PORT. */
export function parseListen(s: string, defaultPort: number): { host: string; port: number } {
  let host = '0.0.0.0';
  let portText = String(defaultPort);
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (s === '') {
    // defaults
  } else if (v6) {
    host = v6[1]!;
    portText = v6[2] ?? portText;
    if (!isIPv6(host)) throw new UserError(`--listen: ${host} is not an IPv6 address`, { exitCode: ExitCode.usage });
  } else if (/^\d+$/.test(s)) {
    portText = s;
  } else {
    const i = s.lastIndexOf(':');
    if (i < 0) host = s;
    else {
      host = s.slice(0, i) || host;
      portText = s.slice(i + 1);
    }
    if (host.includes(':')) throw new UserError(`--listen: write IPv6 addresses in brackets, e.g. [${host}]:${defaultPort}`, { exitCode: ExitCode.usage });
  }
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) throw new UserError(`--listen: bad port "${portText}"`, { exitCode: ExitCode.usage });
  return { host, port };
}

export function summaryLine(s: CollectorStats, file: string): string {
  return (
    `podtap collector: received ${s.received} datagrams, rebuilt ${s.rebuilt} packets, lost ${s.lost}, ` +
    `malformed ${s.malformed}, incomplete ${s.incomplete}, wrote ${s.bytesWritten} bytes to ${file}\n`
  );
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
        sockets: { type: 'string', default: '1' },
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
  if (tunnel !== 'geneve' && tunnel !== 'vxlan') throw new UserError(`--tunnel: expected geneve or vxlan, got "${values.tunnel}"`, { exitCode: ExitCode.usage });
  const mode: TunnelMode = tunnel;
  if (!values.out) throw new UserError('--out DIR is required', { exitCode: ExitCode.usage, hint: 'see podtap collector --help' });
  const outDir = values.out;
  const isDir = await stat(outDir).then((s) => s.isDirectory(), () => false);
  if (!isDir) throw new UserError(`--out: ${outDir} is not a directory`, { exitCode: ExitCode.badInput });
  const sockets = Number(values.sockets);
  if (!Number.isInteger(sockets) || sockets < 1 || sockets > 64) throw new UserError('--sockets: expected 1..64', { exitCode: ExitCode.usage });
  const { host, port } = parseListen(values.listen ?? '', mode === 'vxlan' ? VXLAN_PORT : GENEVE_PORT);
  const token = values.token ?? process.env.PODTAP_TOKEN ?? '';

  const log = logger ?? rootLogger('collector');
  let collector;
  try {
    collector = await startCollector({ host, port, outDir, tunnel: mode, token: token || undefined, logger: log, sockets });
  } catch (err) {
    throw new UserError(`cannot listen on ${host}:${port}: ${(err as Error & { cause?: Error }).cause?.message ?? String(err)}`, {
      exitCode: ExitCode.failure,
      cause: err,
    });
  }
  const file = collector.files[collector.files.length - 1]!;
  process.stdout.write(`podtap collector: listening on udp ${host}:${collector.address.port} (${mode}), writing ${file}\n`);

  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await collector.close();
  process.stdout.write(summaryLine(collector.stats(), file));
  return ExitCode.ok;
}
