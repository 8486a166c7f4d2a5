/**
 * clang -> BPF object, cached by a hash of the sources, the -D flags and the
 * clang version, so a node compiles each distinct configuration once.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRunner, type Runner } from './exec.ts';

export const BPF_DIR = process.env.PODTAP_BPF_DIR ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bpf');
export const DEFAULT_CACHE_DIR = process.env.PODTAP_CACHE_DIR ?? '/var/cache/podtap/objects';

export interface CompiledObject {
  /** Path of the .o file in the cache. */
  path: string;
  /** Cache key (hex); also names the pinned object. */
  key: string;
  /** true when the object came from the cache. */
  cached: boolean;
  /** Compile time in ms (0 when cached). */
  ms: number;
}

export class CompileError extends Error {
  readonly stderr: string;
  constructor(message: string, stderr: string) {
    super(message);
    this.name = 'CompileError';
    this.stderr = stderr;
  }
}

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await sourceFiles(p)));
    else if (/\.(c|h)$/.test(e.name)) out.push(p);
  }
  return out.sort();
}

let clangVersion: Promise<string> | undefined;

export function multiarchInclude(): string[] {
  const triple = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' }[process.arch as 'x64' | 'arm64'];
  const dir = triple ? `/usr/include/${triple}` : undefined;
  return dir && existsSync(dir) ? [`-I${dir}`] : [];
}

/** The data plane's program; bpf/probes/ holds the feature probes (features.ts). */
export const MAIN_SOURCE = 'podtap.bpf.c';

/** The cache key of a configuration: sources + flags + compiler. */
export async function objectKey(defines: string[], runner: Runner = createRunner(), source = MAIN_SOURCE): Promise<string> {
  clangVersion ??= runner.check('clang', ['--version'], { netnsScoped: false }).then((v) => v.split('\n')[0] ?? v);
  const h = createHash('sha256');
  h.update(`clang:${await clangVersion}\n`);
  h.update(`source:${source}\n`);
  for (const f of await sourceFiles(BPF_DIR)) {
    h.update(`file:${relative(BPF_DIR, f)}\n`);
    h.update(await readFile(f));
  }
  h.update(`defines:${defines.join(' ')}\n`);
  return h.digest('hex').slice(0, 16);
}

export async function compileObject(
  defines: string[],
  opts: { cacheDir?: string; runner?: Runner; source?: string } = {},
): Promise<CompiledObject> {
  const runner = opts.runner ?? createRunner();
  const cacheDir = opts.cacheDir ?? DEFAULT_CACHE_DIR;
  const source = opts.source ?? MAIN_SOURCE;
  const key = await objectKey(defines, runner, source);
  const path = join(cacheDir, `podtap-${key}.o`);
  if (existsSync(path) && (await stat(path)).size > 0) return { path, key, cached: true, ms: 0 };

  await mkdir(cacheDir, { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  const started = performance.now();
  const args = [
    '-O2', '-g', '-target', 'bpf', '-Wall', '-Werror', '-Wno-unused-function', '-Wno-pass-failed',
    ...multiarchInclude(), ...defines, '-c', join(BPF_DIR, source), '-o', tmp,
  ];
  const r = await runner.run('clang', args, { netnsScoped: false });
  if (r.exitCode !== 0) {
    throw new CompileError(`clang failed to compile the BPF program: ${r.stderr.split('\n').find((l) => l.includes('error')) ?? r.stderr.slice(0, 500)}`, r.stderr);
  }
  await rename(tmp, path);
  return { path, key, cached: false, ms: Math.round(performance.now() - started) };
}

/** Write a compile cache entry atomically (used by tests to corrupt/replace). */
export async function writeCached(path: string, data: Buffer): Promise<void> {
  await writeFile(`${path}.tmp`, data);
  await rename(`${path}.tmp`, path);
}
