/**
 * `podtap features`: what this kernel's BPF offers the data plane, found the
 * way the agent and `podtap sniff` find it when they start (a tiny program
 * per feature), and the variant of the data plane they build for it.
 */
import { parseArgs } from 'node:util';
import { chooseVariant, createRunner, ensureBpffs, PIN_ROOT, PROBES, reprobeKernel, requireCapabilities, requireRoot, requireTools, STATE_DIR, type ProbeName } from '../datapath/index.ts';
import { ExitCode, UserError } from '../util/errors.ts';

const HELP = `Usage: podtap features [--json]

Loads a tiny BPF program per kernel feature the data plane can use (as the
agent and podtap sniff do when they start) and prints what this kernel has,
and which variant of the data plane podtap builds for it, or why it cannot.
The answers are kept for this boot (PODTAP_STATE_DIR, default /run/podtap),
where the agent and podtap sniff then find them instead of probing again.

Options:
  --json   machine-readable output
  --help   this text

Exit codes: 0 the data plane runs here; 8 this kernel cannot run it (the
missing features are named); 3 not root; 4 missing tool.`;

export async function featuresCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }));
  } catch (err) {
    throw new UserError((err as Error).message, { exitCode: ExitCode.usage, hint: 'see podtap features --help' });
  }
  if (values.help) {
    console.log(HELP);
    return ExitCode.ok;
  }
  requireRoot('podtap features');
  await requireCapabilities('podtap features');
  await requireTools();
  const runner = createRunner();
  await ensureBpffs(runner, PIN_ROOT);
  // kept for this boot: the agent or sniffer that starts next need not probe
  const f = await reprobeKernel(runner, { pinRoot: PIN_ROOT, stateDir: STATE_DIR });
  const choice = chooseVariant(f);
  if (values.json) {
    console.log(JSON.stringify({ ...f, ...(choice.ok ? { variant: choice.variant, defines: choice.defines } : { missing: choice.missing }) }, null, 2));
  } else {
    console.log(`kernel ${f.release}`);
    console.log(`  ${f.btf ? 'yes' : 'no '}  BTF (/sys/kernel/btf/vmlinux)`);
    for (const [name, p] of Object.entries(f.probes) as [ProbeName, { ok: boolean; error?: string }][]) {
      console.log(`  ${p.ok ? 'yes' : 'no '}  ${PROBES[name].feature} (${PROBES[name].since})${p.ok ? '' : `: ${p.error}`}`);
    }
    if (choice.ok) {
      console.log('data plane variant:');
      for (const [k, v] of Object.entries(choice.variant)) console.log(`  ${k}: ${v}`);
    } else {
      for (const m of choice.missing) console.log(`unsupported: lacks ${m.lacks}, needed for ${m.neededFor}`);
    }
  }
  return choice.ok ? ExitCode.ok : ExitCode.kernelUnsupported;
}
