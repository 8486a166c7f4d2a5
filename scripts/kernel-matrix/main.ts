/**
 * scripts/kernel-matrix.sh: the data plane's kernel tests (test/kernel/kernels.test.ts)
 * on Debian's cloud kernels under qemu, and on this machine's own kernel; the
 * README's kernel table from the results. See HELP.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { release } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { runHost } from './host.ts';
import { buildInitramfs } from './initramfs.ts';
import { DEBIAN_KERNELS, fetchKernels } from './kernels.ts';
import { cells, failures, MATRIX_TESTS, renderTable, guestCrash, withTable, type FeaturesJson, type KernelRow, type MatrixRecord, type VitestJson } from './report.ts';
import { runGuest } from './vm.ts';

const REPO = new URL('../../', import.meta.url).pathname.replace(/\/$/, '');
const CACHE = process.env.PODTAP_KERNEL_CACHE ?? '/var/tmp/podtap-kernels';
export const RECORD = join(REPO, 'docs/kernel-matrix.json');
const HOST = 'host';

const HELP = `Usage: scripts/kernel-matrix.sh [--kernels LIST | --qemu-only] [--write] [--refresh] [--verbose]
       scripts/kernel-matrix.sh --readme

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
  --readme        only rewrite the README's table from docs/kernel-matrix.json
                  (say, a record kept by --write in another clone)
  --help          this text

Needs root, and the packages of scripts/setup.sh --kernel-matrix.`;

const { values } = parseArgs({
  options: {
    kernels: { type: 'string' },
    'qemu-only': { type: 'boolean' },
    write: { type: 'boolean' },
    refresh: { type: 'boolean' },
    verbose: { type: 'boolean', short: 'v' },
    readme: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log(HELP);
  process.exit(0);
}
if (values.readme) {
  const readmePath = join(REPO, 'README.md');
  const run = JSON.parse(await readFile(RECORD, 'utf8')) as MatrixRecord;
  await writeFile(readmePath, withTable(await readFile(readmePath, 'utf8'), renderTable(run)));
  console.error(`kernel-matrix: the README's kernel table is ${RECORD}'s (${run.date})`);
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
// the guests' share: caches kept across runs at its top (V8's code cache,
// vitest's transforms), each run's results and host-tool spool in a
// directory of its own (runs of other checkouts may share this cache)
const share = join(CACHE, 'share');
const runRel = join('runs', String(process.pid));
const runDir = join(share, runRel);
await mkdir(join(share, 'runs'), { recursive: true });
for (const old of await readdir(join(share, 'runs'))) {
  if (!alive(Number(old))) await rm(join(share, 'runs', old), { recursive: true, force: true });
}
await mkdir(runDir, { recursive: true });

/** The machine's 1-minute load average, sampled until stop(): its mean. */
function sampleLoad(): { stop(): number | undefined } {
  const samples: number[] = [];
  const take = () => void readFile('/proc/loadavg', 'utf8').then((t) => samples.push(Number(t.split(' ')[0])), () => undefined);
  take();
  const timer = setInterval(take, 5000);
  return {
    stop() {
      clearInterval(timer);
      const ok = samples.filter(Number.isFinite);
      return ok.length ? ok.reduce((a, b) => a + b, 0) / ok.length : undefined;
    },
  };
}

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

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
  const boot = async (sub: string) => {
    log(`${k.spec.id}: booting ${k.release} (${k.pkg} ${k.version}) under qemu`);
    const load = sampleLoad();
    const r = await runGuest({
      vmlinuz: k.vmlinuz, initramfs, kdir: k.root, repo: REPO, tests: [MATRIX_TESTS], share, run: join(runRel, sub), spool: join(runRel, 'spool'),
      memoryMiB: 3072, cpus: 2, timeoutSeconds: Number(process.env.PODTAP_KERNEL_TIMEOUT ?? 1800), cancel: abort.signal,
      log: values.verbose ? (l) => console.error(`[${k.spec.id}] ${l}`) : undefined,
    });
    const meanLoad = load.stop();
    log(`${k.spec.id}: boot ${r.bootSeconds.toFixed(0)} s, tests ${r.testSeconds.toFixed(0)} s, qemu CPU ${r.cpuSeconds?.toFixed(0) ?? '?'} s, load ${meanLoad?.toFixed(1) ?? '?'}, exit ${r.exitCode ?? '-'}, host jobs: ${Object.entries(r.hostJobs).map(([t, n]) => `${n} ${t}`).join(', ') || 'none'}${r.failure ? `, ${r.failure}` : ''}`);
    return { r, meanLoad };
  };
  let { r, meanLoad } = await boot(k.spec.id);
  // Node itself crashing is the runtime's bug, not podtap's (report.ts,
  // guestCrash): the kernel gets one more boot, said here and marked in the
  // table. A second crash, or any other failure, fails the kernel as always.
  const crash = r.exitCode !== 0 && !abort.signal.aborted ? guestCrash(await readFile(join(r.dir, 'console.log'), 'utf8').catch(() => '')) : undefined;
  let retried: string | undefined;
  if (crash) {
    retried = crash;
    log(`${k.spec.id}: ${crash}, not podtap's doing: booting this kernel once more (the first boot's console: ${join(r.dir, 'console.log')})`);
    ({ r, meanLoad } = await boot(`${k.spec.id}.2`));
  }
  await record(k.spec.id, r.dir, {
    id: k.spec.id, release: k.release, source: `${k.pkg} ${k.version}`, seenOn: k.spec.seenOn, bootSeconds: r.bootSeconds, testSeconds: r.testSeconds,
    ...(meanLoad === undefined ? {} : { load: meanLoad }),
    ...(r.cpuSeconds === undefined ? {} : { cpuSeconds: r.cpuSeconds }),
    ...(retried ? { retried } : {}),
  }, r.failure);
}

// last: it may wait for another suite to release this machine's lock
if (ids.includes(HOST)) {
  const dir = join(runDir, HOST);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  log(`${HOST}: ${release()} (this machine)`);
  const load = sampleLoad();
  const r = await runHost({
    repo: REPO, tests: [MATRIX_TESTS], dir, lockHeld: process.env.PODTAP_SUITE_LOCK_HELD === '1', cancel: abort.signal,
    log: values.verbose ? (l) => console.error(`[${HOST}] ${l}`) : undefined,
  });
  const hostLoad = load.stop(); // the wait for the suite lock included
  log(`${HOST}: tests ${r.testSeconds.toFixed(0)} s, load ${hostLoad?.toFixed(1) ?? '?'}, exit ${r.exitCode}`);
  await record(HOST, dir, { id: HOST, release: release(), source: 'this machine', seenOn: 'the machine the matrix runs on', bootSeconds: 0, testSeconds: r.testSeconds, ...(hostLoad === undefined ? {} : { load: hostLoad }) });
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
