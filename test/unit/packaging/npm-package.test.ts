/**
 * The npm package as a user gets it: `npm pack` (which builds dist/ first),
 * the tarball installed into an empty directory with Node 24, and both
 * commands run from node_modules/.bin; the API's types and schema imported by
 * a consumer; the collector's worker threads found in the compiled tree.
 *
 * The install runs without network (the suite's private namespace) from
 * npm's cache, which scripts/setup.sh fills with what this install resolves.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, node24Path } from './lib/node24.ts';
import { ROOT } from './lib/render.ts';

interface PackResult {
  filename: string;
  size: number;
  unpackedSize: number;
  files: { path: string; size: number }[];
}

const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string; bin: Record<string, string> };
let dir: string;
let packed: PackResult;
let app: string;
let env: Record<string, string>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'podtap-npm-package-'));
  env = { PATH: await node24Path(), HOME: process.env.HOME ?? '/root', npm_config_update_notifier: 'false' };
  const r = await execa('npm', ['pack', '--json', '--pack-destination', dir], { cwd: ROOT, env, extendEnv: false, reject: false, all: true });
  if (r.exitCode !== 0) throw new Error(`npm pack failed:\n${r.all}`);
  packed = (JSON.parse(r.stdout) as PackResult[])[0]!;
  app = join(dir, 'app');
  await mkdir(app);
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'podtap-consumer', private: true, type: 'module' }));
  const i = await execa('npm', ['install', '--offline', '--no-audit', '--no-fund', join(dir, packed.filename)], { cwd: app, env, extendEnv: false, reject: false, all: true });
  if (i.exitCode !== 0) {
    throw new Error(`npm install of the tarball failed (offline: run scripts/setup.sh, which fills npm's cache for this install):\n${i.all}`);
  }
  expect(i.all, 'npm warns about an engine: the package must install cleanly with Node 24').not.toMatch(/EBADENGINE[\s\S]*podtap/);
}, 300_000);

afterAll(() => rm(dir, { recursive: true, force: true }));

describe('npm package', () => {
  it('holds the compiled commands, types and the BPF sources, and nothing of the repository besides', () => {
    const paths = packed.files.map((f) => f.path);
    for (const want of [...Object.values(pkg.bin), 'dist/api/index.d.ts', 'dist/api/index.js', 'bpf/podtap.bpf.c', 'package.json', 'README.md', 'CHANGELOG.md']) {
      expect(paths, want).toContain(want);
    }
    const stray = paths.filter((p) => (/\.ts$/.test(p) && !p.endsWith('.d.ts')) || p.endsWith('.map') || /^(test|bench|scripts|charts|deploy|src|docs)\//.test(p));
    expect(stray).toEqual([]);
    // a budget, so a stray directory shows: about 340 kB today
    expect(packed.size).toBeLessThan(1_000_000);
  });

  it.each([
    { description: 'podtap --version', input: ['podtap', '--version'], expected: `podtap ${pkg.version}` },
    { description: 'podtap --help lists the roles', input: ['podtap', '--help'], expected: 'collector' },
    { description: 'kubectl-podtap --help', input: ['kubectl-podtap', '--help'], expected: 'kubectl podtap capture' },
    { description: 'kubectl_complete-podtap (kubectl\'s completion protocol)', input: ['kubectl_complete-podtap', 'ca'], expected: 'capture\n:4' },
  ])('$description runs from node_modules/.bin', async ({ input, expected }) => {
    const [cmd, ...args] = input as [string, ...string[]];
    const r = await execa(join(app, 'node_modules/.bin', cmd), args, { cwd: app, env, extendEnv: false, reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(expected);
    expect(r.stderr).not.toMatch(/ExperimentalWarning|type stripping|ERR_/);
  });

  it('exports the API: its types check in a consumer and its schema validates', async () => {
    const consumer = `import { SniffPolicySchema, type SniffPolicy } from 'podtap';
const p: SniffPolicy = SniffPolicySchema.parse({
  apiVersion: 'podtap.io/v1alpha1', kind: 'SniffPolicy', metadata: { name: 'web', namespace: 'shop' },
  spec: { podSelector: { matchLabels: { app: 'web' } }, collector: { address: '198.18.0.1' } },
});
const bad = SniffPolicySchema.safeParse({ ...p, spec: { ...p.spec, snapLength: 70000 } });
console.log(p.metadata.name, bad.success);
`;
    await writeFile(join(app, 'consumer.ts'), consumer);
    const tsc = await execa(join(ROOT, 'node_modules/.bin/tsc'), ['--noEmit', '--strict', '--module', 'nodenext', '--target', 'es2024', '--skipLibCheck', 'consumer.ts'], { cwd: app, env, extendEnv: false, reject: false, all: true });
    expect(tsc.exitCode, tsc.all).toBe(0);
    const wrong = consumer.replace("name: 'web', namespace", 'name: 42, namespace').replace('SniffPolicySchema.parse(', '(');
    await writeFile(join(app, 'wrong.ts'), wrong);
    const tscWrong = await execa(join(ROOT, 'node_modules/.bin/tsc'), ['--noEmit', '--strict', '--module', 'nodenext', '--target', 'es2024', '--skipLibCheck', 'wrong.ts'], { cwd: app, env, extendEnv: false, reject: false, all: true });
    expect(tscWrong.exitCode, 'the declarations type the policy: a number as its name must not check').not.toBe(0);
    const run = await execa('node', ['consumer.ts'], { cwd: app, env, extendEnv: false, reject: false, all: true });
    expect(run.exitCode, run.all).toBe(0);
    expect(run.stdout).toBe('web false');
  });

  it('runs the collector with an ingest worker thread from the compiled tree', async () => {
    const out = join(dir, 'captures');
    await mkdir(out);
    const [udp, http] = [await freePort(), await freePort()];
    const child = execa(join(app, 'node_modules/.bin/podtap'), ['collector', `--listen=127.0.0.1:${udp}`, `--out=${out}`, '--workers=1', `--http=127.0.0.1:${http}`], {
      cwd: app, env, extendEnv: false, reject: false, all: true,
    });
    let exited = false;
    void child.then(() => (exited = true));
    let failed = true;
    try {
      const deadline = Date.now() + 20_000;
      let body = '';
      while (Date.now() < deadline && !/podtap_collector_workers 1\b/.test(body)) {
        body = await fetch(`http://127.0.0.1:${http}/metrics`).then((r) => r.text(), () => '');
        if (exited) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      failed = !/podtap_collector_workers 1\b/.test(body);
    } finally {
      child.kill('SIGTERM');
      const r = await child;
      expect(failed, `the collector with one worker thread never reported it:\n${r.all}`).toBe(false);
    }
  });

  it('finds the BPF sources the agent compiles', async () => {
    const r = await execa('node', ['--input-type=module', '-e', "const m = await import(process.argv[1]); const fs = await import('node:fs'); console.log(fs.existsSync(m.BPF_DIR + '/podtap.bpf.c'))", join(app, 'node_modules/podtap/dist/datapath/compile.js')], {
      cwd: app, env, extendEnv: false, reject: false, all: true, input: '',
    });
    expect(r.all).toBe('true');
  });
});
