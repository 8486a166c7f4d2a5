/**
 * Builds the Dockerfile's image without Docker: a Debian 12 root made with
 * debootstrap stands in for node:24-bookworm-slim (Debian 12 slim + Node.js 24
 * + npm), and each Dockerfile instruction runs in it as Docker would run it —
 * RUN in a chroot over overlayfs layers, COPY from the build context filtered
 * by .dockerignore or from another stage. Layers are cached by the hash of
 * everything that went into them (like Docker's build cache), under
 * /var/tmp/podtap-image (PODTAP_IMAGE_CACHE), so a rebuild redoes only what
 * changed. Needs root (chroot, mounts) and, for the steps that download
 * (debootstrap, apt-get, npm ci), the network: scripts/setup.sh builds it
 * before the test suite enters its private network namespace.
 *
 *   node test/unit/packaging/lib/image-rootfs.ts     # build (or bring up to date), print the layers
 */
import { createHash } from 'node:crypto';
import { existsSync, realpathSync } from 'node:fs';
import { cp, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, posix, relative } from 'node:path';
import { execa } from 'execa';
import { dockerignore, imageConfig, parseDockerfile, type ImageConfig, type Instruction, type Stage } from './dockerfile.ts';

export const ROOT = new URL('../../../../', import.meta.url).pathname.replace(/\/$/, '');
export const CACHE = process.env.PODTAP_IMAGE_CACHE ?? '/var/tmp/podtap-image';
/** The machine's own Debian archive, read from its apt sources (scripts/lib/debian-mirror.sh). */
const MIRROR = (await execa(join(ROOT, 'scripts/lib/debian-mirror.sh'))).stdout.trim();
const SECURITY_MIRROR = (await execa(join(ROOT, 'scripts/lib/debian-mirror.sh'), ['security'])).stdout.trim();
const NODE_BIN = join(ROOT, 'node_modules/node/bin/node');

/** The base image this builder can stand in for, and how. */
export const BASE_IMAGE = 'node:24-bookworm-slim';
const BASE_RECIPE_VERSION = 'debootstrap-minbase-bookworm-v1';

/** Apt sources of the debian:bookworm-slim image (deb822). */
const SLIM_SOURCES = `Types: deb
URIs: ${MIRROR}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${SECURITY_MIRROR}
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`;

/** PATH of the node images. */
const BASE_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' };

export interface BuiltStage {
  name?: string;
  /** Layer directories, bottom first (the base's first). */
  layers: string[];
  config: ImageConfig;
}

export interface BuildResult {
  stages: BuiltStage[];
  /** The final stage: the image. */
  image: BuiltStage;
  /** Instructions that ran (not taken from the cache), with seconds. */
  ran: { step: string; seconds: number }[];
  baseLayer: string;
}

export class ImageBuildError extends Error {}

function sha(...parts: (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex').slice(0, 20);
}

async function run(cmd: string, args: string[], opts: { input?: string; env?: Record<string, string> } = {}): Promise<string> {
  const r = await execa(cmd, args, { reject: false, all: true, ...opts, ...(opts.env ? { env: opts.env, extendEnv: false } : {}) });
  if (r.exitCode !== 0) throw new ImageBuildError(`${cmd} ${args.join(' ').slice(0, 300)} failed (${r.exitCode}):\n${String(r.all).slice(-3000)}`);
  return String(r.all);
}

const sq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The shell lines that mount the layers (read-write upper when given) at `merged`. */
function overlayMount(lowers: string[], merged: string, upper?: { diff: string; work: string }): string {
  const lower = [...lowers].reverse().map((l) => join(l, 'diff')).join(':');
  const opts = upper ? `lowerdir=${lower},upperdir=${upper.diff},workdir=${upper.work}` : `lowerdir=${lower}`;
  return `mount -t overlay overlay -o ${sq(opts)} ${sq(merged)}`;
}

/** Run a shell script in a private mount namespace: its mounts vanish with it. */
export function privateMounts(script: string): Promise<string> {
  return run('unshare', ['--mount', '--propagation', 'private', 'sh', '-euc', script]);
}

function layerDir(key: string): string {
  return join(CACHE, 'layers', key);
}

function done(key: string): boolean {
  return existsSync(join(layerDir(key), 'complete'));
}

async function freshLayer(key: string): Promise<{ dir: string; diff: string; work: string; merged: string }> {
  const dir = layerDir(key);
  await rm(dir, { recursive: true, force: true });
  const l = { dir, diff: join(dir, 'diff'), work: join(dir, 'work'), merged: join(dir, 'merged') };
  for (const d of [l.diff, l.work, l.merged]) await mkdir(d, { recursive: true });
  return l;
}

async function finishLayer(l: { dir: string; work: string; merged: string }): Promise<void> {
  await rm(l.work, { recursive: true, force: true });
  await rm(l.merged, { recursive: true, force: true });
  await writeFile(join(l.dir, 'complete'), new Date().toISOString());
}

/** node:24-bookworm-slim, emulated: Debian 12 minbase, the slim image's apt sources, Node.js 24 and npm, user node. */
async function baseLayer(ran: BuildResult['ran']): Promise<string> {
  if (!existsSync(NODE_BIN)) throw new ImageBuildError(`no Node.js 24 binary at ${NODE_BIN}: run npm ci (scripts/setup.sh)`);
  const npmDir = dirname(dirname(realpathSync((await run('sh', ['-c', 'command -v npm'])).trim())));
  const nodeVersion = (await run(NODE_BIN, ['--version'])).trim();
  const npmVersion = JSON.parse(await readFile(join(npmDir, 'package.json'), 'utf8')).version as string;
  const key = sha(BASE_RECIPE_VERSION, MIRROR, nodeVersion, npmVersion);
  if (done(key)) return layerDir(key);
  const started = Date.now();
  if ((await execa('sh', ['-c', 'command -v debootstrap'], { reject: false })).exitCode !== 0) {
    throw new ImageBuildError('debootstrap is not installed: apt-get install debootstrap (scripts/setup.sh)');
  }
  const l = await freshLayer(key);
  // The base layer is a plain directory (the lowest layer needs no overlay).
  await run('debootstrap', ['--variant=minbase', 'bookworm', l.diff, MIRROR]);
  await rm(join(l.diff, 'etc/apt/sources.list'), { force: true });
  await writeFile(join(l.diff, 'etc/apt/sources.list.d/debian.sources'), SLIM_SOURCES);
  await cp(NODE_BIN, join(l.diff, 'usr/local/bin/node'));
  await cp(npmDir, join(l.diff, 'usr/local/lib/node_modules/npm'), { recursive: true });
  await run('ln', ['-sf', '../lib/node_modules/npm/bin/npm-cli.js', join(l.diff, 'usr/local/bin/npm')]);
  await run('ln', ['-sf', '../lib/node_modules/npm/bin/npx-cli.js', join(l.diff, 'usr/local/bin/npx')]);
  await run('chroot', [l.diff, '/bin/sh', '-c', 'groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node && apt-get clean && rm -rf /var/lib/apt/lists/*']);
  await finishLayer(l);
  ran.push({ step: `FROM ${BASE_IMAGE} (debootstrap + Node.js ${nodeVersion} + npm ${npmVersion})`, seconds: (Date.now() - started) / 1000 });
  return l.dir;
}

/** Files of the build context a COPY source names, after .dockerignore. */
async function contextFiles(src: string, ignored: (p: string) => boolean): Promise<{ rel: string; abs: string }[]> {
  const abs = join(ROOT, src);
  const s = await stat(abs).catch(() => undefined);
  if (!s) throw new ImageBuildError(`COPY ${src}: not in the build context`);
  if (!s.isDirectory()) return ignored(posix.normalize(src)) ? [] : [{ rel: posix.basename(src), abs }];
  const out: { rel: string; abs: string }[] = [];
  for (const e of await readdir(abs, { withFileTypes: true, recursive: true })) {
    if (!e.isFile() && !e.isSymbolicLink()) continue;
    const file = join(e.parentPath, e.name);
    if (ignored(relative(ROOT, file))) continue;
    out.push({ rel: relative(abs, file), abs: file });
  }
  return out.sort((a, b) => a.rel.localeCompare(b.rel));
}

function resolveDest(workdir: string, dest: string): string {
  return posix.resolve(workdir, dest);
}

interface StageState {
  layers: string[];
  key: string;
  env: Record<string, string>;
  workdir: string;
  user: string;
}

async function runStep(st: StageState, i: Instruction, stagesByName: Map<string, BuiltStage>, ignored: (p: string) => boolean, ran: BuildResult['ran']): Promise<void> {
  if (i.op === 'ENV') Object.assign(st.env, i.vars);
  if (i.op === 'USER') st.user = i.user;
  if (i.op !== 'RUN' && i.op !== 'COPY' && i.op !== 'WORKDIR') {
    st.key = sha(st.key, i.raw);
    return;
  }
  let content = '';
  let files: { rel: string; abs: string; dest: string }[] = [];
  if (i.op === 'COPY' && !i.from) {
    for (const src of i.sources) {
      const list = await contextFiles(src, ignored);
      const dest = resolveDest(st.workdir, i.dest);
      const intoDir = i.dest.endsWith('/') || i.sources.length > 1 || (await stat(join(ROOT, src))).isDirectory();
      for (const f of list) files.push({ ...f, dest: intoDir ? posix.join(dest, f.rel) : dest });
    }
    const h = createHash('sha256');
    for (const f of files) h.update(`${f.dest}\0${(await stat(f.abs)).mode}\0`).update(await readFile(f.abs));
    content = h.digest('hex');
  }
  if (i.op === 'COPY' && i.from) {
    const from = stagesByName.get(i.from);
    if (!from) throw new ImageBuildError(`COPY --from=${i.from}: no such stage before this one`);
    content = from.layers.map((l) => posix.basename(l)).join(',');
  }
  const key = sha(st.key, i.raw, st.workdir, JSON.stringify(st.env), st.user, content);
  const label = `${i.raw.slice(0, 120)}`;
  if (i.op === 'WORKDIR') st.workdir = posix.resolve(st.workdir, i.dir);
  if (done(key)) {
    st.layers.push(layerDir(key));
    st.key = key;
    return;
  }
  const started = Date.now();
  const l = await freshLayer(key);
  if (i.op === 'WORKDIR') {
    await mkdir(join(l.diff, st.workdir), { recursive: true });
  } else if (i.op === 'COPY' && !i.from) {
    for (const f of files) {
      await mkdir(dirname(join(l.diff, f.dest)), { recursive: true });
      await cp(f.abs, join(l.diff, f.dest), { preserveTimestamps: true, verbatimSymlinks: true });
    }
  } else if (i.op === 'COPY' && i.from) {
    const from = stagesByName.get(i.from)!;
    const src = join(l.dir, 'from');
    await mkdir(src);
    const dest = join(l.diff, resolveDest(st.workdir, i.dest));
    const script = [overlayMount(from.layers, src), ...i.sources.map((s) => `mkdir -p ${sq(dest)} && cp -a ${sq(join(src, s))}${s.endsWith('/') ? '/.' : ''} ${sq(i.dest.endsWith('/') || s.endsWith('/') ? `${dest}/` : dest)}`)].join('\n');
    await privateMounts(script);
    await rm(src, { recursive: true, force: true });
  } else if (i.op === 'RUN') {
    const m = l.merged;
    const mounts = [
      overlayMount(st.layers, m, { diff: l.diff, work: l.work }),
      `mount -t proc proc ${sq(`${m}/proc`)}`,
      `mount --rbind /dev ${sq(`${m}/dev`)}`,
      `mount -t tmpfs tmpfs ${sq(`${m}/tmp`)}`,
      `touch ${sq(`${m}/etc/resolv.conf`)} 2>/dev/null || true`,
      `mount --bind /etc/resolv.conf ${sq(`${m}/etc/resolv.conf`)}`,
    ];
    for (const target of i.cacheMounts) {
      // BuildKit's cache mount; for npm, the host's own npm cache, so that an
      // unchanged lock file installs without the network.
      const host = target === '/root/.npm' ? (await run('npm', ['config', 'get', 'cache'])).trim() : join(CACHE, 'cache-mounts', sha(target));
      await mkdir(host, { recursive: true });
      mounts.push(`mkdir -p ${sq(m + target)}`, `mount --bind ${sq(host)} ${sq(m + target)}`);
    }
    const env: Record<string, string> = { ...BASE_ENV, HOME: '/root', ...st.env, DEBIAN_FRONTEND: 'noninteractive', npm_config_prefer_offline: 'true', npm_config_update_notifier: 'false' };
    // A machine whose registry traffic passes a TLS proxy trusts its CA
    // through NODE_EXTRA_CA_CERTS; a docker build there would need it too.
    const extraCa = process.env.NODE_EXTRA_CA_CERTS;
    if (extraCa && existsSync(extraCa)) {
      mounts.push(`touch ${sq(`${m}/tmp/extra-ca.crt`)}`, `mount --bind ${sq(extraCa)} ${sq(`${m}/tmp/extra-ca.crt`)}`);
      env.NODE_EXTRA_CA_CERTS = '/tmp/extra-ca.crt';
    }
    const envArgs = Object.entries(env).map(([k, v]) => sq(`${k}=${v}`)).join(' ');
    const userspec = st.user === 'root' ? '' : `--userspec=${sq(st.user)} `;
    mounts.push(`chroot ${userspec}${sq(m)} /usr/bin/env -i ${envArgs} /bin/sh -ec ${sq(`cd ${st.workdir}\n${i.command}`)}`);
    try {
      await privateMounts(mounts.join('\n'));
    } catch (err) {
      await rm(l.dir, { recursive: true, force: true });
      throw new ImageBuildError(`Dockerfile step failed: ${label}\n${(err as Error).message}`, { cause: err });
    }
  }
  await finishLayer(l);
  st.layers.push(l.dir);
  st.key = key;
  ran.push({ step: label, seconds: (Date.now() - started) / 1000 });
}

async function withLock<T>(fn: () => Promise<T>): Promise<T> {
  const lock = join(CACHE, 'lock');
  await mkdir(CACHE, { recursive: true });
  for (let i = 0; ; i++) {
    try {
      await mkdir(lock);
      break;
    } catch {
      const s = await stat(lock).catch(() => undefined);
      if (s && Date.now() - s.mtimeMs > 30 * 60_000) await rm(lock, { recursive: true, force: true });
      if (i > 1200) throw new ImageBuildError(`another image build holds ${lock}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

/**
 * Only the base (node:24-bookworm-slim stand-in): its layer directory, whose
 * diff/ is a complete root file system. scripts/cluster/images.ts imports it
 * into buildah as the base of the real image builds.
 */
export function buildBase(): Promise<{ dir: string; ran: BuildResult['ran'] }> {
  return withLock(async () => {
    const ran: BuildResult['ran'] = [];
    return { dir: await baseLayer(ran), ran };
  });
}

/** Build every stage of the Dockerfile (from the cache where nothing changed); drop layers no stage uses now. */
export function buildImage(): Promise<BuildResult> {
  return withLock(async () => {
    const df = parseDockerfile(await readFile(join(ROOT, 'Dockerfile'), 'utf8'));
    const ignored = dockerignore(await readFile(join(ROOT, '.dockerignore'), 'utf8').catch(() => ''));
    const ran: BuildResult['ran'] = [];
    const base = await baseLayer(ran);
    const built: BuiltStage[] = [];
    const byName = new Map<string, BuiltStage>();
    for (const stage of df.stages) {
      if (stage.from !== BASE_IMAGE) throw new ImageBuildError(`FROM ${stage.from}: this builder stands in for ${BASE_IMAGE} only`);
      const st: StageState = { layers: [base], key: posix.basename(base), env: {}, workdir: '/', user: 'root' };
      for (const i of stage.instructions) await runStep(st, i, byName, ignored, ran);
      const b: BuiltStage = { layers: st.layers, config: imageConfig(stage as Stage, { env: { ...BASE_ENV } }), ...(stage.name ? { name: stage.name } : {}) };
      built.push(b);
      if (stage.name) byName.set(stage.name, b);
    }
    const keep = new Set(built.flatMap((b) => b.layers.map((l) => posix.basename(l))));
    for (const d of await readdir(join(CACHE, 'layers'))) {
      if (!keep.has(d)) await rm(join(CACHE, 'layers', d), { recursive: true, force: true });
    }
    return { stages: built, image: built[built.length - 1]!, ran, baseLayer: base };
  });
}

export { overlayMount, sq };

if (import.meta.main) {
  const started = Date.now();
  buildImage().then(
    (r) => {
      for (const s of r.ran) console.log(`image-rootfs: ran ${s.step} (${s.seconds.toFixed(1)} s)`);
      console.log(`image-rootfs: ${r.image.layers.length} layers in ${CACHE}, up to date (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    },
    (err: unknown) => {
      console.error(`image-rootfs: ${(err as Error).message}`);
      process.exitCode = 1;
    },
  );
}
