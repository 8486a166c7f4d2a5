/**
 * One kernel under qemu (TCG: KVM does not work on the machines this runs
 * on): the host's root shared read-only over virtiofs (the guest puts a
 * tmpfs overlay on it), a second, writable share for the results and the
 * clang spool, the serial console as the log. The guest has no network
 * device: its test traffic stays inside the namespaces it makes.
 */
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { ClangServer } from './clang-server.ts';

const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';

export interface GuestRun {
  /** Seconds from qemu's start to the guest's "ready" line (kernel, modules, mounts). */
  bootSeconds: number;
  /** Seconds from "ready" to "done" (feature probe and tests). */
  testSeconds: number;
  /** vitest's exit code, or undefined when the guest never finished. */
  exitCode: number | undefined;
  /** Why the guest did not finish (timeout, panic, …). */
  failure: string | undefined;
  /** The directory with results.json, features.json, console.log. */
  dir: string;
  compiles: number;
}

export interface GuestOptions {
  vmlinuz: string;
  initramfs: string;
  /** The unpacked kernel package (modules at lib/modules/<release>). */
  kdir: string;
  repo: string;
  tests: string[];
  /** Writable directory shared with the guest. */
  share: string;
  run: string;
  memoryMiB: number;
  cpus: number;
  timeoutSeconds: number;
  /** Stops the guest (Ctrl-C of the matrix). */
  cancel?: AbortSignal;
  log?: (line: string) => void;
}

function startVirtiofsd(source: string, socket: string, cache: 'always' | 'none'): ResultPromise {
  // sandbox=chroot: works where the namespace sandbox cannot be set up
  return execa(VIRTIOFSD, [`--socket-path=${socket}`, '-o', `source=${source}`, '-o', `cache=${cache}`, '-o', 'sandbox=chroot', '-f'], {
    reject: false, all: true, buffer: true,
  });
}

async function waitForSocket(path: string, proc: ResultPromise): Promise<void> {
  let exited = false;
  void proc.then(() => (exited = true), () => (exited = true));
  for (let i = 0; i < 100 && !exited; i++) {
    if (existsSync(path)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill('SIGKILL');
  const r = await proc;
  throw new Error(`kernel matrix: virtiofsd did not open ${path}: ${String(r.all ?? '').trim()}`);
}

export async function runGuest(o: GuestOptions): Promise<GuestRun> {
  if (!existsSync(VIRTIOFSD)) throw new Error(`kernel matrix: ${VIRTIOFSD} is missing: run scripts/setup.sh --kernel-matrix (package qemu-system-x86)`);
  const dir = join(o.share, o.run);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const sockDir = join(o.share, '.sock');
  await mkdir(sockDir, { recursive: true });
  const rootSock = join(sockDir, `${o.run}-root.sock`);
  const shareSock = join(sockDir, `${o.run}-share.sock`);
  await rm(rootSock, { force: true });
  await rm(shareSock, { force: true });
  const consoleLog = join(dir, 'console.log');
  const clang = new ClangServer(join(o.share, 'clang'), o.repo);
  // the root: cached freely (nothing changes it during a run); the share:
  // uncached, so each side sees the other's files at once
  const vfsRoot = startVirtiofsd('/', rootSock, 'always');
  const vfsShare = startVirtiofsd(o.share, shareSock, 'none');
  let qemu: ResultPromise | undefined;
  const started = performance.now();
  let ready: number | undefined;
  let done: number | undefined;
  let failure: string | undefined;
  try {
    await waitForSocket(rootSock, vfsRoot);
    await waitForSocket(shareSock, vfsShare);
    await clang.start();
    const append = [
      'console=ttyS0', 'panic=-1', 'quiet', 'loglevel=4',
      `podtap.guest=${join(o.repo, 'scripts/kernel-matrix/guest-init.sh')}`,
      `podtap.repo=${o.repo}`, `podtap.kdir=${o.kdir}`, `podtap.tests=${o.tests.join(',')}`, `podtap.run=${o.run}`,
    ].join(' ');
    const mem = `${o.memoryMiB}M`;
    qemu = execa('qemu-system-x86_64', [
      // qemu64 (baseline x86-64): with -cpu max, glibc, V8 and LLVM take AVX
      // paths that TCG emulates 2-3 times slower
      '-machine', 'q35', '-accel', 'tcg,thread=multi', '-cpu', 'qemu64', '-smp', String(o.cpus), '-m', mem,
      // vhost-user (virtiofsd) needs the guest's memory shared with it
      '-object', `memory-backend-memfd,id=mem,size=${mem},share=on`, '-numa', 'node,memdev=mem',
      '-chardev', `socket,id=root,path=${rootSock}`, '-device', 'vhost-user-fs-pci,chardev=root,tag=hostroot',
      '-chardev', `socket,id=share,path=${shareSock}`, '-device', 'vhost-user-fs-pci,chardev=share,tag=share',
      '-kernel', o.vmlinuz, '-initrd', o.initramfs, '-append', append,
      '-nodefaults', '-nographic', '-no-reboot', '-serial', 'stdio',
    ], { reject: false, buffer: false, stdin: 'ignore', all: true, ...(o.cancel ? { cancelSignal: o.cancel } : {}) });
    let pending = '';
    qemu.all?.on('data', (d: Buffer) => {
      const text = d.toString().replace(/\r/g, '');
      void appendFile(consoleLog, text);
      pending += text;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        const now = performance.now();
        if (line.includes('podtap-guest: ready')) ready ??= now;
        if (line.includes('podtap-guest: done')) done ??= now;
        if (/Kernel panic|podtap-guest: initramfs:/.test(line)) failure ??= line.trim();
        o.log?.(line);
      }
    });
    o.cancel?.addEventListener('abort', () => (failure ??= 'stopped by a signal'));
    const timer = setTimeout(() => {
      failure ??= `timed out after ${o.timeoutSeconds} s`;
      qemu?.kill('SIGKILL');
    }, o.timeoutSeconds * 1000);
    await qemu;
    clearTimeout(timer);
  } finally {
    clang.stop();
    qemu?.kill('SIGKILL');
    vfsRoot.kill('SIGTERM');
    vfsShare.kill('SIGTERM');
    await Promise.allSettled([vfsRoot, vfsShare]);
    await rm(rootSock, { force: true });
    await rm(shareSock, { force: true });
  }
  const exitFile = join(dir, 'exit');
  const exitCode = existsSync(exitFile) ? Number((await readFile(exitFile, 'utf8')).trim()) : undefined;
  if (exitCode === undefined) failure ??= 'the guest stopped before the tests finished (see console.log)';
  const end = performance.now();
  return {
    bootSeconds: ((ready ?? end) - started) / 1000,
    testSeconds: ready ? ((done ?? end) - ready) / 1000 : 0,
    exitCode,
    failure,
    dir,
    compiles: clang.served,
  };
}
