/** Compile and load data-plane objects for kernel tests, under a private pin root. */
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { CaptureConfigSchema, defaultCollectorPort, type CaptureConfig, type CaptureConfigInput } from '../../src/api/index.ts';
import { loadAndPin, type PinnedObject } from '../../src/datapath/bpftool.ts';
import { compileObject } from '../../src/datapath/compile.ts';
import { compileDefines, type DataplaneConfig, type NodeParams } from '../../src/datapath/config.ts';
import { createRunner } from '../../src/datapath/exec.ts';
import { kernelVariant } from '../../src/datapath/features.ts';

export const TEST_CACHE = join(tmpdir(), 'podtap-test-objects');

/** A capture configuration as the controller writes it: the schema's defaults, these fields, a collector. */
export function testConfig(over: Partial<CaptureConfigInput> = {}): CaptureConfig {
  return CaptureConfigSchema.parse({
    hooks: ['ingress', 'egress'],
    snapLength: 0,
    mtu: 0,
    tunnel: {},
    ...over,
    collector: over.collector ?? { address: '198.18.200.2', port: defaultCollectorPort(over.tunnel?.protocol ?? 'Geneve') },
  });
}

/** The running kernel's variant of the data plane (src/datapath/features.ts), as the agent builds it. */
export async function kernelDefines(): Promise<string[]> {
  return (await kernelVariant(createRunner(), { pinRoot: '/sys/fs/bpf', cacheDir: TEST_CACHE })).defines;
}

export async function loadTestObject(
  defines: string[],
  pinRoot: string,
): Promise<PinnedObject> {
  const obj = await compileObject([...defines, ...(await kernelDefines())], { cacheDir: TEST_CACHE });
  return loadAndPin(obj.path, join(pinRoot, obj.key), { logDir: join(tmpdir(), 'podtap-test-logs'), key: obj.key });
}

export function definesFor(cfg: DataplaneConfig, node: Partial<NodeParams> = {}, extra: string[] = []): string[] {
  return [...compileDefines(cfg, { mtu: 1500, nrCpus: 2, ...node }), ...extra];
}

export function testPinRoot(): string {
  return `/sys/fs/bpf/podtap-test-${randomBytes(4).toString('hex')}`;
}

export async function removePins(root: string): Promise<void> {
  await rm(root, { recursive: true, force: true });
}

/** bpftool prog run: return value of one run of @prog on @packet. */
export async function progRun(prog: string, packet: Buffer, ctx?: Buffer): Promise<number> {
  const dir = join(tmpdir(), `podtap-run-${randomBytes(4).toString('hex')}`);
  await mkdir(dir, { recursive: true });
  const pkt = join(dir, 'pkt');
  await writeFile(pkt, packet);
  const args = ['prog', 'run', 'pinned', prog, 'data_in', pkt];
  if (ctx) {
    await writeFile(join(dir, 'ctx'), ctx);
    args.push('ctx_in', join(dir, 'ctx'));
  }
  const r = await execa('bpftool', args, { reject: false });
  await rm(dir, { recursive: true, force: true });
  const m = /Return value: (-?\d+)/.exec(r.stdout);
  if (!m) throw new Error(`bpftool prog run failed: ${r.stderr}`);
  return Number(m[1]) | 0;
}

/** The witness program (test/kernel/bpf/witness.bpf.c): a second filter that counts. */
export async function loadWitness(pinRoot: string): Promise<{ prog: string; count(): Promise<number> }> {
  const obj = join(tmpdir(), `podtap-witness-${randomBytes(4).toString('hex')}.o`);
  await execa('clang', ['-O2', '-g', '-target', 'bpf', ...(process.arch === 'x64' ? ['-I/usr/include/x86_64-linux-gnu'] : []), '-c', 'test/kernel/bpf/witness.bpf.c', '-o', obj]);
  await execa('bpftool', ['prog', 'loadall', obj, pinRoot, 'pinmaps', `${pinRoot}/maps`]);
  await rm(obj, { force: true });
  return {
    prog: `${pinRoot}/witness`,
    async count() {
      const r = await execa('bpftool', ['-j', 'map', 'dump', 'pinned', `${pinRoot}/maps/witness_count`]);
      const rows = JSON.parse(r.stdout) as { formatted?: { value: number } }[];
      return rows[0]?.formatted?.value ?? 0;
    },
  };
}
