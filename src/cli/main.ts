#!/usr/bin/env node
/**
 * podtap — one binary, several roles. Each subcommand lives in its own module
 * and is imported only when used.
 */
import { errorMessage, ExitCode, UserError } from '../util/errors.ts';
import { podtapVersion } from '../util/version.ts';

export type Command = { summary: string; run: (argv: string[]) => Promise<number> };

/** The commands of an installation. A clone of the repository adds its development commands (tools/dev/main.ts). */
export const commands: Record<string, Command> = {
  sniff: {
    summary: 'capture on this Linux host, without Kubernetes (root)',
    run: async (a) => (await import('../sniff/sniff.ts')).sniffCommand(a),
  },
  collector: {
    summary: 'receive the tunnel and write pcapng files',
    run: async (a) => (await import('../collector/cli.ts')).collectorCommand(a),
  },
  controller: {
    summary: 'reconcile SniffPolicies into per-node assignments (in-cluster)',
    run: async (a) => (await import('../controller/cli.ts')).controllerCommand(a),
  },
  agent: {
    summary: "drive this node's data plane from its assignments (in-cluster, root)",
    run: async (a) => (await import('../agent/cli.ts')).agentCommand(a),
  },
  features: {
    summary: "what this kernel's BPF offers, and the data plane variant built for it (root)",
    run: async (a) => (await import('./features.ts')).featuresCommand(a),
  },
  doctor: {
    summary: 'check this node for what stops or silently bypasses capture (root)',
    run: async (a) => (await import('./doctor.ts')).doctorCommand(a),
  },
  crds: {
    summary: 'print or apply the CustomResourceDefinitions of this version, or delete an earlier one\'s (the chart\'s upgrade hooks)',
    run: async (a) => (await import('./crds.ts')).crdsCommand(a),
  },
  cleanup: {
    summary: 'remove every podtap program, pin and capture device from this host (root)',
    run: async (a) => (await import('./cleanup.ts')).cleanupCommand(a),
  },
};

/** Commands a clone of the repository has and an installation has not: where to run them instead. */
const CLONE_ONLY: Record<string, string> = {
  demo: 'scripts/demo.sh (or scripts/podtap demo)',
  devcluster: 'scripts/podtap devcluster',
};

function usage(commands: Record<string, Command>): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  return [
    'Usage: podtap <command> [options]',
    '',
    'Mirror pod traffic, whole, through an eBPF tunnel into pcapng.',
    '',
    'Commands:',
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'Run "podtap <command> --help" for the options of a command.',
    'Options: --version, --help',
  ].join('\n');
}

export async function main(argv: string[], all: Record<string, Command> = commands): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage(all));
    return name ? ExitCode.ok : ExitCode.usage;
  }
  if (name === '--version' || name === 'version') {
    console.log(`podtap ${podtapVersion()}`);
    return ExitCode.ok;
  }
  const cmd = all[name];
  if (!cmd) {
    const clone = CLONE_ONLY[name];
    if (clone) console.error(`podtap: "${name}" is a development command of a clone of the repository, not of this installation: run ${clone} there`);
    else console.error(`podtap: unknown command "${name}"\n\n${usage(all)}`);
    return ExitCode.usage;
  }
  return cmd.run(rest);
}

export function reportError(err: unknown): number {
  if (err instanceof UserError) {
    console.error(`podtap: error: ${err.message}`);
    if (err.hint) console.error(`  ${err.hint}`);
    return err.exitCode;
  }
  console.error(`podtap: unexpected error: ${errorMessage(err)}`);
  if (err instanceof Error && err.cause) console.error(`  caused by: ${errorMessage(err.cause)}`);
  if (process.env.PODTAP_DEBUG && err instanceof Error) console.error(err.stack);
  return ExitCode.failure;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.exitCode = reportError(err);
    },
  );
}
