/**
 * The agent finds each pod's host-side veth by the pod's identity (its UID:
 * the kubelet's pod cgroup, the namespace of a process in it, the veth peer),
 * for point-to-point and bridge CNIs alike; the address-based methods (route,
 * FDB, network namespace search) remain for pods that are bare namespaces.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rmdir } from 'node:fs/promises';
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cgroupPathOfPod, resolvePodInterface, type ResolveMethod } from '../../src/agent/resolve.ts';
import { createRunner } from '../../src/datapath/exec.ts';
import { createTopology, ifindex, inNs, sh, type Topology } from '../helpers/netns.ts';

/** Where the tests' "kubelet" puts pods: a pids cgroup (v1) or the unified hierarchy. */
const CGROUP_BASE = existsSync('/sys/fs/cgroup/pids') ? '/sys/fs/cgroup/pids' : '/sys/fs/cgroup';

interface FakePodProcess {
  uid: string;
  dirs: string[];
  proc: ChildProcess;
}

/**
 * A pod as the kubelet makes one, as far as the agent can see: a process in
 * the namespace @ns, inside the cgroup …/kubepods/besteffort/pod<UID>/<container>
 * (the cgroupfs driver's layout) or …/kubepods-besteffort-pod<UID_>.slice/… (systemd's).
 */
async function podProcess(root: string, ns: string | undefined, driver: 'cgroupfs' | 'systemd', uid = randomUUID()): Promise<FakePodProcess> {
  const podDir = driver === 'cgroupfs' ? `${root}/kubepods/besteffort/pod${uid}` : `${root}/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${uid.replace(/-/g, '_')}.slice`;
  const container = `${podDir}/${driver === 'cgroupfs' ? 'c0ffee' : 'cri-containerd-c0ffee.scope'}`;
  await mkdir(container, { recursive: true });
  const enter = ns ? ['nsenter', `--net=/run/netns/${ns}`] : [];
  const proc = spawn('sh', ['-c', `echo $$ > ${container}/cgroup.procs && exec ${[...enter, 'sleep', '600'].join(' ')}`], { stdio: 'ignore' });
  // the process is in its cgroup (and its namespace) once sleep runs
  for (let i = 0; i < 100; i++) {
    const comm = await import('node:fs/promises').then((f) => f.readFile(`/proc/${proc.pid}/comm`, 'utf8')).catch(() => '');
    if (comm.trim() === 'sleep') break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const dirs: string[] = [];
  for (let d = container; d !== root; d = d.slice(0, d.lastIndexOf('/'))) dirs.push(d);
  return { uid, dirs, proc };
}

async function removePodProcess(p: FakePodProcess): Promise<void> {
  p.proc.kill('SIGKILL');
  await new Promise((r) => (p.proc.exitCode !== null || p.proc.signalCode !== null ? r(undefined) : p.proc.once('exit', r)));
  for (const d of p.dirs) await rmdir(d).catch(() => undefined);
}

describe('cgroup paths of a pod', () => {
  const uid = '0b5e4f5e-8a4c-4c1e-9d3a-2f6f3f1d2a11';
  const table = [
    { description: 'cgroupfs driver, container cgroup', input: `/kubepods/besteffort/pod${uid}/abc`, expected: true },
    { description: 'cgroupfs driver, guaranteed QoS, under a cgroup root', input: `/podtap-cluster/kubepods/pod${uid}/abc`, expected: true },
    { description: 'systemd driver', input: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${uid.replace(/-/g, '_')}.slice/cri-containerd-abc.scope`, expected: true },
    { description: 'another pod', input: '/kubepods/besteffort/pod11111111-2222-3333-4444-555555555555/abc', expected: false },
    { description: 'the UID as a prefix of a longer name is not the pod', input: `/kubepods/besteffort/pod${uid}x/abc`, expected: false },
    { description: 'the UID outside a pod directory', input: `/user.slice/${uid}`, expected: false },
  ];
  it.each(table)('$description', ({ input, expected }) => {
    expect(cgroupPathOfPod(input, uid)).toBe(expected);
  });
});

describe('pod interface resolution', () => {
  let p2p: Topology;
  const bridged = { node: '', pods: [] as { ns: string; ip: string; hostIf: string }[], all: [] as string[] };
  const cgroupRoot = `${CGROUP_BASE}/podtap-test-${process.pid}-${Date.now()}`;
  const processes: FakePodProcess[] = [];

  beforeAll(async () => {
    p2p = await createTopology({ pods: 2 });
    // a bridge CNI: pods share 198.18.100.0/24 behind br0 on the node
    const prefix = `${p2p.prefix}b`;
    bridged.node = `${prefix}-node`;
    bridged.all.push(bridged.node);
    await sh('ip', ['netns', 'add', bridged.node]);
    await sh('ip', ['-n', bridged.node, 'link', 'add', 'br0', 'type', 'bridge']);
    await sh('ip', ['-n', bridged.node, 'addr', 'add', '198.18.100.1/24', 'dev', 'br0']);
    await sh('ip', ['-n', bridged.node, 'link', 'set', 'br0', 'up']);
    for (let i = 1; i <= 2; i++) {
      const ns = `${prefix}-pod${i}`;
      bridged.all.push(ns);
      await sh('ip', ['netns', 'add', ns]);
      const hostIf = `vbr${i}`;
      await sh('ip', ['link', 'add', hostIf, 'netns', bridged.node, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      await sh('ip', ['-n', bridged.node, 'link', 'set', hostIf, 'master', 'br0', 'up']);
      const ip = `198.18.100.${10 + i}`;
      await sh('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
      await sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
      await inNs(ns, 'ping', ['-c1', '-W2', '198.18.100.1']);
      bridged.pods.push({ ns, ip, hostIf });
    }
  });
  afterAll(async () => {
    for (const p of processes) await removePodProcess(p);
    await rmdir(cgroupRoot).catch(() => undefined);
    await p2p?.destroy();
    for (const ns of bridged.all) await sh('ip', ['netns', 'del', ns], { reject: false });
  });

  const table: { description: string; setup: 'p2p' | 'bridge'; methods?: ResolveMethod[]; expected: ResolveMethod | undefined }[] = [
    { description: 'point-to-point CNI: by identity (default)', setup: 'p2p', expected: 'pod' },
    { description: 'bridge CNI: by identity (default)', setup: 'bridge', expected: 'pod' },
    { description: 'point-to-point CNI: route to the pod IP', setup: 'p2p', methods: ['route'], expected: 'route' },
    { description: 'bridge CNI: FDB entry of the pod MAC', setup: 'bridge', methods: ['route', 'bridge'], expected: 'bridge' },
    { description: 'fallback: the pod network namespace (p2p)', setup: 'p2p', methods: ['netns'], expected: 'netns' },
    { description: 'fallback: the pod network namespace (bridge)', setup: 'bridge', methods: ['netns'], expected: 'netns' },
    { description: 'route only cannot see through a bridge', setup: 'bridge', methods: ['route'], expected: undefined },
  ];

  it.each(table)('$description', async ({ setup, methods, expected }) => {
    const node = setup === 'p2p' ? p2p.node : bridged.node;
    const pods = setup === 'p2p' ? p2p.pods.map((p) => ({ ns: p.ns, ip: p.ip4, hostIf: p.hostIf })) : bridged.pods;
    const runner = createRunner(node);
    // a bridge resolves a pod by its neighbour entry: the pod has talked lately
    // (adding bridge ports changes the bridge MAC, which flushes neighbours)
    if (setup === 'bridge') for (const pod of pods) await inNs(pod.ns, 'ping', ['-c1', '-W2', '198.18.100.1']);
    for (const pod of pods) {
      const p = await podProcess(cgroupRoot, pod.ns, 'cgroupfs');
      processes.push(p);
      const r = await resolvePodInterface(runner, { uid: p.uid, ips: [pod.ip] }, methods ? { methods } : {});
      if (expected === undefined) {
        expect(r).toBeUndefined();
        continue;
      }
      expect(r, JSON.stringify(r)).toEqual({ ifname: pod.hostIf, ifindex: await ifindex(node, pod.hostIf), method: expected });
    }
  });

  it('an IP no pod holds resolves to nothing', async () => {
    expect(await resolvePodInterface(createRunner(p2p.node), { uid: randomUUID(), ips: ['198.18.99.99'] }, { methods: ['route', 'bridge', 'netns'] })).toBeUndefined();
  });

  it('a pod of the systemd cgroup driver is found by identity', async () => {
    const pod = p2p.pods[0]!;
    const p = await podProcess(cgroupRoot, pod.ns, 'systemd');
    processes.push(p);
    expect(await resolvePodInterface(createRunner(p2p.node), { uid: p.uid, ips: [pod.ip4] })).toEqual({ ifname: pod.hostIf, ifindex: await ifindex(p2p.node, pod.hostIf), method: 'pod' });
  });

  // The defences of identity over address: each case taps the wrong pod, or
  // the node, if the agent trusted an address or a hostile UID.
  const refused: { description: string; input: (pods: Topology['pods'], own: FakePodProcess) => { uid: string; ips: string[] }; expected: undefined }[] = [
    {
      description: "a stale assignment: the UID's namespace does not hold the IP (another pod inherited it) — no tap, where route would tap the other pod",
      input: (pods, own) => ({ uid: own.uid, ips: [pods[1]!.ip4] }),
      expected: undefined,
    },
    { description: 'a UID no process carries', input: (pods) => ({ uid: randomUUID(), ips: [pods[0]!.ip4] }), expected: undefined },
    { description: 'a UID that is a path', input: (pods) => ({ uid: '../../..', ips: [pods[0]!.ip4] }), expected: undefined },
    { description: 'a UID that is a pattern', input: (pods) => ({ uid: '.*', ips: [pods[0]!.ip4] }), expected: undefined },
  ];
  it.each(refused)('refused: $description', async ({ input, expected }) => {
    const own = await podProcess(cgroupRoot, p2p.pods[0]!.ns, 'cgroupfs');
    processes.push(own);
    const runner = createRunner(p2p.node);
    const pod = input(p2p.pods, own);
    expect(await resolvePodInterface(runner, pod)).toBe(expected);
    // the address alone would have found a veth: the refusal is the identity check's
    expect(await resolvePodInterface(runner, pod, { methods: ['route'] })).toBeDefined();
  });

  it('a hostNetwork pod (its process in the node namespace) has no veth to tap', async () => {
    const p = await podProcess(cgroupRoot, p2p.node, 'cgroupfs');
    processes.push(p);
    expect(await resolvePodInterface(createRunner(p2p.node), { uid: p.uid, ips: [] })).toBeUndefined();
  });
});
