/** `podtap cleanup`: remove everything podtap put on this host. */
import { parseArgs } from 'node:util';
import { cleanupAll, leftovers, requireRoot, requireTools } from '../datapath/index.ts';
import { ExitCode } from '../util/errors.ts';

const HELP = `Usage: podtap cleanup [--check]

Removes, from the current network namespace and the BPF filesystem:
  - every tc filter running a podtap program, on every interface
  - podtap's capture devices (ptc*/ptp* veth pairs)
  - every pin under /sys/fs/bpf/podtap
Traffic of the tapped interfaces is not interrupted.

Options:
  --check   only list what is left; exit 1 if anything is
  --help    this text`;

export async function cleanupCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { check: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    console.log(HELP);
    return ExitCode.ok;
  }
  requireRoot('podtap cleanup');
  await requireTools();
  if (values.check) {
    const left = await leftovers();
    for (const l of left) console.log(l);
    console.log(left.length ? `${left.length} podtap object(s) left` : 'nothing of podtap is left');
    return left.length ? ExitCode.failure : ExitCode.ok;
  }
  const r = await cleanupAll();
  console.log(`removed ${r.filters} filter(s), ${r.devices} capture device(s), and the pins`);
  return ExitCode.ok;
}
