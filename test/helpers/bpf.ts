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
import { leftovers } from '../../src/datapath/cleanup.ts';
import { NODE_BUDGET_PIN } from '../../src/datapath/node-budget.ts';
import { kernelVariant } from '../../src/datapath/features.ts';
import { STATE_DIR } from '../../src/datapath/session.ts';

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

/** The running kernel's variant of the data plane (src/datapath/features.ts), as the agent builds it
 *  (and from the same answers for this boot, where the agent, sniff or `podtap features` kept them). */
export async function kernelDefines(): Promise<string[]> {
  return (await kernelVariant(createRunner(), { pinRoot: '/sys/fs/bpf', cacheDir: TEST_CACHE, stateDir: STATE_DIR })).defines;
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

/** Compile test/kernel/bpf/@name.bpf.c and pin its programs and maps under @pinRoot. */
async function loadTestProgram(name: string, pinRoot: string): Promise<void> {
  const obj = join(tmpdir(), `podtap-${name}-${randomBytes(4).toString('hex')}.o`);
  await execa('clang', ['-O2', '-g', '-target', 'bpf', ...(process.arch === 'x64' ? ['-I/usr/include/x86_64-linux-gnu'] : []), '-c', `test/kernel/bpf/${name}.bpf.c`, '-o', obj]);
  await execa('bpftool', ['prog', 'loadall', obj, pinRoot, 'pinmaps', `${pinRoot}/maps`]);
  await rm(obj, { force: true });
}

/** test/kernel/bpf/vlan.bpf.c: tags packets with VLAN 100 in skb->vlan_tci. */
export async function loadVlanTagger(pinRoot: string): Promise<string> {
  await loadTestProgram('vlan', pinRoot);
  return `${pinRoot}/vlan_tag`;
}

/** The witness program (test/kernel/bpf/witness.bpf.c): a second filter that counts. */
export async function loadWitness(pinRoot: string): Promise<{ prog: string; count(): Promise<number> }> {
  await loadTestProgram('witness', pinRoot);
  return {
    prog: `${pinRoot}/witness`,
    async count() {
      const r = await execa('bpftool', ['-j', 'map', 'dump', 'pinned', `${pinRoot}/maps/witness_count`]);
      const rows = JSON.parse(r.stdout) as { formatted?: { value: number } }[];
      return rows[0]?.formatted?.value ?? 0;
    },
  };
}

/** The marks programs (test/kernel/bpf/marks.bpf.c): set a mark as a CNI would, and count the marks packets carry. */
export async function loadMarks(pinRoot: string): Promise<{
  set: string;
  count: string;
  want(mark: number): Promise<void>;
  /** count only UDP packets to this port */
  onlyUdpTo(port: number): Promise<void>;
  read(): Promise<{ zero: number; other: number; bits: number; changed: number }>;
}> {
  await loadTestProgram('marks', pinRoot);
  const map = `${pinRoot}/maps/marks`;
  const le64 = (n: number) => [...Buffer.from(BigInt.asUintN(64, BigInt(n)).toString(16).padStart(16, '0'), 'hex').reverse()].map((b) => b.toString());
  return {
    set: `${pinRoot}/mark_set`,
    count: `${pinRoot}/mark_count`,
    async want(mark) {
      await execa('bpftool', ['map', 'update', 'pinned', map, 'key', '0', '0', '0', '0', 'value', ...le64(mark)]);
    },
    async onlyUdpTo(port) {
      await execa('bpftool', ['map', 'update', 'pinned', map, 'key', '5', '0', '0', '0', 'value', ...le64(port)]);
    },
    async read() {
      const rows = JSON.parse((await execa('bpftool', ['-j', 'map', 'dump', 'pinned', map])).stdout) as { formatted?: { key: number; value: number } }[];
      const v = (k: number) => rows.find((r) => r.formatted?.key === k)?.formatted?.value ?? 0;
      return { zero: v(1), other: v(2), bits: v(3), changed: v(4) };
    },
  };
}

/**
 * What of podtap is present on the node (leftovers()), less agents' sessions
 * (`a-…`) and the node's mirror budget pin, which a sniffer creates when it
 * finds none and leaves for the others. For a test that runs `podtap sniff`
 * (sessions `s-…`) and compares before with after, whatever agent else
 * shares the pin root meanwhile. (Each kernel test file has a pin root of its
 * own, test/kernel/setup-pin-root.ts; before that, an agent session of
 * another file failed kernels.test.ts once.)
 */
export async function sniffLeftovers(runner: ReturnType<typeof createRunner>): Promise<string[]> {
  const others = new RegExp(`^pin \\S+/(a-[0-9a-f]+|${NODE_BUDGET_PIN})(/|$)`);
  return (await leftovers({ runner })).filter((l) => !others.test(l));
}
