/**
 * The agent's part of `podtap doctor`, on the interfaces it taps: a program
 * of someone else (a CNI's tcx program, a tc filter at a lower preference or
 * ahead of podtap's at its own) that runs before podtap's on a hook podtap
 * uses can redirect or drop a packet before podtap sees it, and the capture
 * would look Attached while missing it. The agent reports that as Degraded
 * with reason ForeignProgramFirst, naming the program, the interface and the
 * hook; the controller carries it to the policy's conditions
 * (docs/troubleshooting.md).
 */
import { inspectInterface, type Finding, type Hook, type Runner } from '../datapath/index.ts';

export interface TappedInterface {
  name: string;
  pod?: string | undefined;
}

export interface ForeignProgram {
  dev: string;
  pod?: string | undefined;
  hook: Hook;
  message: string;
}

const MAX_LISTED = 3;

/** The findings of one interface that matter to a capture on @hooks: programs running first there. */
export function foreignOf(dev: string, pod: string | undefined, findings: readonly Finding[], hooks: readonly Hook[]): ForeignProgram[] {
  return findings
    .filter((f) => f.severity === 'warn' && f.hook !== undefined && hooks.includes(f.hook))
    .map((f) => ({ dev, ...(pod ? { pod } : {}), hook: f.hook!, message: f.message }));
}

/** Each tapped interface inspected; what runs before podtap on the hooks it uses. */
export async function foreignPrograms(runner: Runner, targets: readonly TappedInterface[], hooks: readonly Hook[]): Promise<ForeignProgram[]> {
  const out: ForeignProgram[] = [];
  for (const t of targets) out.push(...foreignOf(t.name, t.pod, await inspectInterface(runner, t.name), hooks));
  return out;
}

/** The status message: each program with its interface and hook, the first few, then how many more. */
export function describeForeign(found: readonly ForeignProgram[]): string {
  const shown = found.slice(0, MAX_LISTED).map((f) => `${f.dev}${f.pod ? ` (pod ${f.pod})` : ''} ${f.hook}: ${f.message}`);
  const more = found.length > MAX_LISTED ? `; and ${found.length - MAX_LISTED} more` : '';
  return `${shown.join('; ')}${more}; packets it redirects or drops are not captured`;
}
