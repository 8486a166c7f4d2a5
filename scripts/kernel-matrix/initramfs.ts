/**
 * The guest's initramfs: busybox (static), the first-stage init
 * (initramfs-init.sh) and the kernel package's own modules for virtiofs and
 * overlayfs, in load order. Debian's cloud kernels build 9p not at all and
 * virtiofs as a module (built in from 6.12), so this is the smallest thing
 * that mounts the host's root. Cached per kernel and recipe.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { execa } from 'execa';
import type { KernelImage } from './kernels.ts';

const HERE = new URL('.', import.meta.url).pathname;
export const INITRAMFS_INIT = join(HERE, 'initramfs-init.sh');
const BUSYBOX = '/bin/busybox';

/** Modules the first stage needs, when the kernel does not build them in. */
export const BOOT_MODULES = ['virtio_pci', 'virtiofs', 'overlay'] as const;

/** `modprobe --show-depends` output: module files in load order ("builtin" lines skipped). */
export function parseShowDepends(out: string): string[] {
  return out.split('\n').map((l) => /^insmod (\S+)/.exec(l.trim())?.[1]).filter((f): f is string => !!f);
}

async function bootModuleFiles(k: KernelImage): Promise<string[]> {
  const files: string[] = [];
  for (const m of BOOT_MODULES) {
    const r = await execa('modprobe', ['-d', k.root, '-S', k.release, '--show-depends', m], { reject: false });
    if (r.exitCode !== 0) throw new Error(`kernel matrix: ${k.pkg} has no module ${m} and does not build it in: ${r.stderr.trim()}`);
    for (const f of parseShowDepends(r.stdout)) if (!files.includes(f)) files.push(f);
  }
  return files;
}

/** Build (or reuse) the initramfs for @k under @cache; returns its path. */
export async function buildInitramfs(k: KernelImage, cache: string): Promise<string> {
  if (!existsSync(BUSYBOX)) throw new Error(`kernel matrix: ${BUSYBOX} is missing: run scripts/setup.sh --kernel-matrix (package busybox-static)`);
  const modules = await bootModuleFiles(k);
  const h = createHash('sha256');
  h.update(await readFile(INITRAMFS_INIT));
  h.update(await readFile(BUSYBOX));
  h.update(`${k.pkg} ${k.version}\n${modules.join('\n')}`);
  const path = join(cache, 'initramfs', `${k.release}-${h.digest('hex').slice(0, 12)}.cpio.gz`);
  if (existsSync(path)) return path;

  const dir = `${path}.d`;
  await rm(dir, { recursive: true, force: true });
  for (const d of ['bin', 'modules', 'proc', 'sys', 'dev']) await mkdir(join(dir, d), { recursive: true });
  await copyFile(BUSYBOX, join(dir, 'bin', 'busybox'));
  await symlink('busybox', join(dir, 'bin', 'sh'));
  await copyFile(INITRAMFS_INIT, join(dir, 'init'));
  await chmod(join(dir, 'init'), 0o755);
  const order: string[] = [];
  for (const f of modules) {
    // busybox insmod takes plain ELF: unpack xz/zstd-compressed modules here
    const name = basename(f).replace(/\.(xz|zst)$/, '');
    if (f.endsWith('.xz')) await execa('sh', ['-c', 'xz -dc "$1" > "$2"', 'sh', f, join(dir, 'modules', name)]);
    else if (f.endsWith('.zst')) await execa('zstd', ['-qdf', f, '-o', join(dir, 'modules', name)]);
    else await copyFile(f, join(dir, 'modules', name));
    order.push(name);
  }
  await writeFile(join(dir, 'modules.order'), `${order.join('\n')}\n`);
  await execa('sh', ['-c', 'find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -1 > "$1"', 'sh', `${path}.tmp`], { cwd: dir });
  await rename(`${path}.tmp`, path);
  await rm(dir, { recursive: true, force: true });
  // the same kernel's older recipes
  for (const f of await readdir(dirname(path))) {
    if (f.startsWith(`${k.release}-`) && join(dirname(path), f) !== path) await rm(join(dirname(path), f), { recursive: true, force: true });
  }
  return path;
}
