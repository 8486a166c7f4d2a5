/**
 * Debian's cloud kernels for the matrix, from the Debian archive this machine
 * already uses: the mirror is read from the host's apt sources (no host name
 * is written in the repository), and a private apt configuration under the
 * cache directory lists the other suites, so the host's own apt state is never
 * touched. Each kernel is downloaded once per package version, unpacked, and
 * its modules indexed with depmod (the package's postinst would do that).
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';

/** A Debian kernel the matrix boots: the suite that ships it, the flavour we boot. */
export interface KernelSpec {
  /** Short name in the table and on the command line (5.10, 6.1, 6.12). */
  id: string;
  /** Debian suite whose linux-image-cloud-amd64 is the kernel. */
  suite: string;
  /** Where clusters run it (for the README). */
  seenOn: string;
}

export const DEBIAN_KERNELS: readonly KernelSpec[] = [
  { id: '5.10', suite: 'bullseye', seenOn: 'Debian 11, Amazon Linux 2' },
  { id: '6.1', suite: 'bookworm', seenOn: 'Debian 12, Amazon Linux 2023, Bottlerocket, COS' },
  { id: '6.12', suite: 'trixie', seenOn: 'Debian 13' },
];

/** The metapackage that depends on a suite's current cloud kernel. */
const META_PACKAGE = 'linux-image-cloud-amd64';

export interface KernelImage {
  spec: KernelSpec;
  /** Debian package name and version (linux-image-5.10.0-32-cloud-amd64 5.10.223-1). */
  pkg: string;
  version: string;
  /** uname -r of the kernel. */
  release: string;
  vmlinuz: string;
  /** The unpacked package: its modules are at <root>/lib/modules/<release>. */
  root: string;
}

/** The Debian archive this machine's apt uses (scripts/lib/debian-mirror.sh reads its sources). */
async function debianMirror(): Promise<string> {
  const script = new URL('../lib/debian-mirror.sh', import.meta.url).pathname;
  const r = await execa(script, [], { reject: false });
  if (r.exitCode !== 0) throw new Error(`kernel matrix: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

/** A private apt: its own sources, lists and package cache under @dir. */
class PrivateApt {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  private opts(): string[] {
    const d = this.dir;
    return [
      '-o', `Dir::Etc::SourceList=${d}/sources.list`,
      '-o', 'Dir::Etc::SourceParts=/dev/null',
      '-o', `Dir::State::Lists=${d}/lists`,
      '-o', `Dir::State::status=${d}/status`,
      '-o', `Dir::Cache=${d}/cache`,
      '-o', 'APT::Architecture=amd64',
      '-o', 'Acquire::Languages=none',
      // only the package indexes: no AppStream/DEP-11 metadata
      '-o', 'Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false',
      '-o', 'Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false',
      '-o', 'Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false',
    ];
  }

  async configure(mirror: string, suites: string[]): Promise<boolean> {
    await mkdir(join(this.dir, 'lists', 'partial'), { recursive: true });
    await mkdir(join(this.dir, 'cache', 'archives', 'partial'), { recursive: true });
    if (!existsSync(join(this.dir, 'status'))) await writeFile(join(this.dir, 'status'), '');
    const keyring = '/usr/share/keyrings/debian-archive-keyring.gpg';
    const list = suites.map((s) => `deb [signed-by=${keyring}] ${mirror} ${s} main\n`).join('');
    const file = join(this.dir, 'sources.list');
    const changed = !existsSync(file) || (await readFile(file, 'utf8')) !== list;
    if (changed) await writeFile(file, list);
    return changed;
  }

  async update(): Promise<void> {
    const r = await execa('apt-get', [...this.opts(), '-q', 'update'], { reject: false, all: true });
    if (r.exitCode !== 0) throw new Error(`kernel matrix: apt-get update of the kernel suites failed:\n${r.all}`);
  }

  /** The version of @pkg that @suite ships, and what it depends on. */
  async show(pkg: string, suite: string): Promise<{ version: string; depends: string } | undefined> {
    const r = await execa('apt-cache', [...this.opts(), 'show', pkg], { reject: false });
    if (r.exitCode !== 0) return undefined;
    // one stanza per version; pick the one from the suite's list
    const policy = await execa('apt-cache', [...this.opts(), 'madison', pkg], { reject: false });
    const row = policy.stdout.split('\n').map((l) => l.split('|').map((s) => s.trim())).find((c) => c[2]?.split(/\s+/).some((w) => w === suite || w.startsWith(`${suite}/`)));
    if (!row) return undefined;
    const version = row[1]!;
    const stanza = r.stdout.split(/\n\n+/).find((s) => new RegExp(`^Version: ${version.replace(/[.+]/g, '\\$&')}$`, 'm').test(s));
    return { version, depends: /^Depends: (.*)$/m.exec(stanza ?? '')?.[1] ?? '' };
  }

  async download(pkg: string, version: string, into: string): Promise<string> {
    await mkdir(into, { recursive: true });
    const r = await execa('apt-get', [...this.opts(), '-q', 'download', `${pkg}=${version}`], { cwd: into, reject: false, all: true });
    if (r.exitCode !== 0) throw new Error(`kernel matrix: apt-get download ${pkg}=${version} failed:\n${r.all}`);
    const deb = (await readdir(into)).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
    if (!deb) throw new Error(`kernel matrix: apt-get download ${pkg} left no .deb in ${into}`);
    return join(into, deb);
  }
}

/** The image package a suite's cloud metapackage depends on. */
export function imagePackage(depends: string): string | undefined {
  return depends.split(',').map((d) => d.trim().split(/\s+/)[0]!).find((d) => /^linux-image-\S+-cloud-amd64$/.test(d) && d !== META_PACKAGE);
}

/**
 * Bring every kernel of @specs into @cache (download, unpack, depmod), each
 * once per package version. @refresh: ask the archive for newer versions
 * (apt-get update) even when a cached kernel exists.
 */
export async function fetchKernels(specs: readonly KernelSpec[], cache: string, opts: { refresh?: boolean; log?: (s: string) => void } = {}): Promise<KernelImage[]> {
  const log = opts.log ?? (() => undefined);
  const apt = new PrivateApt(join(cache, 'apt'));
  const mirror = await debianMirror();
  const changed = await apt.configure(mirror, specs.map((s) => s.suite));
  const updated = join(apt.dir, 'updated');
  if (changed || opts.refresh || !existsSync(updated)) {
    log(`apt-get update (${specs.map((s) => s.suite).join(', ')}) from ${mirror}`);
    await apt.update();
    await writeFile(updated, `${new Date().toISOString()}\n`);
  }
  const out: KernelImage[] = [];
  for (const spec of specs) {
    const meta = await apt.show(META_PACKAGE, spec.suite);
    if (!meta) throw new Error(`kernel matrix: ${spec.suite} has no ${META_PACKAGE} in ${mirror}`);
    const pkg = imagePackage(meta.depends);
    if (!pkg) throw new Error(`kernel matrix: ${META_PACKAGE} ${meta.version} (${spec.suite}) depends on no cloud image: ${meta.depends}`);
    const image = await apt.show(pkg, spec.suite);
    if (!image) throw new Error(`kernel matrix: ${pkg} is not in ${spec.suite}`);
    const root = join(cache, 'kernels', `${pkg}_${image.version}`);
    if (!existsSync(join(root, '.complete'))) {
      log(`downloading ${pkg} ${image.version}`);
      const deb = await apt.download(pkg, image.version, join(cache, 'debs'));
      const tmp = `${root}.tmp`;
      await rm(tmp, { recursive: true, force: true });
      await mkdir(tmp, { recursive: true });
      await execa('dpkg-deb', ['-x', deb, tmp]);
      // merged-/usr packages (trixie) ship /usr/lib/modules; depmod and the
      // guest look in lib/modules
      if (!existsSync(join(tmp, 'lib', 'modules')) && existsSync(join(tmp, 'usr', 'lib', 'modules'))) {
        await mkdir(join(tmp, 'lib'), { recursive: true });
        await symlink('../usr/lib/modules', join(tmp, 'lib', 'modules'));
      }
      const [release] = await readdir(join(tmp, 'lib', 'modules'));
      if (!release) throw new Error(`kernel matrix: ${pkg} holds no modules directory`);
      await execa('depmod', ['-b', tmp, release]);
      await writeFile(join(tmp, '.complete'), `${pkg} ${image.version}\n`);
      await rm(root, { recursive: true, force: true });
      await rename(tmp, root);
      await rm(deb, { force: true });
    }
    const [release] = await readdir(join(root, 'lib', 'modules'));
    out.push({ spec, pkg, version: image.version, release: release!, vmlinuz: join(root, 'boot', `vmlinuz-${release}`), root });
  }
  return out;
}
