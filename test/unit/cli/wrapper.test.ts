// scripts/podtap (and its kubectl-podtap link): the CLI run with the
// repository's Node 24 from wherever it is linked, with only an older system
// node on PATH. (The kubectl plugin through the real kubectl is in
// test/unit/plugin/plugin.test.ts.)
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../../..');
let bin: string;
const PATH = String(process.env.PATH).split(':').filter((d) => !d.includes('node_modules')).join(':');

beforeAll(async () => {
  bin = await mkdtemp(join(tmpdir(), 'podtap-wrapper-'));
  await symlink(join(ROOT, 'scripts/podtap'), join(bin, 'podtap'));
  await symlink(join(ROOT, 'scripts/kubectl-podtap'), join(bin, 'kubectl-podtap'));
});
afterAll(() => rm(bin, { recursive: true, force: true }));

describe('scripts/podtap', () => {
  const version = async () => (JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  it.each([
    { description: 'podtap --version, linked elsewhere', input: ['podtap', '--version'], expected: async () => `podtap ${await version()}` },
    { description: 'kubectl-podtap --help, by its link name', input: ['kubectl-podtap', '--help'], expected: async () => 'kubectl podtap capture' },
    { description: "podtap demo --help: a clone's development commands", input: ['podtap', 'demo', '--help'], expected: async () => 'Usage: podtap demo' },
    { description: "podtap devcluster --help: a clone's development commands", input: ['podtap', 'devcluster', '--help'], expected: async () => 'Usage: podtap devcluster' },
  ])('$description', async ({ input, expected }) => {
    const [cmd, ...args] = input as [string, ...string[]];
    const r = await execa(join(bin, cmd), args, { env: { PATH }, extendEnv: false, reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(await expected());
  });

  it('podtap demo --real --api-port: refused, naming both (the real API server picks its own ports)', async () => {
    const r = await execa(join(bin, 'podtap'), ['demo', '--real', '--api-port', '8080'], { env: { PATH }, extendEnv: false, reject: false });
    expect(r.exitCode, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/--api-port .*--real/);
  });

  it('says what to run when there is no Node 24 at all', async () => {
    // a copy of the wrapper outside the repository (no node_modules/.bin/node
    // beside it), and on PATH only a node that says it is 20
    const dir = await mkdtemp(join(tmpdir(), 'podtap-wrapper-'));
    try {
      await mkdir(join(dir, 'scripts'));
      await mkdir(join(dir, 'bin'));
      await copyFile(join(ROOT, 'scripts/podtap'), join(dir, 'scripts/podtap'));
      await writeFile(join(dir, 'bin/node'), '#!/bin/sh\necho 20\n', { mode: 0o755 });
      const r = await execa(join(dir, 'scripts/podtap'), ['--version'], { env: { PATH: `${join(dir, 'bin')}:/usr/bin:/bin` }, extendEnv: false, reject: false });
      expect(r.exitCode, r.stdout).toBe(4);
      expect(r.stderr).toMatch(/needs Node\.js 24 or newer: run .*scripts\/setup\.sh/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
