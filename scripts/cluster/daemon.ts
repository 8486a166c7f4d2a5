/**
 * Long-running programs of a cluster (etcd, kube-apiserver, containerd, the
 * kubelet, …): started in a network namespace (nsenter --net keeps the mount
 * namespace: /sys/fs/bpf and the cgroups stay the host's), optionally placed
 * in a cgroup first (so that `down` finds every process they fork), output
 * to a log file, and stopped by pid.
 */
import { spawn } from 'node:child_process';
import { openSync, closeSync, existsSync, readFileSync } from 'node:fs';
import { execa } from 'execa';

export interface DaemonSpec {
  name: string;
  cmd: string;
  args: string[];
  logFile: string;
  /** Network namespace (a path such as /run/netns/NAME); the current one when absent. */
  netns?: string;
  /** cgroup.procs file the process writes itself into before it starts. */
  cgroupProcs?: string;
  env?: Record<string, string>;
  /** Detach (new session, not our child): it outlives the command that started it. */
  detached?: boolean;
}

const sq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Start @spec; returns its pid (that of the program itself: sh and nsenter exec into it). */
export function startDaemon(spec: DaemonSpec): number {
  const inner = [...(spec.netns ? ['nsenter', `--net=${spec.netns}`, '--'] : []), spec.cmd, ...spec.args].map(sq).join(' ');
  const script = `${spec.cgroupProcs ? `echo $$ > ${sq(spec.cgroupProcs)} && ` : ''}exec ${inner}`;
  const fd = openSync(spec.logFile, 'a');
  try {
    const child = spawn('sh', ['-c', script], {
      stdio: ['ignore', fd, fd],
      detached: spec.detached ?? false,
      env: { ...process.env, ...spec.env },
    });
    if (!child.pid) throw new Error(`could not start ${spec.name} (${spec.cmd})`);
    if (spec.detached) child.unref();
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !isZombie(pid);
  } catch {
    return false;
  }
}

function isZombie(pid: number): boolean {
  try {
    return / Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\)/, ''));
  } catch {
    return false;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** SIGTERM, then SIGKILL after @graceMs; resolves when the process is gone. */
export async function stopPid(pid: number, graceMs = 10_000): Promise<void> {
  if (!alive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const until = Date.now() + graceMs;
  while (alive(pid) && Date.now() < until) await sleep(100);
  if (alive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    while (alive(pid)) await sleep(50);
  }
}

export function tail(file: string, lines = 25): string {
  if (!existsSync(file)) return `(no ${file})`;
  return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

/**
 * Poll @check until it returns a value other than undefined; on timeout throw
 * an error that names @what and quotes the end of @logFile.
 */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, opts: { timeoutMs: number; logFile?: string; pid?: number }): Promise<T> {
  const until = Date.now() + opts.timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (opts.pid !== undefined && !alive(opts.pid)) {
      throw new Error(`${what}: the process exited${opts.logFile ? `; the end of ${opts.logFile}:\n${tail(opts.logFile)}` : ''}`, { cause: last });
    }
    if (Date.now() > until) {
      throw new Error(`${what}: not after ${opts.timeoutMs / 1000} s${opts.logFile ? `; the end of ${opts.logFile}:\n${tail(opts.logFile)}` : ''}`, { cause: last });
    }
    await sleep(250);
  }
}

/** Run a command inside @netns (or here), returning stdout; throws with stderr. */
export async function inNetns(netns: string | undefined, cmd: string, args: string[], opts: { env?: Record<string, string>; input?: string; reject?: boolean } = {}) {
  const full = netns ? ['nsenter', [`--net=${netns}`, '--', cmd, ...args]] as const : [cmd, args] as const;
  return execa(full[0], [...full[1]], { reject: opts.reject ?? true, env: opts.env, input: opts.input, all: true });
}
