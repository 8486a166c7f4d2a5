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
  // one `ip -batch` per namespace rather than a process per step: under
  // qemu's TCG (scripts/kernel-matrix.sh) every process start costs a second
  const mtu = String(opts.podMtu ?? 1500);
  const upMtu = String(opts.uplinkMtu ?? 1500);
  for (let i = 1; i <= nPods; i++) {
    pods.push({
      ns: `${prefix}-pod${i}`,
      hostIf: `vpt${i}`,
      // pod i: 198.18.(10+i).2/30 (the uplink has 198.18.9.0/30)
      ip4: `198.18.${10 + i}.2`,
      gw4: `198.18.${10 + i}.1`,
      ip6: `2001:db8:${10 + i}::2`,
      gw6: `2001:db8:${10 + i}::1`,
    });
    all.push(`${prefix}-pod${i}`);
  }
  try {
    await ipBatch(undefined, [
      ...[node, colNs].map((ns) => `netns add ${ns}`),
      ...pods.flatMap((p) => [`netns add ${p.ns}`, `link add ${p.hostIf} netns ${node} type veth peer name eth0 netns ${p.ns}`]),
      `link add up0 netns ${node} type veth peer name eth0 netns ${colNs}`,
    ]);
    await inNs(node, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    await ipBatch(node, [
      'link set lo up',
      ...pods.flatMap((p) => [`link set ${p.hostIf} mtu ${mtu} up`, `addr add ${p.gw4}/30 dev ${p.hostIf}`, `addr add ${p.gw6}/64 dev ${p.hostIf} nodad`]),
      `link set up0 mtu ${upMtu} up`,
      'addr add 198.18.9.1/30 dev up0',
      'addr add 2001:db8:9::1/64 dev up0 nodad',
    ]);
    for (const p of pods) {
      await ipBatch(p.ns, [
        'link set lo up',
        `link set eth0 mtu ${mtu} up`,
        `addr add ${p.ip4}/30 dev eth0`,
        `route add default via ${p.gw4}`,
        `addr add ${p.ip6}/64 dev eth0 nodad`,
        `route add ::/0 via ${p.gw6}`,
      ]);
    }
    await ipBatch(colNs, [
      'link set lo up',
      `link set eth0 mtu ${upMtu} up`,
      'addr add 198.18.9.2/30 dev eth0',
      'addr add 2001:db8:9::2/64 dev eth0 nodad',
      'route add 198.18.0.0/15 via 198.18.9.1',
      'route add 2001:db8::/32 via 2001:db8:9::1',
    ]);
    // resolve neighbours both ways so the first mirrored packet has an L2 route
    // (-w: until the first answer; IPv6 answers once the link-local addresses are ready)
    await Promise.all([
      inNs(node, 'ping', ['-c1', '-w5', '198.18.9.2']),
      inNs(node, 'ping', ['-6', '-c1', '-w5', '2001:db8:9::2']),
      ...pods.flatMap((p) => [inNs(p.ns, 'ping', ['-c1', '-w5', p.gw4]), inNs(p.ns, 'ping', ['-6', '-c1', '-w5', p.gw6])]),
    ]);
    return topo;
  } catch (err) {
    await topo.destroy();
    throw err;
  }
}

/** `ip -batch` of @lines, in @ns (or this namespace); fails naming the line ip refused. */
async function ipBatch(ns: string | undefined, lines: string[]): Promise<void> {
  const r = await execa('ip', [...(ns ? ['-n', ns] : []), '-batch', '-'], { input: `${lines.join('\n')}\n`, reject: false });
  if (r.exitCode !== 0) throw new Error(`ip ${ns ? `-n ${ns} ` : ''}-batch failed (${r.exitCode}): ${r.stderr}`);
}

export async function ifindex(ns: string, dev: string): Promise<number> {
  const out = JSON.parse(await sh('ip', ['-n', ns, '-j', 'link', 'show', 'dev', dev])) as { ifindex: number }[];
  return out[0]!.ifindex;
}
