/**
 * Local labs in network namespaces (the demo, the tests, the benchmarks), all
 * created here and always removed.
 *
 *   pod1 .. podN  (eth0)  <-veth->  node (hostIfs vpt1..N)     node up0 <-veth-> collector (eth0)
 *   198.18.(10+i).2                                           198.18.9.1        198.18.9.2
 *
 * The "node" namespace routes between the pods and the collector, like a
 * Kubernetes node with a point-to-point CNI. Addresses: 198.18.0.0/15 and
 * 2001:db8::/32 only.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

export interface Pod {
  ns: string;
  hostIf: string;
  ip4: string;
  ip6: string;
  gw4: string;
  gw6: string;
}

export interface Topology {
  prefix: string;
  node: string;
  pods: Pod[];
  collector: { ns: string; ip4: string; ip6: string; uplink: string };
  destroy(): Promise<void>;
}

export async function sh(cmd: string, args: string[], opts: { reject?: boolean } = {}): Promise<string> {
  const r = await execa(cmd, args, { reject: false });
  if (r.exitCode !== 0 && opts.reject !== false) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.exitCode}): ${r.stderr}`);
  }
  return r.stdout;
}

/** Run a command inside a namespace, keeping the mount namespace (bpffs stays visible). */
export function inNs(ns: string, cmd: string, args: string[], opts: { reject?: boolean } = {}): Promise<string> {
  return sh('nsenter', [`--net=/run/netns/${ns}`, cmd, ...args], opts);
}

/** Node.js 24 of this checkout (the machine's may be older). */
export const NODE_BIN = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));
/** The podtap CLI of this checkout. */
export const PODTAP_MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

export async function createTopology(opts: { pods?: number; podMtu?: number; uplinkMtu?: number } = {}): Promise<Topology> {
  const prefix = `pt${randomBytes(3).toString('hex')}`;
  const nPods = opts.pods ?? 2;
  const node = `${prefix}-node`;
  const colNs = `${prefix}-col`;
  const pods: Pod[] = [];
  const all = [node, colNs];
  const topo: Topology = {
    prefix,
    node,
    pods,
    collector: { ns: colNs, ip4: '198.18.9.2', ip6: '2001:db8:9::2', uplink: 'up0' },
    async destroy() {
      for (const ns of all) await sh('ip', ['netns', 'del', ns], { reject: false });
    },
  };
  try {
    for (const ns of [node, colNs]) {
      await sh('ip', ['netns', 'add', ns]);
      await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    await inNs(node, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    for (let i = 1; i <= nPods; i++) {
      const ns = `${prefix}-pod${i}`;
      all.push(ns);
      await sh('ip', ['netns', 'add', ns]);
      await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      const hostIf = `vpt${i}`;
      await sh('ip', ['link', 'add', hostIf, 'netns', node, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      const mtu = String(opts.podMtu ?? 1500);
      await sh('ip', ['-n', node, 'link', 'set', hostIf, 'mtu', mtu, 'up']);
      await sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'mtu', mtu, 'up']);
      const pod: Pod = {
        ns,
        hostIf,
        // pod i: 198.18.(10+i).2/30 (the uplink has 198.18.9.0/30)
        ip4: `198.18.${10 + i}.2`,
        gw4: `198.18.${10 + i}.1`,
        ip6: `2001:db8:${10 + i}::2`,
        gw6: `2001:db8:${10 + i}::1`,
      };
      await sh('ip', ['-n', node, 'addr', 'add', `${pod.gw4}/30`, 'dev', hostIf]);
      await sh('ip', ['-n', ns, 'addr', 'add', `${pod.ip4}/30`, 'dev', 'eth0']);
      await sh('ip', ['-n', ns, 'route', 'add', 'default', 'via', pod.gw4]);
      await sh('ip', ['-n', node, 'addr', 'add', `${pod.gw6}/64`, 'dev', hostIf, 'nodad']);
      await sh('ip', ['-n', ns, 'addr', 'add', `${pod.ip6}/64`, 'dev', 'eth0', 'nodad']);
      await sh('ip', ['-n', ns, '-6', 'route', 'add', 'default', 'via', pod.gw6]);
      pods.push(pod);
    }
    const upMtu = String(opts.uplinkMtu ?? 1500);
    await sh('ip', ['link', 'add', 'up0', 'netns', node, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', colNs]);
    await sh('ip', ['-n', node, 'link', 'set', 'up0', 'mtu', upMtu, 'up']);
    await sh('ip', ['-n', colNs, 'link', 'set', 'eth0', 'mtu', upMtu, 'up']);
    await sh('ip', ['-n', node, 'addr', 'add', '198.18.9.1/30', 'dev', 'up0']);
    await sh('ip', ['-n', colNs, 'addr', 'add', '198.18.9.2/30', 'dev', 'eth0']);
    await sh('ip', ['-n', node, 'addr', 'add', '2001:db8:9::1/64', 'dev', 'up0', 'nodad']);
    await sh('ip', ['-n', colNs, 'addr', 'add', '2001:db8:9::2/64', 'dev', 'eth0', 'nodad']);
    await sh('ip', ['-n', colNs, 'route', 'add', '198.18.0.0/15', 'via', '198.18.9.1']);
    await sh('ip', ['-n', colNs, '-6', 'route', 'add', '2001:db8::/32', 'via', '2001:db8:9::1']);
    // resolve neighbours both ways so the first mirrored packet has an L2 route
    await inNs(node, 'ping', ['-c1', '-W2', '198.18.9.2']);
    await inNs(node, 'ping', ['-6', '-c1', '-W2', '2001:db8:9::2']);
    for (const p of pods) await inNs(p.ns, 'ping', ['-c1', '-W2', p.gw4]);
    return topo;
  } catch (err) {
    await topo.destroy();
    throw err;
  }
}

export async function ifindex(ns: string, dev: string): Promise<number> {
  const out = JSON.parse(await sh('ip', ['-n', ns, '-j', 'link', 'show', 'dev', dev])) as { ifindex: number }[];
  return out[0]!.ifindex;
}
