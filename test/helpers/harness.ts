/**
 * A capture end to end: `podtap collector` in the collector namespace and
 * `podtap sniff` in the node namespace, both the real CLI processes.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ResultPromise } from 'execa';
import { afterAll } from 'vitest';
import { podtap, WAIT_SCALE, waitForLine } from './capture.ts';
import type { Topology } from './netns.ts';

// The collectors' output directories outlive stop() (tests read the files
// after it): each test file that imports this removes them when it is done.
const madeDirs: string[] = [];
afterAll(async () => {
  for (const d of madeDirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A temporary directory removed when the test file is done. */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  madeDirs.push(dir);
  return dir;
}

export interface CaptureRun {
  dir: string;
  collector: ResultPromise;
  sniff: ResultPromise;
  /** Stop the sniffer (SIGINT) then the collector (SIGTERM); the pcapng files written. */
  stop(): Promise<{ files: string[]; sniffOutput: string; collectorOutput: string; sniffExit: number | undefined }>;
}

export function policyYaml(spec: Record<string, unknown>, name = 'test'): string {
  return JSON.stringify({ apiVersion: 'podtap.io/v1alpha1', kind: 'SniffPolicy', metadata: { name, namespace: 'default' }, spec });
}

export async function startCollector(topo: Topology, opts: { tunnel?: 'geneve' | 'vxlan'; listen?: string; ns?: string; dir?: string } = {}): Promise<{ dir: string; proc: ResultPromise }> {
  let dir = opts.dir;
  if (!dir) madeDirs.push((dir = await mkdtemp(join(tmpdir(), 'podtap-cap-'))));
  const tunnel = opts.tunnel ?? 'geneve';
  const listen = opts.listen ?? `${topo.collector.ip4}:${tunnel === 'vxlan' ? 4789 : 6081}`;
  const proc = podtap(opts.ns ?? topo.collector.ns, ['collector', '--listen', listen, '--out', dir, '--tunnel', tunnel]);
  await waitForLine(proc, /writing|listening/i, 15_000 * WAIT_SCALE);
  return { dir, proc };
}

export async function startCapture(
  topo: Topology,
  spec: Record<string, unknown>,
  ifaces: string[],
  opts: { tunnel?: 'geneve' | 'vxlan'; collectorNs?: string; listen?: string; sniffArgs?: string[]; name?: string } = {},
): Promise<CaptureRun> {
  const col = await startCollector(topo, { ...opts, ...(opts.collectorNs ? { ns: opts.collectorNs } : {}) });
  const file = join(col.dir, 'policy.yaml');
  await writeFile(file, policyYaml(spec, opts.name));
  const sniff = podtap(topo.node, ['sniff', '--policy', file, '--iface', ifaces.join(','), '--quiet', ...(opts.sniffArgs ?? [])]);
  try {
    await waitForLine(sniff, /podtap: tapping/, 60_000 * WAIT_SCALE);
  } catch (err) {
    col.proc.kill('SIGTERM');
    await col.proc;
    throw err;
  }
  // let the first announcement reach the collector
  await new Promise((r) => setTimeout(r, 300));
  return {
    dir: col.dir,
    collector: col.proc,
    sniff,
    async stop() {
      sniff.kill('SIGINT');
      const s = await sniff;
      await new Promise((r) => setTimeout(r, 300));
      col.proc.kill('SIGTERM');
      const c = await col.proc;
      // the collector writes one directory per policy
      const files = (await readdir(col.dir, { recursive: true })).filter((f) => f.endsWith('.pcapng')).map((f) => join(col.dir, f));
      return { files, sniffOutput: `${String(s.all ?? '')}${s.signal ? `\n(killed by ${s.signal})` : ''}`, collectorOutput: String(c.all ?? ''), sniffExit: s.exitCode };
    },
  };
}
