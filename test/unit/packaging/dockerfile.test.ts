/**
 * The Dockerfile as text: the rules it keeps (the kernel test
 * test/kernel/image.test.ts builds and runs it).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dockerignore, imageConfig, parseDockerfile, type Instruction } from './lib/dockerfile.ts';
import { ROOT } from './lib/render.ts';

const df = parseDockerfile(await readFile(join(ROOT, 'Dockerfile'), 'utf8'));
const runtime = df.stages[df.stages.length - 1]!;
const config = imageConfig(runtime);
const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
const runs = (i: Instruction[]) => i.filter((x): x is Extract<Instruction, { op: 'RUN' }> => x.op === 'RUN').map((x) => x.command);

describe('Dockerfile', () => {
  it('builds in one stage and runs on Node.js 24 / Debian 12 slim in another', () => {
    expect(df.stages.map((s) => s.from)).toEqual(['node:24-bookworm-slim', 'node:24-bookworm-slim']);
    expect(df.stages[0]!.name).toBe('build');
    expect(runs(df.stages[0]!.instructions).join('\n')).toContain('tsc -p tsconfig.build.json');
    // the runtime stage copies build output, never the sources or dev dependencies
    const copies = runtime.instructions.filter((i) => i.op === 'COPY');
    expect(copies.map((c) => (c.op === 'COPY' ? `${c.from ?? 'context'}:${c.sources.join(',')}` : ''))).toEqual([
      'build:/src/package.json',
      'build:/src/node_modules/',
      'build:/src/dist/',
      'context:bpf/',
    ]);
    expect(runs(df.stages[0]!.instructions).join('\n')).toContain('npm prune --omit=dev');
  });

  it('installs the product package only: no workspace package (the development harness) and none of its dependencies', () => {
    const npm = runs(df.stages[0]!.instructions).flatMap((r) => r.split('&&').map((c) => c.trim())).filter((c) => /^npm (ci|prune)\b/.test(c));
    expect(npm.map((c) => c.split(' ')[1])).toEqual(['ci', 'prune']);
    for (const c of npm) expect(c).toContain('--workspaces=false');
    // and the build context has no harness to build
    const copied = df.stages[0]!.instructions.flatMap((i) => (i.op === 'COPY' && !i.from ? i.sources : []));
    expect(copied.filter((s) => /^(packages|tools|test)\b/.test(s))).toEqual([]);
  });

  it('installs exactly the tools the agent runs, without recommends, and leaves no apt lists', () => {
    const apt = runs(runtime.instructions).find((r) => r.includes('apt-get install'))!;
    const args = apt.split('apt-get install')[1]!.split('&&')[0]!.trim().split(/\s+/);
    expect(args.filter((a) => a.startsWith('-')).sort()).toEqual(['--no-install-recommends', '-y']);
    expect(args.filter((a) => !a.startsWith('-')).sort()).toEqual(['bpftool', 'clang', 'iproute2', 'libbpf-dev', 'linux-libc-dev', 'util-linux']);
    expect(apt).toContain('rm -rf /var/lib/apt/lists/*');
  });

  it('runs podtap as a numeric non-root user by default, with the BPF sources and a compile cache', () => {
    expect(config.user).toBe('65532:65532');
    expect(config.entrypoint).toEqual(['podtap']);
    expect(config.cmd).toEqual(['--help']);
    expect(config.env.PODTAP_BPF_DIR).toBe('/opt/podtap/bpf');
    expect(config.env.PODTAP_CACHE_DIR).toBe('/var/cache/podtap/objects');
    expect(config.env.NODE_ENV).toBe('production');
  });

  it('carries the OCI labels, its version the package version', () => {
    for (const l of ['title', 'description', 'licenses', 'version', 'revision']) expect(config.labels[`org.opencontainers.image.${l}`], l).toBeTruthy();
    expect(config.labels['org.opencontainers.image.version']).toBe(pkg.version);
    expect(config.labels['org.opencontainers.image.licenses']).toBe('Apache-2.0');
  });
});

describe('.dockerignore', () => {
  const cases: { description: string; input: string; expected: boolean }[] = [
    { description: 'the sources', input: 'src/cli/main.ts', expected: false },
    { description: 'the BPF sources', input: 'bpf/podtap.bpf.c', expected: false },
    { description: 'the lock file', input: 'package-lock.json', expected: false },
    { description: 'installed modules', input: 'node_modules/yaml/package.json', expected: true },
    { description: 'the tests', input: 'test/unit/packaging/chart.test.ts', expected: true },
    { description: 'git', input: '.git/config', expected: true },
    { description: 'captures', input: 'src/x.pcapng', expected: true },
    { description: 'compiled BPF objects', input: 'bpf/podtap.o', expected: true },
    { description: 'scratch files', input: 'src/rss.tmp.ts', expected: true },
  ];
  it.each(cases)('keeps out $description: $expected', async ({ input, expected }) => {
    const ignored = dockerignore(await readFile(join(ROOT, '.dockerignore'), 'utf8'));
    expect(ignored(input)).toBe(expected);
  });
});
