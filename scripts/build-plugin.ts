/**
 * The kubectl plugin as one self-contained executable, for machines without
 * Node.js, and its krew plugin manifest:
 *
 *   npm exec -- node scripts/build-plugin.ts --uri-base URL [--out DIR]   (default dist/plugin)
 *
 * 1. esbuild bundles src/cli/kubectl-podtap.ts and every dependency it
 *    reaches into one CommonJS file (Node 24's single-executable applications
 *    run one CommonJS script), the version written in (src/util/version.ts);
 * 2. Node's own `--experimental-sea-config` turns it into a blob;
 * 3. postject injects the blob into a copy of the Node 24 binary running this
 *    script (debug symbols stripped), which then runs the plugin instead of
 *    a REPL: DIR/kubectl-podtap;
 * 4. DIR/kubectl-podtap_<os>_<arch>.tar.gz holds it with the README, and DIR/podtap.yaml is the krew manifest pointing at it (its
 *    sha256 filled in; the URI is the release's, from --uri-base).
 *
 * A Node binary runs on the platform it was built for, so this builds for the
 * machine it runs on (the npm `node` package brings the host's build); build
 * each other platform on its own kind of machine and merge the manifests'
 * `platforms`.
 */
import { createHash } from 'node:crypto';
import { chmod, copyFile, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { arch, platform } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import { execa } from 'execa';
import { stringify } from 'yaml';

const ROOT = join(import.meta.dirname, '..');
/** The fuse Node's single-executable support looks for (node/src/node_sea.cc): flipped when a blob is injected. */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
const KREW_ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64' };
const COMPLETION = 'kubectl_complete-podtap';

export interface PluginBuild {
  executable: string;
  archive: string;
  manifest: string;
  /** bytes */
  sizes: { bundle: number; executable: number; archive: number };
}

export async function buildPlugin(o: { out: string; uriBase: string }): Promise<PluginBuild> {
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string; description: string; homepage?: string };
  const os = platform();
  const cpu = KREW_ARCH[arch()];
  if (os !== 'linux' && os !== 'darwin') throw new Error(`build-plugin: ${os} is not a platform the plugin is built for here`);
  if (!cpu) throw new Error(`build-plugin: ${arch()} is not an architecture krew names`);
  await rm(o.out, { recursive: true, force: true });
  await mkdir(o.out, { recursive: true });
  const work = join(o.out, 'work');
  await mkdir(work);

  const bundle = join(work, 'kubectl-podtap.cjs');
  await build({
    entryPoints: [join(ROOT, 'src/cli/kubectl-podtap.ts')],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node24',
    minify: true,
    legalComments: 'eof',
    define: { PODTAP_VERSION: JSON.stringify(pkg.version) },
    // ws's optional native speed-ups: absent, ws uses its JavaScript paths
    external: ['bufferutil', 'utf-8-validate'],
    // the version fallback reads package.json through import.meta.url, never reached once PODTAP_VERSION is set
    logOverride: { 'empty-import-meta': 'silent' },
    logLevel: 'warning',
  });

  const blob = join(work, 'sea.blob');
  const seaConfig = join(work, 'sea-config.json');
  await writeFile(seaConfig, JSON.stringify({ main: bundle, output: blob, disableExperimentalSEAWarning: true, useCodeCache: false, useSnapshot: false }));
  await execa(process.execPath, ['--experimental-sea-config', seaConfig], { cwd: work });

  const executable = join(o.out, 'kubectl-podtap');
  await copyFile(process.execPath, executable);
  await chmod(executable, 0o755);
  // the npm build of Node carries its symbol table and debug information (≈ 18 MB): not needed to run (the dynamic symbols stay)
  if (os === 'linux') await execa('strip', ['--strip-all', executable]).catch((err: unknown) => {
    throw new Error('build-plugin: strip (binutils) failed on the Node binary', { cause: err });
  });
  const postject = join(ROOT, 'node_modules/postject/dist/cli.js');
  await execa(process.execPath, [postject, executable, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE, ...(os === 'darwin' ? ['--macho-segment-name', 'NODE_SEA'] : [])]);

  const platformName = `${os}_${cpu}`;
  const archiveName = `kubectl-podtap_${platformName}.tar.gz`;
  const archive = join(o.out, archiveName);
  const staged = join(work, 'archive');
  await mkdir(staged);
  await copyFile(executable, join(staged, 'kubectl-podtap'));
  await chmod(join(staged, 'kubectl-podtap'), 0o755);
  await copyFile(join(ROOT, 'README.md'), join(staged, 'README.md'));
  // kubectl (1.26+) completes `kubectl podtap …` by running this from the PATH
  await writeFile(join(staged, COMPLETION), '#!/bin/sh\n# kubectl runs this to complete `kubectl podtap …`: link it into your PATH beside kubectl-podtap.\nexec kubectl-podtap __complete "$@"\n', { mode: 0o755 });
  // reproducible: fixed owner, order and times
  await execa('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', staged, '-czf', archive, 'kubectl-podtap', COMPLETION, 'README.md']);
  const sha256 = createHash('sha256').update(await readFile(archive)).digest('hex');

  const manifest = join(o.out, 'podtap.yaml');
  await writeFile(manifest, stringify(krewManifest({ version: pkg.version, description: pkg.description, homepage: pkg.homepage, uri: `${o.uriBase.replace(/\/$/, '')}/v${pkg.version}/${archiveName}`, sha256, os, cpu })));
  const bundleSize = (await stat(bundle)).size;
  await rm(work, { recursive: true, force: true });
  return {
    executable, archive, manifest,
    sizes: { bundle: bundleSize, executable: (await stat(executable)).size, archive: (await stat(archive)).size },
  };
}

/** krew's Plugin manifest (krew.googlecontainertools.github.com/v1alpha2) for one platform. */
export function krewManifest(o: { version: string; description: string; homepage?: string | undefined; uri: string; sha256: string; os: string; cpu: string }): object {
  return {
    apiVersion: 'krew.googlecontainertools.github.com/v1alpha2',
    kind: 'Plugin',
    metadata: { name: 'podtap' },
    spec: {
      version: `v${o.version}`,
      ...(o.homepage ? { homepage: o.homepage } : {}),
      shortDescription: "Capture a pod's packets, whole, into Wireshark",
      description: `${o.description}.\nkubectl podtap capture streams a pod's traffic live from podtap's collector into a\npcapng file, standard output or Wireshark, without tcpdump in the pod.\nNeeds podtap installed in the cluster (its Helm chart).\n`,
      caveats: 'podtap itself must be installed in the cluster: see the README (helm install podtap ...).\nShell completion (kubectl 1.26+): ln -s "$HOME/.krew/store/podtap/v' + o.version + '/kubectl_complete-podtap" into your PATH.\n',
      platforms: [
        {
          selector: { matchLabels: { os: o.os, arch: o.cpu } },
          uri: o.uri,
          sha256: o.sha256,
          bin: 'kubectl-podtap',
          files: [
            { from: 'kubectl-podtap', to: '.' },
            { from: COMPLETION, to: '.' },
            { from: 'README.md', to: '.' },
          ],
        },
      ],
    },
  };
}

const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: join(ROOT, 'dist/plugin') },
      // where the release's archives are published: <uri-base>/v<version>/<archive>
      'uri-base': { type: 'string' },
    },
  });
  if (!values['uri-base']) {
    console.error('build-plugin: --uri-base URL: where the archives will be published (the manifest points at <URL>/v<version>/<archive>)');
    process.exit(2);
  }
  const r = await buildPlugin({ out: values.out, uriBase: values['uri-base'] });
  console.log(`bundle: ${mb(r.sizes.bundle)}`);
  console.log(`${relative(process.cwd(), r.executable)}: ${mb(r.sizes.executable)}\n${relative(process.cwd(), r.archive)}: ${mb(r.sizes.archive)}\n${relative(process.cwd(), r.manifest)}: krew manifest`);
}
