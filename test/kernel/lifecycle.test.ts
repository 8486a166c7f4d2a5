/**
 * Lifecycle of the standalone sniffer: a kill -9 leaves the capture running
 * (the kernel holds the programs), a restart adopts it with exactly one filter
 * per hook and no gap, and cleanup removes every trace. Plus the CLI's clear,
 * non-zero exits.
 */
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { leftovers } from '../../src/datapath/cleanup.ts';
import { sniffLeftovers } from '../helpers/bpf.ts';
import { createRunner } from '../../src/datapath/exec.ts';
import { ExitCode } from '../../src/util/errors.ts';
import { podtap, readFrames, waitForLine } from '../helpers/capture.ts';
import { policyYaml, startCollector } from '../helpers/harness.ts';
import { createTopology, inNs, NODE_BIN, type Topology } from '../helpers/netns.ts';

let topo: Topology | undefined;
afterEach(async () => {
  if (topo) {
    await execa('nsenter', [`--net=/run/netns/${topo.node}`, NODE_BIN, 'src/cli/main.ts', 'cleanup'], { reject: false });
    await topo.destroy();
  }
  topo = undefined;
});

async function tapFilters(ns: string, dev: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const hook of ['ingress', 'egress']) {
    const rows = JSON.parse(await inNs(ns, 'tc', ['-j', 'filter', 'show', 'dev', dev, hook])) as { options?: { prog?: { name: string } } }[];
    out[hook] = rows.filter((r) => r.options?.prog?.name.startsWith('pt_tap')).length;
  }
  return out;
}

describe('sniffer lifecycle', () => {
  it('survives kill -9, is adopted on restart without duplicates or a gap, and cleans up completely', async () => {
    topo = await createTopology({ pods: 2 });
    const [p1, p2] = topo.pods as [Topology['pods'][0], Topology['pods'][0]];
    const col = await startCollector(topo);
    const file = join(col.dir, 'p.yaml');
    await writeFile(file, policyYaml({ collector: { address: topo.collector.ip4 }, filter: { protocols: ['ICMP'] } }, topo.prefix));
    const args = ['sniff', '--policy', file, '--iface', p1.hostIf, '--quiet'];

    const first = podtap(topo.node, args);
    await waitForLine(first, /podtap: tapping/, 60_000);
    // pings all along: none may be missed across the crash and the restart
    const pings = execa('nsenter', [`--net=/run/netns/${p1.ns}`, 'ping', '-c', '60', '-i', '0.1', p2.ip4], { reject: false });
    await new Promise((r) => setTimeout(r, 1500));
    first.kill('SIGKILL');
    await first;
    expect(await tapFilters(topo.node, p1.hostIf)).toEqual({ ingress: 1, egress: 1 });
    await new Promise((r) => setTimeout(r, 1000));

    const second = podtap(topo.node, args);
    await waitForLine(second, /podtap: tapping/, 60_000);
    expect(await tapFilters(topo.node, p1.hostIf)).toEqual({ ingress: 1, egress: 1 });
    const p = await pings;
    expect(p.stdout).toMatch(/60 packets transmitted, 60 received/);
    second.kill('SIGINT');
    const s2 = await second;
    expect(s2.exitCode).toBe(0);
    await new Promise((r) => setTimeout(r, 300));
    col.proc.kill('SIGTERM');
    await col.proc;

    // every echo request and reply is in the capture once
    const pcapng = (await import('node:fs')).readdirSync(col.dir, { recursive: true }).map(String).find((f) => f.endsWith('.pcapng'))!;
    const frames = await readFrames(join(col.dir, pcapng), 'icmp');
    expect(frames).toHaveLength(120);
    // the restarted sniffer removed what it (and its predecessor) attached
    expect(await leftovers({ runner: createRunner(topo.node) })).toEqual([]);
  });

  it('Ctrl-C the moment it says tapping (before its first counters are read) detaches everything and exits 0', async () => {
    topo = await createTopology({ pods: 1 });
    const col = await startCollector(topo);
    const file = join(col.dir, 'p.yaml');
    await writeFile(file, policyYaml({ collector: { address: topo.collector.ip4 } }, topo.prefix));
    const before = await sniffLeftovers(createRunner(topo.node));
    const s = podtap(topo.node, ['sniff', '--policy', file, '--iface', topo.pods[0]!.hostIf, '--quiet']);
    await waitForLine(s, /podtap: tapping/, 60_000);
    s.kill('SIGINT');
    const r = await s;
    col.proc.kill('SIGTERM');
    await col.proc;
    expect([r.exitCode, r.signal], String(r.all)).toEqual([0, undefined]);
    expect(String(r.all)).toMatch(/podtap: stopped \(SIGINT\)/);
    expect(await sniffLeftovers(createRunner(topo.node))).toEqual(before);
  });

  it('podtap cleanup removes what a killed sniffer left', async () => {
    topo = await createTopology({ pods: 1 });
    const col = await startCollector(topo);
    const file = join(col.dir, 'p.yaml');
    await writeFile(file, policyYaml({ collector: { address: topo.collector.ip4 } }, topo.prefix));
    const s = podtap(topo.node, ['sniff', '--policy', file, '--iface', topo.pods[0]!.hostIf, '--quiet']);
    await waitForLine(s, /podtap: tapping/, 60_000);
    s.kill('SIGKILL');
    await s;
    col.proc.kill('SIGTERM');
    await col.proc;
    const runner = createRunner(topo.node);
    expect((await leftovers({ runner })).length).toBeGreaterThan(0);
    const check = await podtap(topo.node, ['cleanup', '--check']);
    expect(check.exitCode).toBe(1);
    const r = await podtap(topo.node, ['cleanup']);
    expect(r.exitCode, String(r.all)).toBe(0);
    expect(await leftovers({ runner })).toEqual([]);
    expect((await podtap(topo.node, ['cleanup', '--check'])).exitCode).toBe(0);
  });
});

describe('sniff fails clearly', () => {
  const cases: {
    description: string;
    expected: number;
    message: RegExp;
    policy?: Record<string, unknown>;
    iface?: string;
    collector?: string;
    bare?: boolean;
    env?: Record<string, string>;
    asNobody?: boolean;
    hidePath?: string;
  }[] = [
    { description: 'not root', expected: ExitCode.notRoot, message: /needs root/, asNobody: true },
    { description: 'a missing tool, naming its package', expected: ExitCode.missingTool, message: /missing tool: clang[\s\S]*"clang"/, hidePath: 'clang' },
    { description: 'an unknown interface', expected: ExitCode.badInput, message: /unknown interface "nope0"/, iface: 'nope0' },
    {
      description: 'an invalid policy, with the field path',
      expected: ExitCode.badInput,
      message: /spec\.filter\.ports\[0\]\.endPort: endPort must be greater than or equal to port/,
      policy: { filter: { ports: [{ port: 90, endPort: 80 }] } },
    },
    { description: 'a verifier rejection, quoting its decisive lines', expected: ExitCode.verifier, message: /verifier rejected pt_tunnel: invalid access to map value[\s\S]*frag\.h:\d+/, env: { PODTAP_DEBUG_CACHE_DELTA: '-1' } },
    { description: 'an unreachable collector (nothing listens)', expected: ExitCode.unreachable, message: /collector 198\.18\.9\.2:7 is unreachable/, collector: '198.18.9.2:7' },
    { description: 'no route to the collector', expected: ExitCode.unreachable, message: /no route to the collector/, collector: '198.19.254.1:6081' },
    { description: 'a usage error', expected: ExitCode.usage, message: /--policy and --iface are required/, bare: true },
  ];

  it.each(cases)('on $description', async (c) => {
    topo = await createTopology({ pods: 1 });
    const dir = await mkdtemp(join(tmpdir(), 'podtap-cli-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    await chmod(dir, 0o755);
    const file = join(dir, 'p.yaml');
    await writeFile(file, policyYaml({ collector: { address: topo.collector.ip4 }, ...(c.policy ?? {}) }, topo.prefix));
    await chmod(file, 0o644);
    const args = c.bare
      ? ['sniff']
      : ['sniff', '--policy', file, '--iface', c.iface ?? topo.pods[0]!.hostIf, ...(c.collector ? ['--collector', c.collector] : [])];
    const env: Record<string, string> = { ...(c.env ?? {}) };
    if (c.hidePath) {
      // a PATH with every tool but one
      const bin = join(dir, 'bin');
      await mkdir(bin);
      for (const t of ['bpftool', 'tc', 'ip', 'nsenter', 'sh', 'clang', 'sysctl', 'stat', 'mount', 'rm', 'find']) {
        if (t === c.hidePath) continue;
        const { stdout } = await execa('sh', ['-c', `command -v ${t}`]);
        await symlink(stdout.trim(), join(bin, t));
      }
      env.PATH = bin;
    }
    const cmd = [NODE_BIN, `${process.cwd()}/src/cli/main.ts`, ...args];
    const full = c.asNobody ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', ...cmd] : cmd;
    const r = await execa('nsenter', [`--net=/run/netns/${topo.node}`, ...full], { reject: false, env: { ...process.env, ...env }, all: true, cwd: process.cwd() });
    expect(r.exitCode, String(r.all)).toBe(c.expected);
    expect(String(r.all)).toMatch(c.message);
    expect(String(r.all)).not.toMatch(/unexpected error|at .*\.ts:\d+/); // no stack traces
    expect(await leftovers({ runner: createRunner(topo.node) })).toEqual([]);
  });
});
