/**
 * Finding a pod's host-side interface from the node, for the CNIs in use:
 *
 *  1. route  — point-to-point CNIs (Calico, Cilium, kindnet, AWS VPC CNI):
 *     the route to the pod IP goes out through the pod's veth.
 *  2. bridge — bridge CNIs (flannel, bridge plugin): the route points at a
 *     bridge; the pod's MAC (neighbour table) names the bridge port in the FDB.
 *     A pod that has not talked to the node lately has no neighbour entry:
 *     then the next method finds it.
 *  3. netns  — anything else: find the network namespace that holds the pod
 *     IP and take the host-side peer of that interface (its iflink).
 */
import { readdir } from 'node:fs/promises';
import type { Runner } from '../datapath/exec.ts';
import { getLink, listLinks, type Link } from '../datapath/netdev.ts';

export type ResolveMethod = 'route' | 'bridge' | 'netns';

export interface ResolvedInterface {
  ifname: string;
  ifindex: number;
  method: ResolveMethod;
}

export interface ResolveOptions {
  /** Directories of named network namespaces to search (method netns). */
  netnsDirs?: string[];
  /** Methods to try, in order. */
  methods?: ResolveMethod[];
}

const DEFAULT_NETNS_DIRS = ['/run/netns', '/var/run/netns'];

function isVeth(l: Link | undefined): boolean {
  return l?.linkinfo?.info_kind === 'veth';
}

async function byRoute(runner: Runner, ip: string): Promise<{ hit?: ResolvedInterface; bridge?: string }> {
  const r = await runner.run('ip', ['-j', 'route', 'get', ip]);
  if (r.exitCode !== 0) return {};
  const dev = (JSON.parse(r.stdout) as { dev?: string }[])[0]?.dev;
  if (!dev) return {};
  const link = await getLink(runner, dev);
  if (isVeth(link)) return { hit: { ifname: link!.ifname, ifindex: link!.ifindex, method: 'route' } };
  if (link?.linkinfo?.info_kind === 'bridge') return { bridge: link.ifname };
  return {};
}

async function byBridge(runner: Runner, bridge: string, ip: string): Promise<ResolvedInterface | undefined> {
  const n = await runner.run('ip', ['-j', 'neigh', 'show', 'to', ip, 'dev', bridge]);
  const mac = n.exitCode === 0 ? (JSON.parse(n.stdout || '[]') as { lladdr?: string }[])[0]?.lladdr : undefined;
  if (!mac) return undefined;
  const f = await runner.run('bridge', ['-j', 'fdb', 'show', 'br', bridge]);
  if (f.exitCode !== 0) return undefined;
  const entry = (JSON.parse(f.stdout || '[]') as { mac: string; ifname?: string; dev?: string }[]).find(
    (e) => e.mac.toLowerCase() === mac.toLowerCase() && (e.ifname ?? e.dev) !== bridge,
  );
  const port = entry?.ifname ?? entry?.dev;
  const link = port ? await getLink(runner, port) : undefined;
  return isVeth(link) ? { ifname: link!.ifname, ifindex: link!.ifindex, method: 'bridge' } : undefined;
}

async function byNetns(runner: Runner, ip: string, dirs: string[], hostLinks: () => Promise<Link[]>): Promise<ResolvedInterface | undefined> {
  for (const dir of dirs) {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      continue;
    }
    for (const ns of names) {
      const r = await runner.run('ip', ['-n', ns, '-j', 'addr', 'show'], { netnsScoped: false });
      if (r.exitCode !== 0) continue;
      const ifaces = JSON.parse(r.stdout || '[]') as { ifname: string; link_index?: number; addr_info?: { local: string }[] }[];
      const inside = ifaces.find((i) => i.addr_info?.some((a) => a.local === ip));
      if (!inside?.link_index) continue;
      // the peer's ifindex is in the namespace the veth was created in: ours
      const peer = (await hostLinks()).find((l) => l.ifindex === inside.link_index && isVeth(l));
      if (peer) return { ifname: peer.ifname, ifindex: peer.ifindex, method: 'netns' };
    }
  }
  return undefined;
}

/** The host-side interface of the pod with @ips, or undefined. */
export async function resolvePodInterface(runner: Runner, ips: string[], opts: ResolveOptions = {}): Promise<ResolvedInterface | undefined> {
  const methods = opts.methods ?? ['route', 'bridge', 'netns'];
  let links: Link[] | undefined;
  const hostLinks = async () => (links ??= await listLinks(runner));
  for (const ip of ips) {
    let bridge: string | undefined;
    if (methods.includes('route') || methods.includes('bridge')) {
      const r = await byRoute(runner, ip);
      if (r.hit && methods.includes('route')) return r.hit;
      bridge = r.bridge;
    }
    if (bridge && methods.includes('bridge')) {
      const b = await byBridge(runner, bridge, ip);
      if (b) return b;
    }
    if (methods.includes('netns')) {
      const n = await byNetns(runner, ip, opts.netnsDirs ?? DEFAULT_NETNS_DIRS, hostLinks);
      if (n) return n;
    }
  }
  return undefined;
}
