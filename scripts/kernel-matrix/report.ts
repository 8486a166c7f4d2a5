/**
 * The matrix's verdicts: each column of the README's kernel table is a set of
 * tests of test/kernel/kernels.test.ts, passed on that kernel or not. The
 * last run is kept in docs/kernel-matrix.json, and the README's table is
 * rendered from it (a unit test checks the two agree), never typed by hand.
 */

/** The test file every kernel runs. */
export const MATRIX_TESTS = 'test/kernel/kernels.test.ts';

export interface Column {
  key: string;
  title: string;
  /** Full names (describe + test) that decide the cell; all must pass. */
  tests: RegExp[];
}

export const COLUMNS: readonly Column[] = [
  { key: 'loads', title: 'loads', tests: [/^the variant podtap builds for this kernel loads: /] },
  { key: 'exact', title: 'mirrors byte-identical', tests: [/^Geneve over IPv4 mirrors every frame/] },
  { key: 'tunnels', title: 'Geneve, VXLAN', tests: [/^Geneve over IPv4 a standard receiver decodes/, /^VXLAN over IPv4 a standard receiver decodes/] },
  { key: 'ipv6', title: 'IPv6 outer', tests: [/^Geneve over IPv6 /] },
  { key: 'frag', title: '65535-byte copies in pieces', tests: [/ a standard receiver decodes \S+ and reassembles the 65535-byte packets/] },
  { key: 'counters', title: 'counters', tests: [/ counts every copy: /] },
  { key: 'lifecycle', title: 'restart, cleanup', tests: [/^restart and cleanup /] },
  { key: 'jumbo', title: '9000-byte uplink (sniff, agent)', tests: [/^what this kernel cannot do a 9000-byte uplink/, /^what this kernel cannot do the agent: /] },
  // either test, by what the kernel has: mirrored, or the kernel has no SCTP
  { key: 'sctp', title: 'SCTP, CRC32c offloaded', tests: [/^SCTP, its CRC32c offloaded (mirrors every SCTP packet|this kernel has no SCTP)/] },
];

/** The test whose pass means the kernel has no SCTP at all (kernels.test.ts). */
const NO_SCTP = /^SCTP, its CRC32c offloaded this kernel has no SCTP/;

/** vitest's JSON reporter, the parts read here. */
export interface VitestJson {
  testResults: { name: string; message?: string; assertionResults: { fullName: string; status: string; failureMessages?: string[] }[] }[];
}

/** `podtap features --json`, the parts read here. */
export interface FeaturesJson {
  release: string;
  probes: Record<string, { ok: boolean }>;
  variant?: Record<string, string>;
}

/** 'absent': the kernel lacks what the column tests (SCTP), and its test proved that was the only reason. */
export type Cell = 'pass' | 'refused' | 'absent' | 'fail' | 'not run';

export interface KernelRow {
  id: string;
  release: string;
  /** Debian package and version, or "this machine". */
  source: string;
  seenOn: string;
  variant: Record<string, string>;
  cells: Record<string, Cell>;
  bootSeconds: number;
  testSeconds: number;
  /** This machine's mean 1-minute load average while the kernel ran (other work slows TCG down). */
  load?: number;
  /** CPU seconds qemu used for the kernel (boot and tests): its work, whatever the load. */
  cpuSeconds?: number;
  /** Why the kernel was booted a second time (a Node process in the guest died on its own on the first: guestCrash); the row is the second boot's. */
  retried?: string;
}

export interface MatrixRecord {
  /** When the run was made (UTC date). */
  date: string;
  /** How the kernels ran: the emulator and the machine. */
  how: string;
  kernels: KernelRow[];
}

/** Each column's verdict from one kernel's test results. */
export function cells(results: VitestJson | undefined, features: FeaturesJson | undefined): Record<string, Cell> {
  const tests = (results?.testResults ?? []).flatMap((f) => f.assertionResults);
  const out: Record<string, Cell> = {};
  for (const col of COLUMNS) {
    const mine = tests.filter((t) => col.tests.some((re) => re.test(t.fullName)));
    const covered = col.tests.every((re) => mine.some((t) => re.test(t.fullName)));
    if (!covered) out[col.key] = 'not run';
    else if (mine.some((t) => t.status !== 'passed')) out[col.key] = 'fail';
    // the jumbo test passes either way: say which way
    else if (col.key === 'jumbo' && features && !features.probes.xdp_frags?.ok) out[col.key] = 'refused';
    else if (mine.some((t) => NO_SCTP.test(t.fullName))) out[col.key] = 'absent';
    else out[col.key] = 'pass';
  }
  return out;
}

/**
 * Why a Node process in the guest died on its own, from the guest's console:
 * V8 failing one of its own checks ("# Fatal error in FILE, line N", "#
 * Check failed: ...", a native stack through V8_Fatal), or a crash signal
 * that test/helpers/capture.ts names ("process exited (SIGSEGV: ...)").
 * Else undefined. JavaScript cannot do either to Node, and podtap loads no
 * native addon: such a death is the runtime's (or the emulator's), and the
 * matrix boots that kernel once more rather than report it as podtap's.
 * Seen in 5.10's guest on 2026-12-06, in two suite runs in a row, at the same
 * step (the first `podtap sniff` of the boot, before it asked for its
 * object): once V8's check in ThreadIsolation::StartOfJitAllocationAt, its
 * callers in V8's heap code by the nearest exported symbols (the family of
 * nodejs/node#64500), once a signal. Neither came back in four runs of that
 * kernel alone: quiet, under load, and beside the host's kernel tests.
 * SIGKILL and SIGTERM are not crashes: someone sent them.
 */
export function guestCrash(console: string): string | undefined {
  const text = console.replace(/\x1b\[[0-9;]*m/g, '');
  if (/V8_Fatal\(/.test(text)) {
    const m = /# Fatal error in [^\n]*\n#\s*([^\n]+)/.exec(text);
    return `a Node process crashed inside V8 (${(m?.[1] ?? 'V8_Fatal').trim()})`;
  }
  const sig = /process exited \((SIG(?:SEGV|BUS|ILL|TRAP|ABRT|FPE|SYS))\b/.exec(text);
  return sig ? `a Node process died of ${sig[1]}` : undefined;
}

/** Every failed or missing test of a run, by full name. */
export function failures(results: VitestJson | undefined): string[] {
  if (!results) return ['(no results: the tests did not finish)'];
  const out: string[] = [];
  for (const f of results.testResults) {
    if (!f.assertionResults.length && f.message) out.push(`${f.name}: ${f.message.split('\n')[0]}`);
    for (const t of f.assertionResults) if (t.status !== 'passed') out.push(`${t.fullName}: ${(t.failureMessages?.[0] ?? t.status).split('\n')[0]}`);
  }
  return out;
}

const MARK: Record<Cell, string> = { pass: '✓', refused: 'refused¹', absent: 'no SCTP³', fail: '✗', 'not run': '–' };

function variantText(v: Record<string, string>): string {
  const short: Record<string, string> = {
    bpf_loop: 'bpf_loop', 'bounded loop of a global function': 'bounded loop',
    'atomic fetch-and-add': 'atomics', 'spin lock': 'spin lock',
    bpf_cast_to_kern_ctx: 'kfunc', bpf_probe_read_kernel: 'probe_read',
  };
  const parts = [v.loop, v.counters, v.skb].map((x) => (x ? short[x] ?? x : '?'));
  parts.push(v.carrier?.startsWith('xdp.frags') ? 'xdp.frags' : 'xdp');
  return parts.join(', ');
}

/** The README's table (markdown), from a record. */
export function renderTable(r: MatrixRecord): string {
  const head = ['kernel', 'Debian package', 'variant', ...COLUMNS.map((c) => c.title), 'boot, tests (s)', 'qemu CPU (s)', 'machine load²'];
  const rows = r.kernels.map((k) => [
    `${k.id} (\`${k.release}\`)`,
    k.source,
    variantText(k.variant),
    ...COLUMNS.map((c) => MARK[k.cells[c.key] ?? 'not run']),
    `${k.bootSeconds ? k.bootSeconds.toFixed(0) : '–'}, ${k.testSeconds.toFixed(0)}${k.retried ? '⁴' : ''}`,
    k.cpuSeconds === undefined ? '–' : k.cpuSeconds.toFixed(0),
    k.load === undefined ? '–' : k.load.toFixed(1),
  ]);
  const line = (cols: string[]) => `| ${cols.join(' | ')} |`;
  return [
    line(head),
    line(head.map(() => '---')),
    ...rows.map(line),
    '',
    `${r.how}, ${r.date}. Variant: how the pieces are cut (bpf_loop or a bounded loop over a global function), how the shared counters are updated (atomics or a spin lock), how a copy's checksum state is read (the kfunc or bpf_probe_read_kernel), and the carrier's XDP program (with or without frags).`,
    '¹ Refused as designed: without multi-buffer XDP (xdp.frags) veth takes XDP only while its peer\'s MTU fits a page, so `podtap sniff` exits 8 and the agent reports `KernelUnsupported`, naming the kernel and the feature; uplinks up to about 3,500 bytes work.',
    '³ This kernel is built without SCTP (its test proves that is the only reason), so nothing of podtap is at stake there.',
    '² The mean 1-minute load average of the machine running the matrix while that kernel ran: other work on its 2 cores slows TCG down about in proportion, while the CPU time qemu used is the work of the guest whatever the load.',
    ...r.kernels.filter((k) => k.retried).map((k) => `⁴ ${k.id}: booted twice; on the first boot ${k.retried}. The row is the second boot's.`),
  ].join('\n');
}

export const README_BEGIN = '<!-- kernel-matrix: generated by scripts/kernel-matrix.sh --write from docs/kernel-matrix.json; do not edit -->';
export const README_END = '<!-- /kernel-matrix -->';

/** The table between the markers of @readme, or undefined. */
export function readmeTable(readme: string): string | undefined {
  const a = readme.indexOf(README_BEGIN);
  const b = readme.indexOf(README_END);
  if (a < 0 || b < a) return undefined;
  return readme.slice(a + README_BEGIN.length, b).trim();
}

/** @readme with the table between its markers replaced. */
export function withTable(readme: string, table: string): string {
  const a = readme.indexOf(README_BEGIN);
  const b = readme.indexOf(README_END);
  if (a < 0 || b < a) throw new Error(`README.md has no kernel table markers (${README_BEGIN} … ${README_END})`);
  return `${readme.slice(0, a + README_BEGIN.length)}\n${table}\n${readme.slice(b)}`;
}
