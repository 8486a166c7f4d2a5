/**
 * `podtap doctor`'s node-local checks: what makes a capture fail on this node,
 * or look Ready and capture nothing (docs/troubleshooting.md):
 *  - the tools, the BPF filesystem, BTF, and the kernel's BPF features (the
 *    probes the agent runs, src/datapath/features.ts);
 *  - for each pod veth, the programs other than podtap's that run before
 *    podtap's on the same hook: tcx links (which run before every tc filter)
 *    and tc filters at a lower preference (or ahead of podtap's at its own).
 *    A CNI program there that redirects the packet (bpf_redirect_peer, a
 *    mirred redirect) takes it away before podtap's filter sees it.
 * Nothing here changes the node: no mount, no attach (the kernel probes are
 * loaded and unpinned at once, as the agent does).
 */
import { readFile } from 'node:fs/promises';
import type { Runner } from './exec.ts';
import { chooseVariant, probeKernel, PROBES, type ProbeName } from './features.ts';
import { filterProgName, isPodtapProgram, PREF_BASE, type Hook, type TcBpfOptions } from './tc.ts';
import { REQUIRED_TOOLS } from './tools.ts';

export type Severity = 'ok' | 'warn' | 'fail';

export interface Finding {
  check: string;
  severity: Severity;
  message: string;
  /** what to do, for warn and fail */
  hint?: string;
  /** for an interface's checks: the hook a program runs at before podtap's (the agent reports those of the hooks it taps) */
  hook?: Hook;
  /** for an interface's checks: what runs first (a BPF program's name, or the filter's kind and actions) */
  program?: string;
}

/** Where podtap pins (and so where bpffs must be). */
export const BPFFS = '/sys/fs/bpf';

/** A filter on a hook, any kind (tc -j filter show). */
interface AnyFilter {
  pref: number;
  kind: string;
  /** the BPF program's name, for bpf filters */
  prog?: string | undefined;
  /** actions of a classic filter (mirred redirect, ...) */
  actions: string[];
}

/**
 * The filters on @dev's @hook in the order the kernel runs them: by
 * preference, and within one preference in its classifier's list order,
 * which is the order tc prints. A bpf classifier holds a list of programs
 * (`tc filter add … pref P` of someone else at podtap's preference joins it,
 * at its head: it runs before podtap's), so each bpf handle is one entry;
 * another kind's rows (tc prints a head row per preference, u32 its hash
 * tables) make one entry per preference.
 */
async function filters(runner: Runner, dev: string, hook: Hook): Promise<AnyFilter[]> {
  const r = await runner.run('tc', ['-j', 'filter', 'show', 'dev', dev, hook]);
  if (r.exitCode !== 0) return []; // no clsact qdisc: no filters
  const rows = JSON.parse(r.stdout || '[]') as { pref: number; kind: string; options?: TcBpfOptions & { actions?: { kind?: string; mirred_action?: string }[] } }[];
  const out: AnyFilter[] = [];
  const classic = new Map<number, AnyFilter>();
  for (const f of rows) {
    if (f.kind === 'bpf') {
      if (f.options?.handle) out.push({ pref: f.pref, kind: f.kind, prog: filterProgName(f.options), actions: [] });
      continue;
    }
    let entry = classic.get(f.pref);
    if (!entry) {
      entry = { pref: f.pref, kind: f.kind, actions: [] };
      classic.set(f.pref, entry);
      out.push(entry);
    }
    entry.actions.push(...(f.options?.actions ?? []).map((a) => [a.kind, a.mirred_action].filter(Boolean).join(' ')));
  }
  // (tc prints preferences in ascending order; sorted again so that the order never rests on it, stable within one)
  return out.sort((a, b) => a.pref - b.pref);
}

/** tcx programs on @dev (bpftool net: "tcx" entries), by hook. */
async function tcxPrograms(runner: Runner, dev: string): Promise<{ hook: Hook; name: string }[]> {
  const r = await runner.run('bpftool', ['-j', 'net', 'show', 'dev', dev]);
  if (r.exitCode !== 0) return [];
  const out: { hook: Hook; name: string }[] = [];
  for (const block of JSON.parse(r.stdout || '[]') as { tcx?: { kind?: string; name?: string; prog_id?: number; id?: number }[] }[]) {
    // bpftool names a program after fetching it by id, which needs CAP_SYS_ADMIN
    // (the agent has not): then its id is all there is
    for (const p of block.tcx ?? []) out.push({ hook: p.kind?.includes('egress') ? 'egress' : 'ingress', name: p.name || `id ${p.prog_id ?? p.id ?? '?'}` });
  }
  return out;
}

function describe(f: AnyFilter): string {
  return f.kind === 'bpf' ? `BPF program ${f.prog ?? '?'}` : `${f.kind} filter${f.actions.length ? ` (${f.actions.join(', ')})` : ''}`;
}

/**
 * Programs that run before podtap's on @dev. podtap's filter is at its own
 * preference when attached; otherwise it would take the first free one from
 * PREF_BASE (tc.ts: choosePref), so a foreign filter below that runs first.
 * A foreign filter that joined podtap's own preference runs first too when
 * the kernel lists it ahead of podtap's.
 */
export async function inspectInterface(runner: Runner, dev: string): Promise<Finding[]> {
  const findings: Finding[] = [];
  for (const t of await tcxPrograms(runner, dev)) {
    findings.push({
      check: `interface ${dev} ${t.hook}`,
      severity: 'warn',
      hook: t.hook,
      program: `tcx program ${t.name}`,
      message: `tcx program ${t.name} runs before every tc filter, podtap's included`,
      hint: 'if it redirects packets (a CNI such as Cilium does), podtap never sees them: docs/troubleshooting.md#a-cni-program-that-runs-first',
    });
  }
  for (const hook of ['ingress', 'egress'] as const) {
    const all = await filters(runner, dev, hook);
    const isOurs = (f: AnyFilter) => f.kind === 'bpf' && f.prog !== undefined && isPodtapProgram(f.prog);
    const first = all.findIndex(isOurs);
    const ours = all.filter(isOurs);
    const used = new Set(all.map((f) => f.pref));
    let pref = ours[0]?.pref;
    if (pref === undefined) for (pref = PREF_BASE; used.has(pref); pref++);
    // attached: what runs before podtap's first filter (at a lower preference, or ahead of it at the same one);
    // not attached: what sits below the preference podtap would take
    const before = first >= 0 ? all.slice(0, first) : all.filter((f) => f.pref < pref!);
    for (const f of before) {
      findings.push({
        check: `interface ${dev} ${hook}`,
        severity: 'warn',
        hook,
        program: describe(f),
        message: `${describe(f)} at preference ${f.pref} runs before podtap's (${ours.length ? 'attached at' : 'would take'} preference ${pref})`,
        hint: 'if it redirects or drops packets, podtap never sees them: docs/troubleshooting.md#a-cni-program-that-runs-first',
      });
    }
    if (before.length === 0 && ours.length > 0) findings.push({ check: `interface ${dev} ${hook}`, severity: 'ok', message: `podtap's filter runs first (preference ${pref})` });
  }
  if (findings.length === 0) findings.push({ check: `interface ${dev}`, severity: 'ok', message: 'nothing runs before podtap' });
  return findings;
}

/** The host side of pods' veth pairs in this namespace (podtap's own capture devices left out). */
export async function podVeths(runner: Runner): Promise<string[]> {
  const r = await runner.run('ip', ['-j', 'link', 'show', 'type', 'veth']);
  if (r.exitCode !== 0) return [];
  return (JSON.parse(r.stdout || '[]') as { ifname: string }[]).map((l) => l.ifname).filter((n) => !/^pt[cp][0-9a-f]/.test(n));
}

async function isBpffs(path: string): Promise<boolean> {
  const mounts = await readFile('/proc/self/mounts', 'utf8').catch(() => '');
  return mounts.split('\n').some((l) => {
    const [, mountPoint, type] = l.split(' ');
    return mountPoint === path && type === 'bpf';
  });
}

async function onPath(runner: Runner, tool: string): Promise<boolean> {
  return (await runner.run('sh', ['-c', `command -v ${tool}`], { netnsScoped: false })).exitCode === 0;
}

/** The node checks: tools, bpffs, BTF and the kernel's features (probes pinned under @pinRoot for a moment). */
export async function inspectNode(runner: Runner, opts: { pinRoot: string }): Promise<Finding[]> {
  const findings: Finding[] = [];
  const missing: string[] = [];
  for (const t of REQUIRED_TOOLS) if (!(await onPath(runner, t.tool))) missing.push(`${t.tool} (${t.pkg})`);
  findings.push(missing.length
    ? { check: 'tools', severity: 'fail', message: `missing: ${missing.join(', ')}`, hint: 'the podtap image has them; on a host: scripts/setup.sh' }
    : { check: 'tools', severity: 'ok', message: REQUIRED_TOOLS.map((t) => t.tool).join(', ') });
  const bpffs = await isBpffs(BPFFS);
  findings.push(bpffs
    ? { check: 'bpffs', severity: 'ok', message: `a BPF filesystem is mounted at ${BPFFS}` }
    : { check: 'bpffs', severity: 'fail', message: `no BPF filesystem at ${BPFFS}: programs cannot be pinned`, hint: 'mount -t bpf bpf /sys/fs/bpf, or install the chart with agent.mountBpffs=true' });
  if (!bpffs || missing.length) {
    findings.push({ check: 'kernel', severity: 'warn', message: 'not probed (needs the tools and the BPF filesystem)' });
    return findings;
  }
  const f = await probeKernel(runner, { pinRoot: opts.pinRoot });
  findings.push(f.btf
    ? { check: 'btf', severity: 'ok', message: '/sys/kernel/btf/vmlinux is there' }
    : { check: 'btf', severity: 'fail', message: 'the kernel has no BTF (/sys/kernel/btf/vmlinux)', hint: 'a kernel built with CONFIG_DEBUG_INFO_BTF=y (every major distribution\'s)' });
  const choice = chooseVariant(f);
  const lacks = (Object.entries(f.probes) as [ProbeName, { ok: boolean }][]).filter(([, p]) => !p.ok).map(([n]) => PROBES[n].feature);
  findings.push(choice.ok
    ? { check: 'kernel', severity: 'ok', message: `${f.release}: the data plane runs here${lacks.length ? ` (without ${lacks.join(', ')}: a fallback is used)` : ''}` }
    : { check: 'kernel', severity: 'fail', message: `${f.release} cannot run the data plane: ${choice.missing.map((m) => `lacks ${m.lacks} (${m.neededFor})`).join('; ')}`, hint: 'docs/install.md#requirements' });
  return findings;
}
