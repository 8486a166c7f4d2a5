/**
 * Running the system tools (clang, bpftool, tc, ip) with execa. A Runner may
 * target a named network namespace: commands then run under
 * `nsenter --net=/run/netns/NAME`, which (unlike `ip netns exec`) keeps the
 * mount namespace, so /sys/fs/bpf stays the host's bpffs.
 */
import { execa } from 'execa';

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export class CommandError extends Error {
  readonly command: string;
  readonly stderr: string;
  readonly exitCode: number;
  constructor(command: string, r: RunResult) {
    super(`${command} failed (exit ${r.exitCode}): ${firstLines(r.stderr || r.stdout, 3)}`);
    this.name = 'CommandError';
    this.command = command;
    this.stderr = r.stderr;
    this.exitCode = r.exitCode;
  }
}

function firstLines(s: string, n: number): string {
  return s.trim().split('\n').slice(0, n).join(' | ');
}

export interface Runner {
  /** Network namespace name (under /run/netns), or undefined for the current one. */
  readonly netns: string | undefined;
  run(cmd: string, args: string[], opts?: { input?: string; netnsScoped?: boolean }): Promise<RunResult>;
  /** Like run, but throws CommandError on a non-zero exit. */
  check(cmd: string, args: string[], opts?: { input?: string; netnsScoped?: boolean }): Promise<string>;
}

export function createRunner(netns?: string): Runner {
  const run: Runner['run'] = async (cmd, args, opts = {}) => {
    // bpftool and clang do not care about network namespaces; tc and ip do.
    const scoped = opts.netnsScoped ?? true;
    const [file, argv] = netns && scoped ? ['nsenter', [`--net=/run/netns/${netns}`, cmd, ...args]] : [cmd, args];
    const r = await execa(file, argv, { reject: false, input: opts.input, stripFinalNewline: false });
    return { stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), exitCode: r.exitCode ?? -1 };
  };
  return {
    netns,
    run,
    async check(cmd, args, opts) {
      const r = await run(cmd, args, opts);
      if (r.exitCode !== 0) throw new CommandError(`${cmd} ${args.join(' ')}`, r);
      return r.stdout;
    },
  };
}
