/** The kernel matrix's verdicts and the README's table, which is generated, never typed. */
import { readFile } from 'node:fs/promises';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { checkClangArgs, checkTsharkArgs } from '../../../scripts/kernel-matrix/host-tools.ts';
import { parseShowDepends } from '../../../scripts/kernel-matrix/initramfs.ts';
import { imagePackage } from '../../../scripts/kernel-matrix/kernels.ts';
import { waitForLine } from '../../helpers/capture.ts';
import { cells, COLUMNS, readmeTable, renderTable, guestCrash, withTable, type KernelRow, type MatrixRecord, type VitestJson } from '../../../scripts/kernel-matrix/report.ts';

const ROOT = new URL('../../../', import.meta.url).pathname;

function results(names: [string, string][]): VitestJson {
  return { testResults: [{ name: 'test/kernel/kernels.test.ts', assertionResults: names.map(([fullName, status]) => ({ fullName, status })) }] };
}
const ALL: [string, string][] = [
  ['the variant podtap builds for this kernel loads: Geneve, outer IPv4', 'passed'],
  ['Geneve over IPv4 mirrors every frame of ICMP, UDP and TCP, in IPv4 and IPv6, byte-identical', 'passed'],
  ['Geneve over IPv4 a standard receiver decodes Geneve and reassembles the 65535-byte packets from their pieces', 'passed'],
  ['Geneve over IPv4 counts every copy: all matched mirrored, big ones cut into pieces, nothing lost', 'passed'],
  ['VXLAN over IPv4 a standard receiver decodes VXLAN and reassembles the 65535-byte packets from their pieces', 'passed'],
  ['Geneve over IPv6 mirrors every frame of ICMP, UDP and TCP, in IPv4 and IPv6, byte-identical', 'passed'],
  ['restart and cleanup a sniffer killed with -9 leaves the capture running; the next adopts it without a second filter and removes everything', 'passed'],
  ['what this kernel cannot do a 9000-byte uplink: served where veth has multi-buffer XDP, else refused naming the kernel and the feature', 'passed'],
  ['what this kernel cannot do the agent: a policy with a 9000-byte MTU is Ready where the kernel serves it, else refused on the node as KernelUnsupported', 'passed'],
  ['SCTP, its CRC32c offloaded mirrors every SCTP packet byte-identical through an uplink that cannot compute CRC32c, and a standard receiver reassembles them', 'passed'],
];
const NO_SCTP: [string, string][] = [...ALL.filter(([n]) => !n.startsWith('SCTP')), ['SCTP, its CRC32c offloaded this kernel has no SCTP: OSError: [Errno 93] Protocol not supported', 'passed']];
const frags = (ok: boolean) => ({ release: 'x', probes: { xdp_frags: { ok } } });

describe('the verdict of each column', () => {
  it.each([
    { description: 'every test passed', input: { r: results(ALL), f: frags(true) }, expected: Object.fromEntries(COLUMNS.map((c) => [c.key, 'pass'])) },
    { description: 'the jumbo test passed by refusing, without xdp.frags', input: { r: results(ALL), f: frags(false) }, expected: { jumbo: 'refused', exact: 'pass' } },
    {
      description: 'a failed test fails its columns',
      input: { r: results(ALL.map(([n, s]) => [n, n.startsWith('VXLAN') ? 'failed' : s])), f: frags(true) },
      expected: { tunnels: 'fail', frag: 'fail', exact: 'pass' },
    },
    { description: 'a kernel without SCTP: absent, not passed', input: { r: results(NO_SCTP), f: frags(true) }, expected: { sctp: 'absent', exact: 'pass' } },
    { description: 'a kernel without SCTP whose test failed', input: { r: results(NO_SCTP.map(([n, s]) => [n, n.startsWith('SCTP') ? 'failed' : s])), f: frags(true) }, expected: { sctp: 'fail' } },
    { description: 'no results: nothing ran', input: { r: undefined, f: undefined }, expected: { loads: 'not run', jumbo: 'not run' } },
    { description: 'a column whose test is missing did not run', input: { r: results(ALL.filter(([n]) => !n.startsWith('restart'))), f: frags(true) }, expected: { lifecycle: 'not run' } },
  ])('$description', ({ input, expected }) => {
    expect(cells(input.r, input.f)).toMatchObject(expected);
  });
});

// the guest's console of 2026-12-06 (run 29294, 5.10), shortened: vitest colours it
const V8_CRASH = [
  ' \x1b[2m\x1b[90m↓\x1b[39m\x1b[22m kernel test/kernel/kernels.test.ts > Geneve over IPv4 > mirrors every frame',
  '\x1b[31m\x1b[1mError\x1b[22m: process exited (undefined) before /podtap: tapping/: ',
  '#', '# Fatal error in , line 0', '# Check failed: it->second.Size() > offset.', '#', '#', '#',
  '#FailureMessage Object: 0x7ffed136a2e0', '----- Native stack trace -----',
  ' 1: 0x9dde61  [/var/tmp/suite-n/node_modules/.bin/node]',
  ' 2: 0x27b2103 V8_Fatal(char const*, ...) [/var/tmp/suite-n/node_modules/.bin/node]',
  ' 3: 0xd6bbe2  [/var/tmp/suite-n/node_modules/.bin/node]',
].join('\n');

describe('a Node process in the guest dying on its own (the matrix boots the kernel once more)', () => {
  it.each([
    { description: "V8's fatal-error report, through vitest's colours", input: V8_CRASH, expected: 'a Node process crashed inside V8 (Check failed: it->second.Size() > offset.)' },
    { description: 'a crash signal, as the test helper names it', input: 'Error: process exited (SIGSEGV: Segmentation fault) before /podtap: tapping/: ', expected: 'a Node process died of SIGSEGV' },
    { description: 'SIGKILL: someone killed it, not a crash', input: 'Error: process exited (SIGKILL: Forced termination) before /podtap: tapping/: ', expected: undefined },
    { description: 'an exit code', input: 'Error: process exited (1) before /podtap: tapping/: podtap: no such interface', expected: undefined },
    { description: 'a test that failed on its own', input: 'FAIL test/kernel/kernels.test.ts > Geneve over IPv4\nAssertionError: expected 3 to be 4\npodtap-guest: done 1', expected: undefined },
    { description: 'the words without V8_Fatal in a native stack (a test printing them)', input: 'expected "# Fatal error in , line 0\n# Check failed: x" to be ""', expected: undefined },
    { description: 'a clean run', input: 'podtap-guest: done 0', expected: undefined },
  ])('$description', ({ input, expected }) => {
    expect(guestCrash(input)).toBe(expected);
  });

  it("reads the test helper's own words for a process that dies of a signal", async () => {
    const p = execa('sh', ['-c', 'kill -SEGV $$'], { reject: false });
    const err = await waitForLine(p, /never/, 10_000).then(() => undefined, (e: unknown) => e as Error);
    expect(guestCrash(String(err?.message))).toBe('a Node process died of SIGSEGV');
  });

  it('marks the row booted twice and says why under the table', () => {
    const row = (id: string, retried?: string): KernelRow => ({
      id, release: `r-${id}`, source: 's', seenOn: 'x', variant: {}, cells: {}, bootSeconds: 5, testSeconds: 300, ...(retried ? { retried } : {}),
    });
    const table = renderTable({ date: 'd', how: 'h', kernels: [row('5.10', 'a Node process crashed inside V8 (Check failed: x.)'), row('6.1')] });
    expect(table).toMatch(/\| 5, 300⁴ \|/);
    expect(table.split('\n').find((l) => l.startsWith('| 6.1'))).not.toContain('⁴');
    expect(table).toContain('⁴ 5.10: booted twice; on the first boot a Node process crashed inside V8 (Check failed: x.). The row is the second boot\'s.');
    expect(renderTable({ date: 'd', how: 'h', kernels: [row('6.1')] })).not.toContain('⁴');
  });
});

describe('the README', () => {
  it('holds the table of the last run (docs/kernel-matrix.json), between its markers', async () => {
    const record = JSON.parse(await readFile(`${ROOT}docs/kernel-matrix.json`, 'utf8')) as MatrixRecord;
    const readme = await readFile(`${ROOT}README.md`, 'utf8');
    expect(readmeTable(readme), 'README.md: run scripts/kernel-matrix.sh --write').toBe(renderTable(record));
    // every kernel the issue names, and this machine's, every column passed or refused as designed
    expect(record.kernels.map((k) => k.id).sort()).toEqual(['5.10', '6.1', '6.12', 'host']);
    // (absent: only the host's kernel, built without SCTP, and only for SCTP)
    for (const k of record.kernels) for (const c of COLUMNS) expect(['pass', 'refused', ...(c.key === 'sctp' && k.id === 'host' ? ['absent'] : [])], `${k.id} ${c.key}`).toContain(k.cells[c.key]);
  });

  it('replaces only what is between the markers', () => {
    const table = renderTable({ date: 'd', how: 'h', kernels: [] });
    const readme = withTable('a\n<!-- kernel-matrix: generated by scripts/kernel-matrix.sh --write from docs/kernel-matrix.json; do not edit -->\nold\n<!-- /kernel-matrix -->\nb', table);
    expect(readme.startsWith('a\n')).toBe(true);
    expect(readme.endsWith('\n<!-- /kernel-matrix -->\nb')).toBe(true);
    expect(readmeTable(readme)).toBe(table);
  });
});

describe("the guest's clang, run on the host", () => {
  const repo = ROOT.replace(/\/$/, '');
  it.each([
    {
      description: "podtap's own compile",
      input: ['-O2', '-g', '-target', 'bpf', '-Wall', '-Werror', '-Wno-unused-function', '-I/usr/include/x86_64-linux-gnu', '-DPT_MTU=1500', '-DPT_PORT_RANGES={{0,0}}', '-c', `${repo}/bpf/podtap.bpf.c`],
      expected: 'ok',
    },
    { description: 'a relative source in the repository', input: ['-O2', '-g', '-target', 'bpf', '-c', 'test/kernel/bpf/witness.bpf.c'], expected: 'ok' },
    { description: 'clang --version', input: ['--version'], expected: 'ok' },
    { description: 'a plugin', input: ['-Xclang', '-load', '-Xclang', '/tmp/x.so', '-c', `${repo}/bpf/podtap.bpf.c`], expected: /argument not allowed: -Xclang/ },
    { description: 'a source outside the repository', input: ['-c', '/etc/shadow'], expected: /source outside the repository/ },
    { description: 'a climb out of the repository', input: ['-c', '../../../etc/passwd.c'], expected: /source outside the repository/ },
    { description: 'another target', input: ['-target', 'x86_64', '-c', `${repo}/bpf/podtap.bpf.c`], expected: /argument not allowed: -target/ },
    { description: 'no source', input: ['-O2'], expected: /no -c SOURCE/ },
  ])('$description', ({ input, expected }) => {
    const r = checkClangArgs({ args: input, cwd: repo }, repo, '/share/clang/1.req/out.o');
    if (expected === 'ok') expect(r).toHaveProperty('args');
    else expect('error' in r ? r.error : '').toMatch(expected);
  });
});

describe("the guest's tshark, run on the host", () => {
  const input = '/share/runs/1/spool/1.req/input';
  it.each([
    {
      description: "readFrames' fields",
      input: ['-r', '/tmp/x/veth.pcap', '-o', 'frame.generate_md5_hash:TRUE', '-T', 'fields', '-E', 'separator=\t', '-e', 'frame.len', '-e', 'frame.md5_hash', '-Y', 'icmp && !arp'],
      expected: ['-r', input, '-o', 'frame.generate_md5_hash:TRUE', '-T', 'fields', '-E', 'separator=\t', '-e', 'frame.len', '-e', 'frame.md5_hash', '-Y', 'icmp && !arp'],
    },
    { description: 'the version', input: ['-v'], expected: ['-v'] },
    { description: 'a Lua script', input: ['-X', 'lua_script:/tmp/x.lua', '-r', 'a.pcap'], expected: /argument not allowed: -X/ },
    { description: 'writing a file', input: ['-r', 'a.pcap', '-w', '/etc/x'], expected: /argument not allowed: -w/ },
    { description: 'a second file to read', input: ['-r', 'a.pcap', '-r', '/etc/shadow'], expected: /argument not allowed: -r/ },
    { description: 'a preference naming a file', input: ['-r', 'a.pcap', '-o', 'tls.keylog_file:/etc/shadow'], expected: /argument not allowed: -o/ },
    { description: 'statistics (-z)', input: ['-r', 'a.pcap', '-z', 'io,phs'], expected: /argument not allowed: -z/ },
    { description: 'an output format other than fields', input: ['-r', 'a.pcap', '-T', 'pdml'], expected: /argument not allowed: -T/ },
    { description: 'no file', input: ['-T', 'fields', '-e', 'frame.len'], expected: /no -r FILE/ },
    { description: 'a dangling option', input: ['-r', 'a.pcap', '-Y'], expected: /argument not allowed: -Y/ },
  ])('$description', ({ input: args, expected }) => {
    const r = checkTsharkArgs({ args, cwd: '/' }, input);
    if (Array.isArray(expected)) expect(r).toEqual({ args: expected });
    else expect('error' in r ? r.error : '').toMatch(expected);
  });
});

describe("the kernel packages' metadata", () => {
  it.each([
    { description: 'a suite metapackage', input: 'linux-image-6.1.0-50-cloud-amd64 (= 6.1.176-1)', expected: 'linux-image-6.1.0-50-cloud-amd64' },
    { description: 'with alternatives and others', input: 'linux-image-6.12.117+deb13-cloud-amd64 (= 6.12.117-1), initramfs-tools', expected: 'linux-image-6.12.117+deb13-cloud-amd64' },
    { description: 'nothing of the kind', input: 'libc6', expected: undefined },
  ])('the image package of $description', ({ input, expected }) => {
    expect(imagePackage(input)).toBe(expected);
  });

  it('modprobe --show-depends: the files to load, in order, built-ins left out', () => {
    const out = 'insmod /k/lib/modules/6.1/kernel/fs/fuse/fuse.ko \ninsmod /k/lib/modules/6.1/kernel/fs/fuse/virtiofs.ko.xz \nbuiltin virtio\n';
    expect(parseShowDepends(out)).toEqual(['/k/lib/modules/6.1/kernel/fs/fuse/fuse.ko', '/k/lib/modules/6.1/kernel/fs/fuse/virtiofs.ko.xz']);
  });
});

describe("the matrix's shell scripts", () => {
  it('pass shellcheck (the guest runs them with no one watching)', async () => {
    const files = ['scripts/kernel-matrix.sh', 'scripts/kernel-matrix/initramfs-init.sh', 'scripts/kernel-matrix/guest-init.sh', 'scripts/kernel-matrix/guest-bin/host-tool', 'scripts/test.sh'];
    const r = await execa('shellcheck', files, { cwd: ROOT, reject: false });
    expect(r.stdout, 'shellcheck (scripts/setup.sh installs it)').toBe('');
    expect(r.exitCode).toBe(0);
  });
});
