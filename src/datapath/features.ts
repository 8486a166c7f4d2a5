/**
 * What this kernel's BPF can do, found by loading a tiny program per feature
 * (bpf/probes/, the way bpftool feature probe and libbpf do) — never by
 * reading the version number, which says nothing about backports, distribution
 * patches or lockdown. The answers choose the data plane's variant
 * (bpf/include/compat.h): every variant keeps the same promise, and the
 * newest kernels get the fastest one. Where no variant fits, the data plane
 * is refused with KernelUnsupportedError, naming the kernel and the feature.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ExitCode, UserError } from '../util/errors.ts';
import { BPF_DIR, compileObject } from './compile.ts';
import { cacheValueSize, MTU_MAX } from '../wire/sizes.ts';
import type { Runner } from './exec.ts';

/** A probe: bpf/probes/<name>.bpf.c, loaded, and run when @run says so; or,
 *  with @mapValueSize, a map created with values that large. */
interface Probe {
  /** What the kernel can do when the probe loads (and runs right). */
  feature: string;
  /** Mainline kernel that brought it (for messages and docs; never tested). */
  since: string;
  /** BPF_PROG_TEST_RUN it once; it returns 1 when what it read is right. */
  run?: boolean;
  mapValueSize?: number;
}

/** The largest scratch cache value any policy can ask for (sizes.ts). */
export const LARGEST_CACHE_VALUE = cacheValueSize({ mtu: MTU_MAX, outerV6: false, tunnel: 'VXLAN' });

export const PROBES = {
  bpf_loop: { feature: 'the bpf_loop() helper', since: '5.17' },
  global_func: { feature: 'global BPF functions', since: '5.6' },
  atomic_fetch: { feature: 'BPF atomics that return the old value', since: '5.12' },
  kern_ctx: { feature: 'the bpf_cast_to_kern_ctx() kfunc', since: '6.2', run: true },
  probe_read_kernel: { feature: 'bpf_probe_read_kernel() in tc programs', since: '5.5', run: true },
  xdp_frags: { feature: 'multi-buffer XDP (xdp.frags)', since: '5.18' },
  large_map_values: { feature: `BPF array maps with ${LARGEST_CACHE_VALUE}-byte values`, since: '3.19', mapValueSize: LARGEST_CACHE_VALUE },
} as const satisfies Record<string, Probe>;

export type ProbeName = keyof typeof PROBES;

export interface KernelFeatures {
  /** uname -r */
  release: string;
  /** /sys/kernel/btf/vmlinux: CO-RE relocations resolve against it. */
  btf: boolean;
  /** Each probe: whether it loaded (and ran right), and the kernel's reason when not. */
  probes: Record<ProbeName, { ok: boolean; error?: string | undefined }>;
}

/** The data plane's variant for a kernel: one choice per kernel-dependent piece. */
export interface Variant {
  /** Cutting the pieces between the first and the last. */
  loop: 'bpf_loop' | 'bounded loop of a global function';
  /** Sampling and budget counters shared by every CPU. */
  counters: 'atomic fetch-and-add' | 'spin lock';
  /** Reading a copy's checksum state from its struct sk_buff. */
  skb: 'bpf_cast_to_kern_ctx' | 'bpf_probe_read_kernel';
  /** The carrier stage's XDP program, and with it the capture device's MTU. */
  carrier: 'xdp.frags (capture device MTU 65535)' | 'xdp (capture device MTU = uplink MTU)';
}

export interface Missing {
  /** What the kernel lacks (every alternative). */
  lacks: string;
  /** What podtap needs it for. */
  neededFor: string;
}

export type Choice = { ok: true; variant: Variant; defines: string[]; xdpFrags: boolean } | { ok: false; missing: Missing[] };

const has = (f: KernelFeatures, p: ProbeName) => f.probes[p].ok;
const lacks = (p: ProbeName) => `${PROBES[p].feature} (${PROBES[p].since})`;

/** The variant that fits @f, as -D flags, or what is missing. */
export function chooseVariant(f: KernelFeatures): Choice {
  const missing: Missing[] = [];
  if (!f.btf) missing.push({ lacks: 'BTF type information (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)', neededFor: "reading a copy's checksum state from the kernel's struct sk_buff" });
  if (!has(f, 'bpf_loop') && !has(f, 'global_func')) {
    missing.push({ lacks: `${lacks('bpf_loop')} and ${lacks('global_func')}`, neededFor: 'cutting a frame larger than the MTU into pieces' });
  }
  if (f.btf && !has(f, 'kern_ctx') && !has(f, 'probe_read_kernel')) {
    missing.push({ lacks: `${lacks('kern_ctx')} and ${lacks('probe_read_kernel')}`, neededFor: "reading a copy's checksum state from the kernel's struct sk_buff" });
  }
  if (!has(f, 'large_map_values')) {
    missing.push({ lacks: PROBES.large_map_values.feature, neededFor: 'the scratch cache that holds a frame of 65535 bytes while it is cut into pieces' });
  }
  if (missing.length) return { ok: false, missing };
  const variant: Variant = {
    loop: has(f, 'bpf_loop') ? 'bpf_loop' : 'bounded loop of a global function',
    counters: has(f, 'atomic_fetch') ? 'atomic fetch-and-add' : 'spin lock',
    skb: has(f, 'kern_ctx') ? 'bpf_cast_to_kern_ctx' : 'bpf_probe_read_kernel',
    carrier: has(f, 'xdp_frags') ? 'xdp.frags (capture device MTU 65535)' : 'xdp (capture device MTU = uplink MTU)',
  };
  const flag = (name: string, on: boolean) => `-D${name}=${on ? 1 : 0}`;
  return {
    ok: true,
    variant,
    xdpFrags: has(f, 'xdp_frags'),
    defines: [
      flag('PT_HAVE_BPF_LOOP', has(f, 'bpf_loop')),
      flag('PT_HAVE_ATOMIC_FETCH', has(f, 'atomic_fetch')),
      flag('PT_HAVE_KERN_CTX', has(f, 'kern_ctx')),
      flag('PT_HAVE_XDP_FRAGS', has(f, 'xdp_frags')),
    ],
  };
}

/** Refusal of the data plane on this kernel: `podtap sniff` exits with
 *  ExitCode.kernelUnsupported, the agent reports reason KernelUnsupported. */
export class KernelUnsupportedError extends UserError {
  readonly release: string;
  readonly missing: Missing[];
  constructor(kernel: string, missing: Missing[], cause?: unknown) {
    super(`kernel ${kernel} lacks ${missing.map((m) => `${m.lacks}, needed for ${m.neededFor}`).join('; and ')}`, {
      exitCode: ExitCode.kernelUnsupported,
      cause,
      hint: 'podtap runs on Linux 5.10 or newer with BTF; see docs/install.md (requirements) and `podtap features` for what this kernel offers',
    });
    this.name = 'KernelUnsupportedError';
    this.release = kernel;
    this.missing = missing;
  }
}

/** The last lines of a failed load: the verifier's or libbpf's reason. */
function loadError(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l && !/libbpf strict mode|--legacy option|^-- (BEGIN|END) PROG LOAD LOG --$/.test(l));
  const reason = lines.find((l) => /unknown func|not found in kernel|invalid|unsupported|not supported|Permission denied|Invalid argument/i.test(l));
  return (reason ?? lines.at(-1) ?? 'failed').slice(0, 200);
}

async function runProbe(name: ProbeName, runner: Runner, dir: string, cacheDir: string | undefined): Promise<{ ok: boolean; error?: string }> {
  const probe: Probe = PROBES[name];
  if (probe.mapValueSize) {
    const pin = join(dir, name);
    const r = await runner.run('bpftool', ['map', 'create', pin, 'type', 'array', 'key', '4', 'value', String(probe.mapValueSize), 'entries', '1', 'name', 'pt_probe'], { netnsScoped: false });
    await rm(pin, { force: true });
    return r.exitCode === 0 ? { ok: true } : { ok: false, error: loadError(`${r.stderr}\n${r.stdout}`) };
  }
  const obj = await compileObject([], { runner, source: `probes/${name}.bpf.c`, ...(cacheDir ? { cacheDir } : {}) });
  const pin = join(dir, name);
  const load = await runner.run('bpftool', ['prog', 'load', obj.path, pin], { netnsScoped: false });
  if (load.exitCode !== 0) return { ok: false, error: loadError(`${load.stderr}\n${load.stdout}`) };
  try {
    if (!probe.run) return { ok: true };
    // a 64-byte frame: the probe compares what it read with the context's length
    const pkt = join(tmpdir(), `podtap-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
    await writeFile(pkt, Buffer.alloc(64));
    try {
      const r = await runner.run('bpftool', ['prog', 'run', 'pinned', pin, 'data_in', pkt], { netnsScoped: false });
      const ret = /Return value: (-?\d+)/.exec(r.stdout)?.[1];
      if (ret === '1') return { ok: true };
      return { ok: false, error: ret === undefined ? `test run failed: ${loadError(r.stderr)}` : 'loads, but reads wrong values (kernel lockdown?)' };
    } finally {
      await rm(pkt, { force: true });
    }
  } finally {
    await rm(pin, { force: true });
  }
}

/** The probes' directory under the pin root: a moment's, never a session's. */
export const PROBE_DIR_PREFIX = 'probe-';

/**
 * Probe the running kernel. @pinRoot: a directory on a BPF filesystem where
 * the probes are pinned for the moment they run (under podtap's own pin root,
 * so `podtap cleanup` removes what a crash leaves).
 */
export async function probeKernel(runner: Runner, opts: ProbeOptions): Promise<KernelFeatures> {
  const dir = join(opts.pinRoot, `${PROBE_DIR_PREFIX}${process.pid}-${randomBytes(3).toString('hex')}`); // bpffs names take no dot
  await mkdir(dir, { recursive: true });
  const probes = {} as KernelFeatures['probes'];
  try {
    for (const name of Object.keys(PROBES) as ProbeName[]) probes[name] = await runProbe(name, runner, dir, opts.cacheDir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return { release: release(), btf: existsSync('/sys/kernel/btf/vmlinux'), probes };
}

export interface ProbeOptions {
  pinRoot: string;
  cacheDir?: string;
  /** Where the answers are kept for the rest of this boot (a tmpfs such as /run/podtap). */
  stateDir?: string;
}

/** The answers' file for this boot and these probes: the kernel does not change
 *  until it reboots, and a new podtap may probe differently. */
async function answersFile(stateDir: string): Promise<string> {
  const h = createHash('sha256');
  h.update((await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim());
  h.update(JSON.stringify(PROBES));
  for (const [name, p] of Object.entries(PROBES) as [ProbeName, Probe][]) if (!p.mapValueSize) h.update(await readFile(join(BPF_DIR, 'probes', `${name}.bpf.c`)));
  return join(stateDir, `features-${h.digest('hex').slice(0, 16)}.json`);
}

async function probeOnce(runner: Runner, opts: ProbeOptions & { fresh?: boolean }): Promise<KernelFeatures> {
  const file = opts.stateDir ? await answersFile(opts.stateDir) : undefined;
  if (file && existsSync(file) && !opts.fresh) {
    try {
      return JSON.parse(await readFile(file, 'utf8')) as KernelFeatures;
    } catch {
      /* unreadable: probe again */
    }
  }
  const f = await probeKernel(runner, opts);
  if (file) {
    await mkdir(dirname(file), { recursive: true });
    await writeFile(`${file}.${process.pid}`, JSON.stringify(f));
    await rename(`${file}.${process.pid}`, file);
  }
  return f;
}

/**
 * Probe the kernel now, whatever is kept, and keep the answers in
 * @opts.stateDir for the rest of this boot (`podtap features`: the agent or
 * sniffer that starts next need not probe again).
 */
export function reprobeKernel(runner: Runner, opts: ProbeOptions & { stateDir: string }): Promise<KernelFeatures> {
  return probeOnce(runner, { ...opts, fresh: true });
}

let probed: Promise<KernelFeatures> | undefined;

/** What this kernel can do: probed once per boot (and kept in @stateDir) or once per process. */
export function kernelFeatures(runner: Runner, opts: ProbeOptions): Promise<KernelFeatures> {
  probed ??= probeOnce(runner, opts).catch((err: unknown) => {
    probed = undefined;
    throw new Error("probing the kernel's BPF features failed", { cause: err });
  });
  return probed;
}

/** The variant for this kernel, or KernelUnsupportedError. */
export async function kernelVariant(runner: Runner, opts: ProbeOptions): Promise<Extract<Choice, { ok: true }>> {
  const f = await kernelFeatures(runner, opts);
  const choice = chooseVariant(f);
  if (!choice.ok) throw new KernelUnsupportedError(f.release, choice.missing);
  return choice;
}

/**
 * veth refuses an XDP program without frags support while its peer's MTU
 * exceeds about a page; the capture device then has the uplink's MTU, and an
 * uplink MTU above that limit cannot be served.
 */
export function carrierMtuRefusal(kernel: string, mtu: number, cause: unknown): KernelUnsupportedError {
  return new KernelUnsupportedError(kernel, [{
    lacks: lacks('xdp_frags'),
    neededFor: `an uplink MTU of ${mtu}: without it the capture device's XDP stage takes frames of one page only`,
  }], cause);
}
