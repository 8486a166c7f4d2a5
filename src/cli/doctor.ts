/**
 * `podtap doctor`: why capture fails on this node, or would look Ready and
 * capture nothing (src/datapath/doctor.ts). Run it on the node (or in a node
 * debug pod with the podtap image, as root).
 */
import { parseArgs } from 'node:util';
import { createRunner, inspectInterface, inspectNode, PIN_ROOT, podVeths, requireRoot, type Finding } from '../datapath/index.ts';
import { ExitCode, UserError } from '../util/errors.ts';

const HELP = `Usage: podtap doctor [--dev IFACE]... [--json]

Checks this node for what makes a capture fail, or look Ready and capture
nothing (docs/troubleshooting.md):
  tools      clang, bpftool, tc, ip, nsenter
  bpffs      a BPF filesystem at /sys/fs/bpf (podtap pins there)
  btf        the kernel's BTF (/sys/kernel/btf/vmlinux)
  kernel     the BPF features the data plane needs (as podtap features)
  interface  on every pod veth of this network namespace (or each --dev):
             tcx programs and tc filters that run before podtap's on the
             same hook; a CNI program there that redirects packets takes
             them away before podtap sees them

Changes nothing on the node. Run it as root on the node, or from a node
debug pod (kubectl debug node/NAME --profile=sysadmin --image=<podtap image>).

Options:
  --dev IFACE   check these interfaces only (repeat); default: every veth
  --json        the findings as JSON
  --help        this text

Exit codes: 0 nothing fails (warnings may be printed), 1 a check fails,
3 not root.`;

const MARK = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' } as const;

export async function doctorCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { dev: { type: 'string', multiple: true }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }));
  } catch (err) {
    throw new UserError((err as Error).message, { exitCode: ExitCode.usage, hint: 'see podtap doctor --help' });
  }
  if (values.help) {
    console.log(HELP);
    return ExitCode.ok;
  }
  requireRoot('podtap doctor');
  const runner = createRunner();
  const findings: Finding[] = await inspectNode(runner, { pinRoot: PIN_ROOT });
  const devs = values.dev ?? (await podVeths(runner));
  for (const dev of devs) findings.push(...(await inspectInterface(runner, dev)));
  if (devs.length === 0) findings.push({ check: 'interface', severity: 'ok', message: 'no veth in this network namespace' });
  if (values.json) console.log(JSON.stringify({ findings }, null, 2));
  else {
    for (const f of findings) {
      console.log(`${MARK[f.severity]}  ${f.check}: ${f.message}`);
      if (f.hint && f.severity !== 'ok') console.log(`      ${f.hint}`);
    }
  }
  return findings.some((f) => f.severity === 'fail') ? ExitCode.failure : ExitCode.ok;
}
