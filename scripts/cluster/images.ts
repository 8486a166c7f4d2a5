/**
 * The cluster's images, built without a Docker engine (buildah from Debian,
 * chroot isolation, the host's network for the steps that download from
 * Debian's archive and the npm registry) and saved as archives that
 * scripts/cluster.sh imports into containerd's k8s.io namespace. The kubelet
 * never pulls: no registry is reachable.
 *
 *  - base:    Debian 12 minbase made with debootstrap, Node.js 24 and npm: the
 *             stand-in for node:24-bookworm-slim that the packaging tests use
 *             too (test/unit/packaging/lib/image-rootfs.ts), imported into buildah;
 *  - podtap:  the project's Dockerfile, unchanged, FROM that base;
 *  - pause:   the pod sandbox, our own pause program (tools/pause) alone;
 *  - testpod: iperf3, ping, socat (UDP datagrams of any size) on the base.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { buildBase } from '../../test/unit/packaging/lib/image-rootfs.ts';

export const CACHE = process.env.PODTAP_CLUSTER_CACHE ?? '/var/cache/podtap-cluster';
const ROOT = new URL('../../', import.meta.url).pathname.replace(/\/$/, '');

/** Every image reference, declared once. */
export const IMAGES = {
  base: 'localhost/podtap/node:24-bookworm-slim',
  podtap: 'localhost/podtap/podtap:e2e',
  pause: 'localhost/podtap/pause:1.0',
  testpod: 'localhost/podtap/testpod:1.0',
} as const;
export type ImageName = keyof typeof IMAGES;

export const archive = (name: ImageName) => join(CACHE, 'images', `${name}.tar`);

const log = (msg: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} images: ${msg}\n`);

function buildah(args: string[], opts: { cwd?: string } = {}) {
  const storage = ['--root', join(CACHE, 'containers', 'storage'), '--runroot', join(CACHE, 'containers', 'run'), '--storage-driver', 'overlay'];
  const p = execa('buildah', [...storage, ...args], { cwd: opts.cwd, all: true, reject: false });
  p.all?.on('data', (d: Buffer) => {
    for (const line of d.toString().split('\n')) if (/STEP \d+\/\d+|^COMMIT|^Error/.test(line) && !args.includes('inspect')) log(`  ${line.slice(0, 160)}`);
  });
  return p.then((r) => {
    if (r.exitCode !== 0) throw new Error(`buildah ${args.slice(0, 2).join(' ')} failed (${r.exitCode}):\n${String(r.all).slice(-3000)}`);
    return r.stdout.trim();
  });
}

async function hasImage(ref: string): Promise<boolean> {
  return buildah(['inspect', '--type', 'image', ref]).then(
    () => true,
    () => false,
  );
}

/** The debootstrap root as a buildah image (reused while the root's cache key is unchanged). */
async function baseImage(): Promise<void> {
  const { dir, ran } = await buildBase();
  for (const r of ran) log(`base: ${r.step} (${r.seconds.toFixed(0)} s)`);
  const key = dir.split('/').pop()!;
  const ref = `${IMAGES.base}`;
  const keyedRef = `localhost/podtap/node-base:${key}`;
  if (await hasImage(keyedRef)) {
    await buildah(['tag', keyedRef, ref]);
    return;
  }
  log(`base: importing the debootstrap root ${dir}/diff`);
  const ctr = await buildah(['from', 'scratch']);
  try {
    const tar = join(await mkdtemp(join(tmpdir(), 'podtap-base-')), 'root.tar');
    await execa('tar', ['-C', join(dir, 'diff'), '--numeric-owner', '-cf', tar, '.']);
    await buildah(['add', ctr, tar, '/']);
    await rm(join(tar, '..'), { recursive: true, force: true });
    await buildah(['config', '--env', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', '--cmd', 'node', ctr]);
    await buildah(['commit', '--rm', ctr, keyedRef]);
  } catch (err) {
    await buildah(['rm', ctr]).catch(() => undefined);
    throw err;
  }
  await buildah(['tag', keyedRef, ref]);
}

/** An npmrc for the build's `npm ci`: the machine's registry, and its CA bundle (a TLS proxy's CA included). */
async function npmrc(dir: string): Promise<string[]> {
  const registry = (await execa('npm', ['config', 'get', 'registry'])).stdout.trim();
  const ca = process.env.NODE_EXTRA_CA_CERTS && existsSync(process.env.NODE_EXTRA_CA_CERTS) ? process.env.NODE_EXTRA_CA_CERTS : '/etc/ssl/certs/ca-certificates.crt';
  const lines = [`registry=${registry}`, 'fund=false', 'audit=false', 'update-notifier=false'];
  const vols: string[] = [];
  if (existsSync(ca)) {
    lines.push('cafile=/etc/podtap-build-ca.crt');
    vols.push('-v', `${ca}:/etc/podtap-build-ca.crt:ro`);
  }
  await writeFile(join(dir, 'npmrc'), `${lines.join('\n')}\n`);
  vols.push('-v', `${join(dir, 'npmrc')}:/root/.npmrc:ro`);
  return vols;
}

const BUD = ['bud', '--isolation', 'chroot', '--network', 'host', '--layers', '--pull=never', '--format', 'docker'];

async function save(name: ImageName): Promise<void> {
  await mkdir(join(CACHE, 'images'), { recursive: true });
  await rm(archive(name), { force: true });
  await buildah(['push', IMAGES[name], `docker-archive:${archive(name)}:${IMAGES[name]}`]);
}

export async function buildImages(pauseBin: string): Promise<Record<ImageName, string>> {
  const started = Date.now();
  await baseImage();
  const tmp = await mkdtemp(join(tmpdir(), 'podtap-images-'));
  try {
    log(`podtap: the Dockerfile, FROM ${IMAGES.base}`);
    const version = (await import('../../package.json', { with: { type: 'json' } })).default.version;
    const revision = (await execa('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, reject: false })).stdout.trim() || 'unknown';
    await buildah([...BUD, ...(await npmrc(tmp)), '--build-arg', `NODE_IMAGE=${IMAGES.base}`, '--build-arg', `VERSION=${version}`, '--build-arg', `REVISION=${revision}`, '-t', IMAGES.podtap, '-f', join(ROOT, 'Dockerfile'), ROOT]);
    log('pause');
    const ctx = join(tmp, 'pause');
    await mkdir(ctx);
    await copyFile(pauseBin, join(ctx, 'pause'));
    await buildah([...BUD, '-t', IMAGES.pause, '-f', join(ROOT, 'tools/pause/Containerfile'), ctx]);
    log('testpod');
    await buildah([...BUD, '--build-arg', `BASE=${IMAGES.base}`, '-t', IMAGES.testpod, '-f', join(ROOT, 'tools/testpod/Containerfile'), join(ROOT, 'tools/testpod')]);
    for (const n of ['podtap', 'pause', 'testpod'] as const) await save(n);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  log(`built in ${((Date.now() - started) / 1000).toFixed(0)} s: ${Object.values(IMAGES).join(', ')}`);
  return { base: '', podtap: archive('podtap'), pause: archive('pause'), testpod: archive('testpod') };
}
