/**
 * scripts/kernel-matrix.sh: the data plane's kernel tests (test/kernel/kernels.test.ts)
 * on Debian's cloud kernels under qemu, and on this machine's own kernel; the
 * README's kernel table from the results. See HELP.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { release } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { runHost } from './host.ts';
import { buildInitramfs } from './initramfs.ts';
import { DEBIAN_KERNELS, fetchKernels } from './kernels.ts';
import { cells, failures, MATRIX_TESTS, renderTable, withTable, type FeaturesJson, type KernelRow, type MatrixRecord, type VitestJson } from './report.ts';
import { runGuest } from './vm.ts';

const REPO = new URL('../../', import.meta.url).pathname.replace(/\/$/, '');
const CACHE = process.env.PODTAP_KERNEL_CACHE ?? '/var/tmp/podtap-kernels';
export const RECORD = join(REPO, 'docs/kernel-matrix.json');
const HOST = 'host';

const HELP = `Usage: scripts/kernel-matrix.sh [--kernels LIST | --qemu-only] [--write] [--refresh] [--verbose]

Runs the data plane's kernel tests (${MATRIX_TESTS}) on Debian's cloud
kernels — ${DEBIAN_KERNELS.map((k) => `${k.id} (${k.suite})`).join(', ')} — each booted under
qemu (TCG) with this machine's root shared read-only, and on this machine's
own kernel ("${HOST}"). The kernels come from the Debian archive of this
machine's apt sources, cached by version under ${CACHE}
(PODTAP_KERNEL_CACHE). Prints the kernel table; exits 1 naming every kernel
and test that failed.

Options:
  --kernels LIST  comma-separated, of ${[HOST, ...DEBIAN_KERNELS.map((k) => k.id)].join(', ')} (default: all)
  --qemu-only     the qemu kernels only (scripts/test.sh: its vitest run has just
                  run the same tests on this machine's kernel)
  --write         keep this run in docs/kernel-matrix.json and the README's table
                  (needs every kernel and every test passed)
  --refresh       ask the archive for newer kernel packages first
  --verbose       stream each guest's console
  --help          this text

Needs root, and the packages of scripts/setup.sh --kernel-matrix.`;

const { values } = parseArgs({
  options: {
    kernels: { type: 'string' },
    'qemu-only': { type: 'boolean' },
    write: { type: 'boolean' },
    refresh: { type: 'boolean' },
    verbose: { type: 'boolean', short: 'v' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log(HELP);
  process.exit(0);
}
const known = [HOST, ...DEBIAN_KERNELS.map((k) => k.id)];
if (values.kernels && values['qemu-only']) {
  console.error('kernel-matrix: --kernels and --qemu-only exclude each other');
  process.exit(2);
}
const ids = values.kernels ? values.kernels.split(',').map((s) => s.trim()).filter(Boolean) : known.filter((k) => !(values['qemu-only'] && k === HOST));
const unknown = ids.filter((i) => !known.includes(i));
if (unknown.length) {
  console.error(`kernel-matrix: unknown kernel ${unknown.join(', ')} (known: ${known.join(', ')})`);
  process.exit(2);
}
if (values.write && known.some((k) => !ids.includes(k))) {
  console.error('kernel-matrix: --write needs every kernel (leave out --kernels)');
  process.exit(2);
}
const log = (s: string) => console.error(`kernel-matrix: ${s}`);
const share = join(CACHE, 'share');
await mkdir(share, { recursive: true });
await rm(join(share, 'clang'), { recursive: true, force: true });

async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

// Ctrl-C or SIGTERM: stop the guest or the host run, whose cleanup then runs
const abort = new AbortController();
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => abort.abort());

const rows: KernelRow[] = [];
const failed: string[] = [];
async function record(id: string, dir: string, row: Omit<KernelRow, 'cells' | 'variant' | 'release'> & { release?: string }, failure?: string): Promise<void> {
  const results = await readJson<VitestJson>(join(dir, 'results.json'));
  const features = await readJson<FeaturesJson>(join(dir, 'features.json'));
  const c = cells(results, features);
  const bad = failures(results);
  if (failure) bad.unshift(failure);
  if (!features?.variant) bad.unshift(`podtap features named no variant (see ${join(dir, 'features.json')})`);
  if (Object.values(c).some((v) => v === 'fail' || v === 'not run') || bad.length) {
    failed.push(`${id} (${features?.release ?? row.release ?? '?'}):\n    ${(bad.length ? bad : ['a column has no passing test']).join('\n    ')}\n    console and results: ${dir}`);
  }
  rows.push({ ...row, release: features?.release ?? row.release ?? '?', variant: features?.variant ?? {}, cells: c });
  log(`${id}: ${Object.entries(c).map(([k, v]) => `${k} ${v}`).join(', ')}`);
}

const specs = DEBIAN_KERNELS.filter((k) => ids.includes(k.id));
const images = specs.length ? await fetchKernels(specs, CACHE, { refresh: !!values.refresh, log }) : [];
for (const k of images) {
  if (abort.signal.aborted) break;
  const initramfs = await buildInitramfs(k, CACHE);
  log(`${k.spec.id}: booting ${k.release} (${k.pkg} ${k.version}) under qemu`);
  const r = await runGuest({
    vmlinuz: k.vmlinuz, initramfs, kdir: k.root, repo: REPO, tests: [MATRIX_TESTS], share, run: k.spec.id,
    memoryMiB: 3072, cpus: 2, timeoutSeconds: Number(process.env.PODTAP_KERNEL_TIMEOUT ?? 1800), cancel: abort.signal,
    log: values.verbose ? (l) => console.error(`[${k.spec.id}] ${l}`) : undefined,
  });
  log(`${k.spec.id}: boot ${r.bootSeconds.toFixed(0)} s, tests ${r.testSeconds.toFixed(0)} s, exit ${r.exitCode ?? '-'}, ${r.compiles} compiles on the host${r.failure ? `, ${r.failure}` : ''}`);
  await record(k.spec.id, r.dir, {
    id: k.spec.id, release: k.release, source: `${k.pkg} ${k.version}`, seenOn: k.spec.seenOn, bootSeconds: r.bootSeconds, testSeconds: r.testSeconds,
  }, r.failure);
}

// last: it may wait for another suite to release this machine's lock
if (ids.includes(HOST)) {
  const dir = join(share, HOST);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  log(`${HOST}: ${release()} (this machine)`);
  const r = await runHost({
    repo: REPO, tests: [MATRIX_TESTS], dir, lockHeld: process.env.PODTAP_SUITE_LOCK_HELD === '1', cancel: abort.signal,
    log: values.verbose ? (l) => console.error(`[${HOST}] ${l}`) : undefined,
  });
  log(`${HOST}: tests ${r.testSeconds.toFixed(0)} s, exit ${r.exitCode}`);
  await record(HOST, dir, { id: HOST, release: release(), source: 'this machine', seenOn: 'the machine the matrix runs on', bootSeconds: 0, testSeconds: r.testSeconds });
}

const qemu = (await execa('qemu-system-x86_64', ['--version'], { reject: false })).stdout.split('\n')[0] ?? 'qemu';
const run: MatrixRecord = {
  date: new Date().toISOString().slice(0, 10),
  how: `${qemu.replace(/ \(.*\)$/, '').replace(/^QEMU emulator version/, 'qemu')} TCG, 2 vCPUs, 3 GiB, on a 2-core machine; the host row natively`,
  kernels: rows,
};
console.log(renderTable(run));
if (failed.length) {
  console.error(`kernel-matrix: FAILED on ${failed.length} kernel(s):\n  ${failed.join('\n  ')}`);
  process.exit(1);
}
if (values.write) {
  await writeFile(RECORD, `${JSON.stringify(run, null, 2)}\n`);
  const readmePath = join(REPO, 'README.md');
  await writeFile(readmePath, withTable(await readFile(readmePath, 'utf8'), renderTable(run)));
  log(`wrote ${RECORD} and the README's kernel table`);
} else if (existsSync(RECORD)) {
  log(`passed; --write keeps this run in docs/kernel-matrix.json and the README`);
}
