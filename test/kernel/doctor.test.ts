/**
 * podtap doctor on a real kernel: a veth whose hooks carry programs of
 * someone else (a BPF program at a preference podtap would come after, a
 * classic mirred redirect) is flagged, with the program and the preference;
 * a foreign filter that podtap would run before, and a bare veth, are not.
 * The node checks (tools, bpffs, BTF, kernel features) pass on this machine.
 * A foreign program added at podtap's own preference (cls_bpf lists it ahead
 * of podtap's, and runs it first) is flagged, and outlives podtap's detach.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspectInterface, inspectNode, type Finding } from '../../src/datapath/doctor.ts';
import { createRunner } from '../../src/datapath/exec.ts';
import { deleteFilter, isPodtapProgram, listFilters, replaceFilter } from '../../src/datapath/tc.ts';
import { definesFor, loadTestObject, loadWitness, removePins, testConfig, testPinRoot } from '../helpers/bpf.ts';

const ROOT = join(import.meta.dirname, '../..');
const ns = `pt-doctor-${randomBytes(3).toString('hex')}`;
const pinRoot = testPinRoot();
let witness: Awaited<ReturnType<typeof loadWitness>>;
const runner = createRunner(ns);
// nsenter --net, not ip netns exec (which mounts a fresh /sys, hiding the host's bpffs)
const sh = (cmd: string) => execa('nsenter', [`--net=/run/netns/${ns}`, 'sh', '-ec', cmd]);

beforeAll(async () => {
  await execa('ip', ['netns', 'add', ns]);
  await sh('ip link add dva type veth peer name dvb; ip link add dvc type veth peer name dvd; ip link add dve type veth peer name dvf; for d in dva dvb dvc dvd dve dvf; do ip link set $d up; done');
  witness = await loadWitness(pinRoot);
  // dva: someone else's BPF program first on ingress, a mirred redirect first on egress
  await sh(`tc qdisc add dev dva clsact
    tc filter add dev dva ingress pref 1 bpf direct-action object-pinned ${witness.prog}
    tc filter add dev dva egress pref 1 u32 match u32 0 0 action mirred egress redirect dev dvb`);
  // dvc: a foreign filter at preference 100: podtap would take 1, and run first
  await sh(`tc qdisc add dev dvc clsact; tc filter add dev dvc ingress pref 100 bpf direct-action object-pinned ${witness.prog}`);
});

afterAll(async () => {
  await execa('ip', ['netns', 'del', ns], { reject: false });
  await removePins(pinRoot);
});

const warnings = (f: Finding[]) => f.filter((x) => x.severity !== 'ok').map((x) => `${x.check}: ${x.message}`);

describe('podtap doctor', () => {
  it.each([
    {
      description: 'a foreign BPF program and a mirred redirect ahead of podtap are flagged',
      input: 'dva',
      expected: [
        'interface dva ingress: BPF program witness at preference 1 runs before podtap\'s (would take preference 2)',
        'interface dva egress: u32 filter (mirred redirect) at preference 1 runs before podtap\'s (would take preference 2)',
      ],
    },
    { description: 'a foreign filter podtap would run before is not', input: 'dvc', expected: [] },
    { description: 'a bare veth is not', input: 'dvb', expected: [] },
  ])('$description', async ({ input, expected }) => {
    expect(warnings(await inspectInterface(runner, input))).toEqual(expected);
  });

  it('names the hook and the program of each finding, for the agent to report those of the hooks it taps', async () => {
    const f = (await inspectInterface(runner, 'dva')).filter((x) => x.severity === 'warn');
    expect(f.map((x) => [x.hook, x.program])).toEqual([
      ['ingress', 'BPF program witness'],
      ['egress', 'u32 filter (mirred redirect)'],
    ]);
  });

  it("flags a foreign program that joined podtap's own preference, and podtap's detach leaves it in place", async () => {
    // podtap attached at preference 1 as a session attaches (replace, handle 0x1);
    // then someone adds theirs at the same preference: cls_bpf puts it at the head of its list
    const obj = await loadTestObject(definesFor(testConfig()), pinRoot);
    await sh('tc qdisc add dev dve clsact');
    await replaceFilter(runner, 'dve', 'egress', 1, obj.progs.pt_tap_egress.path);
    await sh(`tc filter add dev dve egress pref 1 bpf direct-action object-pinned ${witness.prog}`);
    const names = async () => (await listFilters(runner, 'dve', 'egress')).map((f) => [f.pref, f.progName]);
    expect(await names()).toEqual([[1, 'witness'], [1, 'pt_tap_egress']]);
    expect(warnings(await inspectInterface(runner, 'dve'))).toEqual([
      "interface dve egress: BPF program witness at preference 1 runs before podtap's (attached at preference 1)",
    ]);
    // podtap's detach deletes its own filter, not the preference
    for (const f of await listFilters(runner, 'dve', 'egress')) if (isPodtapProgram(f.progName)) await deleteFilter(runner, f);
    expect(await names()).toEqual([[1, 'witness']]);
  });

  it('passes the node checks on this machine', async () => {
    const f = await inspectNode(createRunner(), { pinRoot });
    expect(f.map((x) => [x.check, x.severity])).toEqual([['tools', 'ok'], ['bpffs', 'ok'], ['btf', 'ok'], ['kernel', 'ok']]);
  });

  it('the CLI prints the findings and exits 0 on warnings alone', async () => {
    const r = await execa('nsenter', [`--net=/run/netns/${ns}`, join(ROOT, 'node_modules/.bin/node'), join(ROOT, 'src/cli/main.ts'), 'doctor'], {
      reject: false, all: true, env: { PODTAP_PIN_ROOT: pinRoot },
    });
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout).toMatch(/^WARN {2}interface dva ingress: BPF program witness at preference 1 runs before podtap's/m);
    expect(r.stdout).toMatch(/^ {6}if it redirects or drops packets, podtap never sees them/m);
    expect(r.stdout).toMatch(/^ok {4}kernel: /m);
  });
});
