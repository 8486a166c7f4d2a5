/**
 * clsact + cls_bpf filters through tc. A podtap filter is recognised by its
 * program name (pt_tap_* / pt_tunnel); which object it belongs to, by program id.
 * Filters are attached by reference to pinned programs (object-pinned), so all
 * interfaces share one program and one set of maps.
 */
import type { Runner } from './exec.ts';

export type Hook = 'ingress' | 'egress';

export interface TcFilter {
  dev: string;
  hook: Hook;
  pref: number;
  handle: string;
  progId: number;
  progName: string;
}

/** podtap's filters take preferences from this base upwards (one per object). */
export const PREF_BASE = Number(process.env.PODTAP_TC_PREF_BASE ?? 1);
export const PREF_SPAN = 4096;

export function isPodtapProgram(name: string): boolean {
  return /^pt_(tap_(ingress|egress)|tunnel|emit)$/.test(name);
}

/** The BPF part of a filter as `tc -j filter show` prints it. */
export interface TcBpfOptions {
  handle?: string;
  bpf_name?: string;
  prog?: { id: number; name?: string };
}

/**
 * The program's name of a bpf filter. tc prints it only after fetching the
 * program by id (BPF_PROG_GET_FD_BY_ID), which the kernel allows only to
 * CAP_SYS_ADMIN, which the agent does not have; then the filter's own name
 * remains, which tc set at attach time from the pinned file's name
 * ("pt_tap_ingress:[*fsobj]" for object-pinned …/pt_tap_ingress): podtap pins
 * each program under its own name.
 */
export function filterProgName(o: TcBpfOptions | undefined): string | undefined {
  return o?.prog?.name ?? (o?.bpf_name?.endsWith(':[*fsobj]') ? o.bpf_name.slice(0, -':[*fsobj]'.length) : undefined);
}

export async function ensureClsact(runner: Runner, dev: string): Promise<void> {
  const r = await runner.run('tc', ['qdisc', 'add', 'dev', dev, 'clsact']);
  if (r.exitCode !== 0 && !/File exists|Exclusivity flag on/.test(r.stderr)) {
    throw new Error(`tc qdisc add dev ${dev} clsact: ${r.stderr.trim()}`);
  }
}

export async function listFilters(runner: Runner, dev: string, hook: Hook): Promise<TcFilter[]> {
  const r = await runner.run('tc', ['-j', 'filter', 'show', 'dev', dev, hook]);
  if (r.exitCode !== 0) {
    if (/Cannot find device|No such device|Invalid handle|Cannot find specified qdisc/.test(r.stderr)) return [];
    throw new Error(`tc filter show dev ${dev} ${hook}: ${r.stderr.trim()}`);
  }
  const rows = JSON.parse(r.stdout || '[]') as {
    pref: number;
    kind: string;
    options?: TcBpfOptions;
  }[];
  return rows
    .filter((f) => f.kind === 'bpf' && f.options?.prog && f.options.handle)
    .map((f) => ({
      dev,
      hook,
      pref: f.pref,
      handle: f.options!.handle!,
      progId: f.options!.prog!.id,
      progName: filterProgName(f.options) ?? '',
    }));
}

/** Attach (or atomically replace, when @pref/@handle exist) a pinned program. */
export async function replaceFilter(runner: Runner, dev: string, hook: Hook, pref: number, progPath: string): Promise<void> {
  await runner.check('tc', [
    'filter', 'replace', 'dev', dev, hook, 'protocol', 'all', 'pref', String(pref), 'handle', '0x1',
    'bpf', 'direct-action', 'object-pinned', progPath,
  ]);
}

/**
 * Delete exactly one filter: its preference, handle and kind. Not the whole
 * preference: `tc filter add … pref P` of someone else at a preference podtap
 * holds joins podtap's classifier there (cls_bpf keeps a list of programs per
 * preference), and `tc filter del … pref P` would take theirs with ours
 * (test/kernel/doctor.test.ts). The classifier goes when its last filter does.
 */
export async function deleteFilter(runner: Runner, f: Pick<TcFilter, 'dev' | 'hook' | 'pref' | 'handle'>): Promise<void> {
  const r = await runner.run('tc', ['filter', 'del', 'dev', f.dev, f.hook, 'protocol', 'all', 'pref', String(f.pref), 'handle', f.handle, 'bpf']);
  if (r.exitCode !== 0 && !/Cannot find device|No such device|Invalid handle|Filter with specified priority\/protocol not found|Cannot find specified filter chain|Specified filter handle not found|Parent Qdisc doesn't exist/.test(r.stderr)) {
    throw new Error(`tc filter del dev ${f.dev} ${f.hook} pref ${f.pref} handle ${f.handle}: ${r.stderr.trim()}`);
  }
}

/** A preference on @dev/@hook for an object whose programs have @ownIds: the one it
 *  already uses, else the first one no other filter uses. */
export function choosePref(existing: TcFilter[], ownIds: Set<number>): number {
  const mine = existing.find((f) => ownIds.has(f.progId));
  if (mine) return mine.pref;
  const used = new Set(existing.map((f) => f.pref));
  for (let p = PREF_BASE; p < PREF_BASE + PREF_SPAN; p++) if (!used.has(p)) return p;
  throw new Error('no free tc preference for podtap');
}
