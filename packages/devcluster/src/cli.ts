/**
 * `podtap devcluster`: runs the embedded Kubernetes API until SIGINT or
 * SIGTERM, optionally writing a kubeconfig for kubectl and the podtap
 * components. It says plainly what it is: a development stand-in.
 */
import { parseArgs } from 'node:util';
import { isIP } from 'node:net';
import { pino } from 'pino';
import { startApiServer, writeKubeconfig } from './index.ts';

/** Exit codes, as podtap's CLI numbers them. */
const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/** A failure the user can act on: the message on stderr, the exit code returned. */
class CliError extends Error {
  readonly exitCode: number;
  readonly hint: string | undefined;
  constructor(message: string, opts: { exitCode: number; hint?: string; cause?: unknown }) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.exitCode = opts.exitCode;
    this.hint = opts.hint;
  }
}

const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));

const HELP = `Usage: podtap devcluster [--port N] [--host ADDR] [--kubeconfig FILE] [options]

Runs podtap's embedded Kubernetes API: the REST and watch protocol of
kube-apiserver 1.32 over plain HTTP, kept in memory, for development, tests
and the demo. kubectl and client libraries work against it.

It is a stand-in, not a cluster: nothing schedules or runs pods, there are no
kubelets, no authentication and no authorization; built-in kinds are stored
without their schema validation. Custom resources are validated against their
CRD's schema and CEL rules. Everything is lost when it stops.

Options:
  --port N            port to listen on (default 8080; 0 picks a free one)
  --host ADDR         address to listen on (default 127.0.0.1); anyone who can
                      reach it can read and change everything
  --kubeconfig FILE   write a kubeconfig for this server to FILE
  --namespace NAME    default namespace in that kubeconfig (default "default")
  --history N         changes kept per resource for watches resuming from an
                      older resourceVersion (default 10000)
  --help              this text

Stop it with Ctrl-C (SIGINT) or SIGTERM.`;

export async function devclusterCommand(argv: string[]): Promise<number> {
  try {
    return await run(argv);
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    console.error(`podtap devcluster: error: ${err.message}`);
    if (err.hint) console.error(`  ${err.hint}`);
    return err.exitCode;
  }
}

async function run(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        port: { type: 'string', default: '8080' },
        host: { type: 'string', default: '127.0.0.1' },
        kubeconfig: { type: 'string' },
        namespace: { type: 'string', default: 'default' },
        history: { type: 'string', default: '10000' },
        help: { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new CliError(errorMessage(err), { exitCode: EXIT.usage, hint: 'see "podtap devcluster --help"' });
  }
  if (values.help) {
    console.log(HELP);
    return EXIT.ok;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new CliError(`--port: "${values.port}" is not a port number`, { exitCode: EXIT.usage });
  if (!isIP(values.host)) throw new CliError(`--host: "${values.host}" is not an IP address`, { exitCode: EXIT.usage });
  const history = Number(values.history);
  if (!Number.isInteger(history) || history < 1) throw new CliError(`--history: "${values.history}" is not a positive integer`, { exitCode: EXIT.usage });

  // JSON lines on stderr, as podtap's own components log.
  const logger = pino({ name: 'devcluster', level: process.env.PODTAP_LOG_LEVEL ?? 'info', base: { component: 'devcluster' } }, pino.destination({ fd: 2, sync: false }));
  let server;
  try {
    server = await startApiServer({ port, host: values.host, logger, historySize: history });
  } catch (err) {
    throw new CliError(`cannot listen on ${values.host}:${port}: ${errorMessage(err)}`, { exitCode: EXIT.failure, cause: err });
  }
  if (values.kubeconfig) await writeKubeconfig(values.kubeconfig, server.url, { namespace: values.namespace });

  const loopback = values.host === '127.0.0.1' || values.host === '::1';
  console.log(
    [
      'podtap devcluster: a development stand-in for a Kubernetes API server — NOT a cluster.',
      `  API        ${server.url} (plain HTTP, no authentication${loopback ? '' : '; reachable beyond this host!'})`,
      values.kubeconfig ? `  kubeconfig ${values.kubeconfig}   (export KUBECONFIG=${values.kubeconfig})` : '  kubeconfig none written (use --kubeconfig FILE)',
      '  Objects are stored and watched in memory; nothing runs pods. Stop with Ctrl-C.',
    ].join('\n'),
  );

  const signal = await new Promise<string>((resolve) => {
    const on = (s: string) => () => resolve(s);
    process.once('SIGINT', on('SIGINT'));
    process.once('SIGTERM', on('SIGTERM'));
  });
  logger.info({ signal }, 'devcluster stopping');
  await server.close();
  console.log('podtap devcluster: stopped');
  return EXIT.ok;
}
