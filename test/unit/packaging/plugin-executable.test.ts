/**
 * The kubectl plugin as one self-contained executable (scripts/build-plugin.ts:
 * a Node single-executable application) run where no `node` is on PATH, against
 * a Kubernetes API (the embedded one: real REST, the chart's CRDs), and
 * installed by krew itself from the manifest and archive the build makes.
 */
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildPlugin, type PluginBuild } from '../../../scripts/build-plugin.ts';
import { startApiServer, writeKubeconfig, type ApiServer } from '@podtap/devcluster';
import { KubeClient, Resources, loadKubeConfig, type KubeObject, type ResourceRef } from '../../../src/k8s/index.ts';
import { PodtapResources } from '../../../src/api/index.ts';
import { goTool } from './lib/go-tools.ts';
import { CHART, ROOT } from './lib/render.ts';

const CRD_REF: ResourceRef = { group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions', kind: 'CustomResourceDefinition', namespaced: false };
const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };

let dir: string;
let built: PluginBuild;
/** a PATH holding the plugin and nothing else: no node, no kubectl */
let bin: string;
let api: ApiServer;
let kubeconfig: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'podtap-plugin-exe-'));
  built = await buildPlugin({ out: join(dir, 'build'), uriBase: 'https://releases.example/podtap' });
  bin = join(dir, 'bin');
  await mkdir(bin);
  await copyFile(built.executable, join(bin, 'kubectl-podtap'));

  api = await startApiServer({ port: 0 });
  kubeconfig = join(dir, 'kubeconfig');
  await writeKubeconfig(kubeconfig, api.url);
  const client = new KubeClient(loadKubeConfig(kubeconfig));
  const crds = join(CHART, 'crds');
  for (const f of (await readdir(crds)).filter((n) => n.endsWith('.yaml'))) await client.create(CRD_REF, parse(await readFile(join(crds, f), 'utf8')) as KubeObject);
  await client.create(Resources.namespaces, { metadata: { name: 'shop' } });
  for (let i = 0; ; i++) {
    try {
      await client.create(PodtapResources.sniffPolicies, {
        apiVersion: 'podtap.io/v1alpha1', kind: 'SniffPolicy', metadata: { name: 'web-debug', namespace: 'shop' },
        spec: { podSelector: { matchLabels: { app: 'web' } }, collector: { address: '198.18.0.1' } },
      } as KubeObject);
      break;
    } catch (err) {
      if (i > 50) throw err; // the CRD is not served yet
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}, 300_000);

afterAll(async () => {
  await api?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Runs the plugin with an environment holding nothing but PATH=bin (and HOME for krew). */
function run(file: string, args: string[], extra: Record<string, string> = {}) {
  return execa(file, args, { env: { PATH: bin, ...extra }, extendEnv: false, reject: false, cwd: dir });
}

describe('the self-contained kubectl plugin', () => {
  it('finds no node on the PATH it runs with', async () => {
    expect(await readdir(bin)).toEqual(['kubectl-podtap']);
    expect((await run('/bin/sh', ['-c', 'command -v node'])).exitCode).not.toBe(0);
  });

  it.each([
    { description: '--version', input: ['--version'], expected: `kubectl-podtap ${pkg.version}` },
    { description: 'version', input: ['version'], expected: `kubectl-podtap ${pkg.version}` },
    { description: '--help', input: ['--help'], expected: 'kubectl podtap capture' },
  ])('runs $description', async ({ input, expected }) => {
    const r = await run(join(bin, 'kubectl-podtap'), input);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(expected);
    expect(r.stderr).toBe('');
  });

  it('talks to the Kubernetes API: status lists the policy', async () => {
    const r = await run(join(bin, 'kubectl-podtap'), ['status', '-A', '--kubeconfig', kubeconfig]);
    expect(r.stdout, r.stderr).toMatch(/^shop\s+web-debug\s/m);
  });

  it('is small enough to download: the archive', () => {
    // Node itself is most of it (≈ 108 MB stripped, ≈ 40 MB compressed): a
    // budget so a bundling mistake (a second Node, debug symbols) shows
    expect(built.sizes.archive).toBeLessThan(60e6);
    expect(built.sizes.bundle).toBeLessThan(8e6);
  });

  it('installs with krew from its manifest and archive, and runs as krew links it', async () => {
    const krew = await goTool('krew');
    const krewRoot = join(dir, 'krew');
    const env = { HOME: dir, KREW_ROOT: krewRoot };
    const r = await execa(krew, ['install', `--manifest=${built.manifest}`, `--archive=${built.archive}`], { env: { PATH: bin, ...env }, extendEnv: false, reject: false, all: true });
    expect(r.exitCode, r.all).toBe(0);
    const installed = await run(join(krewRoot, 'bin/kubectl-podtap'), ['--version']);
    expect(installed.stdout, installed.stderr).toBe(`kubectl-podtap ${pkg.version}`);
    // the completion script krew unpacked beside it answers kubectl's protocol
    const completion = join(krewRoot, `store/podtap/v${pkg.version}/kubectl_complete-podtap`);
    const completed = await execa(completion, ['ca'], { env: { PATH: `${bin}:/usr/bin:/bin` }, extendEnv: false, reject: false, all: true });
    expect(completed.stdout, completed.all).toBe('capture\n:4');
    // a manifest whose checksum does not match the archive is refused
    const manifest = parse(await readFile(built.manifest, 'utf8')) as { spec: { platforms: { sha256: string }[] } };
    manifest.spec.platforms[0]!.sha256 = '0'.repeat(64);
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, JSON.stringify(manifest));
    const refused = await execa(krew, ['install', `--manifest=${bad}`, `--archive=${built.archive}`], { env: { PATH: bin, HOME: dir, KREW_ROOT: join(dir, 'krew2') }, extendEnv: false, reject: false, all: true });
    expect(refused.exitCode).not.toBe(0);
    expect(refused.all).toMatch(/checksum|sha256/i);
  });
});
