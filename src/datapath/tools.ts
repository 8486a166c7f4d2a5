/** Prerequisites of the data plane, checked up front with actionable errors. */
import { access, constants, readFile } from 'node:fs/promises';
import { ExitCode, UserError } from '../util/errors.ts';
import { execa } from 'execa';

/** Each tool and the Debian package that provides it. */
export const REQUIRED_TOOLS: { tool: string; pkg: string; why: string }[] = [
  { tool: 'clang', pkg: 'clang', why: 'compiles the BPF program' },
  { tool: 'bpftool', pkg: 'bpftool', why: 'loads and pins the BPF objects' },
  { tool: 'tc', pkg: 'iproute2', why: 'attaches the programs to interfaces' },
  { tool: 'ip', pkg: 'iproute2', why: 'manages the capture device and routes' },
  { tool: 'ethtool', pkg: 'ethtool', why: "sets the capture device's offloads" },
  { tool: 'nsenter', pkg: 'util-linux', why: 'enters network namespaces' },
  { tool: 'lsns', pkg: 'util-linux', why: "finds a pod network namespace's id (the agent's veth lookup)" },
];

export const BPF_HEADERS = { path: '/usr/include/bpf/bpf_helpers.h', pkg: 'libbpf-dev' };

async function onPath(tool: string): Promise<boolean> {
  const r = await execa('sh', ['-c', `command -v ${tool}`], { reject: false });
  return r.exitCode === 0;
}

export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) {
    throw new UserError(`${what} needs root (CAP_BPF, CAP_NET_ADMIN)`, {
      exitCode: ExitCode.notRoot,
      hint: 'run it with sudo, or as root',
    });
  }
}

/** Capability bits (uapi/linux/capability.h). */
const CAP = { NET_ADMIN: 12, SYS_ADMIN: 21, PERFMON: 38, BPF: 39 } as const;

/**
 * What the data plane needs and does not have, from a CapEff mask (hex, as
 * /proc/PID/status prints it): CAP_NET_ADMIN (tc programs, tc, ip link),
 * CAP_BPF (maps, programs) and CAP_PERFMON (the verifier's pointer
 * arithmetic); CAP_SYS_ADMIN stands for the last two (docs/security.md).
 */
export function missingCapabilities(capEff: string): { cap: string; why: string }[] {
  const mask = BigInt(`0x${capEff.trim() || '0'}`);
  const has = (bit: number) => (mask >> BigInt(bit)) & 1n ? true : false;
  const out: { cap: string; why: string }[] = [];
  if (!has(CAP.NET_ADMIN)) out.push({ cap: 'CAP_NET_ADMIN', why: 'tc programs, tc filters, the capture device' });
  if (!has(CAP.BPF) && !has(CAP.SYS_ADMIN)) out.push({ cap: 'CAP_BPF', why: 'creating maps, loading programs' });
  if (!has(CAP.PERFMON) && !has(CAP.SYS_ADMIN)) out.push({ cap: 'CAP_PERFMON', why: "the verifier's pointer arithmetic on packets" });
  return out;
}

/**
 * Refuse to start without the capabilities the data plane needs, naming them:
 * without one, the kernel feature probes would fail first and blame the kernel.
 */
export async function requireCapabilities(what: string): Promise<void> {
  const status = await readFile('/proc/self/status', 'utf8');
  const missing = missingCapabilities(/^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1] ?? '0');
  if (missing.length) {
    throw new UserError(`${what} lacks ${missing.map((m) => `${m.cap} (${m.why})`).join(', ')}`, {
      exitCode: ExitCode.notRoot,
      hint: 'add the capabilities to its container (the chart does: docs/security.md), or run it as root with them',
    });
  }
}

export async function requireTools(): Promise<void> {
  for (const t of REQUIRED_TOOLS) {
    if (!(await onPath(t.tool))) {
      throw new UserError(`missing tool: ${t.tool} (${t.why})`, {
        exitCode: ExitCode.missingTool,
        hint: `install the Debian package "${t.pkg}" (apt-get install ${t.pkg}), or run scripts/setup.sh`,
      });
    }
  }
  try {
    await access(BPF_HEADERS.path, constants.R_OK);
  } catch {
    throw new UserError(`missing BPF headers: ${BPF_HEADERS.path}`, {
      exitCode: ExitCode.missingTool,
      hint: `install the Debian package "${BPF_HEADERS.pkg}", or run scripts/setup.sh`,
    });
  }
}

/** Count of possible CPUs ("0-3,5" style list). */
export async function possibleCpus(): Promise<number> {
  const text = (await readFile('/sys/devices/system/cpu/possible', 'utf8')).trim();
  let max = 0;
  for (const part of text.split(',')) {
    const [a, b] = part.split('-').map(Number);
    max = Math.max(max, (b ?? a ?? 0) + 1);
  }
  return max;
}
