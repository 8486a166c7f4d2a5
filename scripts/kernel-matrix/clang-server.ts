/**
 * The host half of the guest's clang (guest-bin/clang): compiles what the
 * guest asks for with this machine's clang, natively. Under TCG clang needs
 * ~20 s per object, the same object the host makes in 0.4 s; the kernel under
 * test only ever sees the object. Requests arrive as directories in a spool
 * shared with the guest; only the flags podtap's compiles use are accepted,
 * and only sources inside the repository.
 */
import { existsSync, realpathSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { execa } from 'execa';

export interface ClangRequest {
  args: string[];
  cwd: string;
}

/**
 * The argument list clang will run with, or why it is refused. @out: where
 * the object goes (the guest's own -o is removed by the guest side).
 */
export function checkClangArgs(req: ClangRequest, repo: string, out: string): { args: string[] } | { error: string } {
  const args: string[] = [];
  let source: string | undefined;
  const a = req.args;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    if (x === '--version' && a.length === 1) return { args: ['--version'] };
    if (/^-O[0-3s]$|^-g$|^-W[a-z-]+$|^-Wno-[a-z-]+$|^-Werror$/.test(x)) args.push(x);
    else if (x === '-target' && a[i + 1] === 'bpf') args.push(x, a[++i]!);
    else if (/^-I\/usr\/include(\/[\w.-]+)*$/.test(x)) args.push(x);
    else if (/^-D[A-Za-z_][A-Za-z0-9_]*(=.*)?$/s.test(x)) args.push(x);
    else if (x === '-c' && i + 1 < a.length) {
      const file = resolve(req.cwd, a[++i]!);
      const real = existsSync(file) ? realpathSync(file) : file;
      if (!real.startsWith(`${repo}/`) || !/\.c$/.test(real)) return { error: `source outside the repository: ${a[i]}` };
      source = real;
      args.push('-c', real);
    } else return { error: `argument not allowed: ${x}` };
  }
  if (!source) return { error: 'no -c SOURCE' };
  if (!isAbsolute(out)) return { error: 'output path must be absolute' };
  return { args: [...args, '-o', out] };
}

export class ClangServer {
  private readonly spool: string;
  private readonly repo: string;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  /** Compiles served, and their total host time (ms). */
  served = 0;
  ms = 0;

  constructor(spool: string, repo: string) {
    this.spool = spool;
    this.repo = realpathSync(repo);
  }

  async start(): Promise<void> {
    await mkdir(this.spool, { recursive: true });
    this.timer = setInterval(() => void this.poll(), 50);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private async poll(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      for (const name of await readdir(this.spool)) {
        if (name.endsWith('.req')) await this.serve(name.slice(0, -4));
      }
    } finally {
      this.busy = false;
    }
  }

  private async serve(id: string): Promise<void> {
    const req = join(this.spool, `${id}.req`);
    const done = join(this.spool, `${id}.done`);
    const rawArgs = (await readFile(join(req, 'args'), 'utf8')).split('\0');
    if (rawArgs.at(-1) === '') rawArgs.pop();
    const cwd = (await readFile(join(req, 'cwd'), 'utf8')).trim();
    const out = join(req, 'out.o');
    const checked = checkClangArgs({ args: rawArgs, cwd }, this.repo, out);
    let r: { exitCode: number; stdout: string; stderr: string };
    const t0 = performance.now();
    if ('error' in checked) r = { exitCode: 2, stdout: '', stderr: `guest clang (kernel matrix): refused: ${checked.error}\n` };
    else {
      const x = await execa('clang', checked.args, { reject: false, cwd: existsSync(cwd) ? cwd : this.repo });
      r = { exitCode: x.exitCode ?? 1, stdout: x.stdout, stderr: x.stderr };
      this.served++;
      this.ms += performance.now() - t0;
    }
    await writeFile(join(req, 'stdout'), r.stdout ? `${r.stdout}\n` : '');
    await writeFile(join(req, 'stderr'), r.stderr ? `${r.stderr}\n` : '');
    await writeFile(join(req, 'exit'), `${r.exitCode}\n`);
    await rm(done, { recursive: true, force: true });
    await rename(req, done);
  }
}
