/**
 * The host half of the guest's clang and tshark (guest-bin/host-tool): runs
 * what the guest asks for with this machine's binaries (the guest's root is
 * this machine's, so they are the same ones), natively. Under TCG clang needs
 * ~20 s per object that the host makes in 0.4 s, and tshark 5-10 s to start;
 * the kernel under test only ever sees the object clang makes, and tshark
 * only reads a capture the guest made. Requests arrive as directories in a
 * spool shared with the guest; only the arguments podtap's compiles and the
 * tests' verdicts use are accepted, clang only on sources inside the
 * repository, tshark only on the file that came with the request.
 */
import { existsSync, realpathSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { execa } from 'execa';

export interface ToolRequest {
  args: string[];
  cwd: string;
}

type Checked = { args: string[] } | { error: string };

/**
 * The argument list clang will run with, or why it is refused. @out: where
 * the object goes (the guest's own -o is removed by the guest side).
 */
export function checkClangArgs(req: ToolRequest, repo: string, out: string): Checked {
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

/**
 * The argument list tshark will run with, or why it is refused: reading one
 * file (@input, the copy that came with the request) and printing fields,
 * nothing that writes, loads scripts or plugins, or reads another file.
 */
export function checkTsharkArgs(req: ToolRequest, input: string): Checked {
  const args: string[] = [];
  let read = false;
  const a = req.args;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const v = a[i + 1];
    if ((x === '-v' || x === '--version') && a.length === 1) return { args: [x] };
    if (x === '-n') args.push(x);
    else if (v === undefined) return { error: `argument not allowed: ${x}` };
    else if (x === '-r' && !read) {
      read = true;
      args.push(x, input);
      i++;
    } else if (x === '-o' && /^[a-z0-9_]+\.[a-z0-9_.]+:(TRUE|FALSE|\d+)$/i.test(v)) args.push(x, a[++i]!);
    else if (x === '-Y' || (x === '-T' && v === 'fields') || (x === '-e' && /^[A-Za-z0-9_.]+$/.test(v)) || (x === '-E' && /^(separator|occurrence|header|quote|aggregator)=.{1,3}$/s.test(v))) {
      args.push(x, a[++i]!);
    } else return { error: `argument not allowed: ${x} ${v}` };
  }
  if (!read) return { error: 'no -r FILE' };
  return { args };
}

export class HostToolServer {
  private readonly spool: string;
  private readonly repo: string;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  /** Jobs served per tool, and their total host time (ms). */
  readonly served: Record<string, number> = {};
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
      // clang and tshark jobs of the guest's processes, side by side
      const ids = (await readdir(this.spool)).filter((n) => n.endsWith('.req')).map((n) => n.slice(0, -4));
      await Promise.all(ids.map((id) => this.serve(id)));
    } finally {
      this.busy = false;
    }
  }

  private async serve(id: string): Promise<void> {
    const req = join(this.spool, `${id}.req`);
    const done = join(this.spool, `${id}.done`);
    const tool = (await readFile(join(req, 'tool'), 'utf8').catch(() => '')).trim();
    const rawArgs = (await readFile(join(req, 'args'), 'utf8')).split('\0');
    if (rawArgs.at(-1) === '') rawArgs.pop();
    const cwd = (await readFile(join(req, 'cwd'), 'utf8')).trim();
    const request = { args: rawArgs, cwd };
    const checked: Checked = tool === 'clang' ? checkClangArgs(request, this.repo, join(req, 'out.o'))
      : tool === 'tshark' ? checkTsharkArgs(request, join(req, 'input'))
      : { error: `unknown tool ${JSON.stringify(tool)}` };
    let r: { exitCode: number; stdout: string; stderr: string };
    const t0 = performance.now();
    if ('error' in checked) r = { exitCode: 2, stdout: '', stderr: `guest ${tool} (kernel matrix): refused: ${checked.error}\n` };
    else {
      const x = await execa(tool, checked.args, { reject: false, cwd: existsSync(cwd) ? cwd : this.repo, maxBuffer: 1 << 30 });
      r = { exitCode: x.exitCode ?? 1, stdout: x.stdout, stderr: x.stderr };
      this.served[tool] = (this.served[tool] ?? 0) + 1;
      this.ms += performance.now() - t0;
    }
    await writeFile(join(req, 'stdout'), r.stdout ? `${r.stdout}\n` : '');
    await writeFile(join(req, 'stderr'), r.stderr ? `${r.stderr}\n` : '');
    await rm(join(req, 'input'), { force: true });
    await writeFile(join(req, 'exit'), `${r.exitCode}\n`);
    await rm(done, { recursive: true, force: true });
    await rename(req, done);
  }
}
