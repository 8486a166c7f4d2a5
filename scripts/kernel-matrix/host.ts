/**
 * The matrix's row for this machine's own kernel: the same tests, run here,
 * the way scripts/test.sh runs the suite (a private network namespace, a
 * private TMPDIR, the machine-wide suite lock unless the caller holds it).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

export interface HostRun {
  testSeconds: number;
  exitCode: number;
  dir: string;
}

/** The tests' own time in vitest's report: not the wait for another suite's lock. */
async function vitestSeconds(file: string): Promise<number | undefined> {
  try {
    const r = JSON.parse(await readFile(file, 'utf8')) as { startTime: number; testResults: { endTime: number }[] };
    const end = Math.max(...r.testResults.map((f) => f.endTime));
    return Number.isFinite(end) ? (end - r.startTime) / 1000 : undefined;
  } catch {
    return undefined;
  }
}

export async function runHost(o: { repo: string; tests: string[]; dir: string; lockHeld: boolean; cancel?: AbortSignal; log?: (line: string) => void }): Promise<HostRun> {
  const ns = `podtap-matrix-${process.pid}`;
  const tmp = await mkdtemp(join(tmpdir(), 'podtap-matrix-'));
  const node = join(o.repo, 'node_modules/.bin/node');
  const features = await execa(node, ['src/cli/main.ts', 'features', '--json'], { cwd: o.repo, reject: false });
  await writeFile(join(o.dir, 'features.json'), features.stdout);
  await execa('ip', ['netns', 'add', ns]);
  const started = performance.now();
  try {
    await execa('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const vitest = [join(o.repo, 'node_modules/.bin/vitest'), 'run', '--project', 'kernel', '--reporter=default', '--reporter=json', `--outputFile=${join(o.dir, 'results.json')}`, ...o.tests];
    const cmd = ['nsenter', `--net=/run/netns/${ns}`, node, ...vitest];
    // one suite per machine (scripts/test.sh): bpffs is shared by every netns
    const argv = o.lockHeld ? cmd : ['flock', '/run/lock/podtap-test.lock', ...cmd];
    const p = execa(argv[0]!, argv.slice(1), { cwd: o.repo, reject: false, all: true, buffer: false, env: { ...process.env, TMPDIR: tmp }, ...(o.cancel ? { cancelSignal: o.cancel } : {}) });
    p.all?.on('data', (d: Buffer) => { for (const l of d.toString().split('\n')) if (l) o.log?.(l); });
    const r = await p;
    const exitCode = r.exitCode ?? 1;
    await writeFile(join(o.dir, 'exit'), `${exitCode}\n`);
    return { testSeconds: (await vitestSeconds(join(o.dir, 'results.json'))) ?? (performance.now() - started) / 1000, exitCode, dir: o.dir };
  } finally {
    await execa('ip', ['netns', 'del', ns], { reject: false });
    await rm(tmp, { recursive: true, force: true });
  }
}
