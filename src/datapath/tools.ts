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
