/**
 * Finding a pod's host-side interface from the node.
 *
 * The agent's way (method `pod`) goes by the pod's identity, never by a guess
 * from its IP or MAC: the kubelet puts every process of a pod in a cgroup
 * named after the pod's UID (`…/pod<UID>/…` with the cgroupfs driver,
 * `…-pod<UID with _>.slice/…` with systemd's), so a process found there holds
 * the pod's network namespace (/proc/PID/ns/net); inside it, the interface
 * with the pod's IP (or eth0) is one end of a veth, and the node's interface
 * whose ifindex is that end's peer index, and whose own peer index points
 * back, is the pod's host side. An IP is only a cross-check: a pod whose
 * namespace does not hold the IP the assignment names is not tapped, so a
 * stale assignment can never tap the pod that inherited an address. Needs the
 * host's /proc (hostPID) and the right to open other users' namespaces
 * (CAP_SYS_PTRACE) and enter them (CAP_SYS_ADMIN).
 *
 * The address-based methods remain for environments without pods' cgroups
 * (the lab's pods are bare network namespaces):
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
import { readdir, readFile, stat } from 'node:fs/promises';
import { getLink, listLinks, type Link, type Runner } from '../datapath/index.ts';

export const RESOLVE_METHODS = ['pod', 'route', 'bridge', 'netns'] as const;
export type ResolveMethod = (typeof RESOLVE_METHODS)[number];

/** The pod as the assignment names it. */
export interface PodRef {
  uid: string;
  ips: string[];
}

export interface ResolvedInterface {
  ifname: string;
  ifindex: number;
  method: ResolveMethod;
}

export interface ResolveOptions {
  /** Directories of named network namespaces to search (method netns). */
  netnsDirs?: string[];
  /** Methods to try, in order (default: `pod` alone). */
  methods?: ResolveMethod[];
  /** The host's /proc (method pod). */
  procRoot?: string;
}

export const DEFAULT_METHODS: readonly ResolveMethod[] = ['pod'];

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

/** A Kubernetes UID (a UUID); anything else is refused before it reaches a path or a pattern. */
const UID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Does a cgroup path (a line of /proc/PID/cgroup, after the second colon) belong to the pod? */
export function cgroupPathOfPod(path: string, uid: string): boolean {
  const underscored = uid.replace(/-/g, '_');
  return path.split('/').some((seg) => seg === `pod${uid}` || (seg.endsWith(`-pod${underscored}.slice`) && seg.startsWith('kubepods')));
}

/** Processes of the pod with @uid: those in its cgroup (any hierarchy). */
export async function podPids(uid: string, procRoot = '/proc'): Promise<number[]> {
  if (!UID.test(uid)) return [];
  const found: number[] = [];
  for (const e of await readdir(procRoot)) {
    if (!/^\d+$/.test(e)) continue;
    const cg = await readFile(`${procRoot}/${e}/cgroup`, 'utf8').catch(() => '');
    if (cg.split('\n').some((line) => cgroupPathOfPod(line.slice(line.indexOf(':', line.indexOf(':') + 1) + 1), uid))) found.push(Number(e));
  }
  return found.sort((a, b) => a - b);
}

interface NsIface {
  ifname: string;
  ifindex: number;
  link_index?: number;
  linkinfo?: { info_kind?: string };
  addr_info?: { local: string }[];
}

async function byPod(runner: Runner, pod: PodRef, procRoot: string, hostLinks: () => Promise<Link[]>): Promise<ResolvedInterface | undefined> {
  const own = await stat(runner.netns ? `/run/netns/${runner.netns}` : `${procRoot}/self/ns/net`);
  for (const pid of await podPids(pod.uid, procRoot)) {
    const nsPath = `${procRoot}/${pid}/ns/net`;
    const ns = await stat(nsPath).catch(() => undefined);
    if (!ns) continue; // exited meanwhile
    // a hostNetwork pod shares the node's namespace: it has no veth of its own
    if (ns.ino === own.ino && ns.dev === own.dev) return undefined;
    const r = await runner.run('nsenter', [`--net=${nsPath}`, 'ip', '-d', '-j', 'addr', 'show'], { netnsScoped: false });
    if (r.exitCode !== 0) continue;
    const ifaces = JSON.parse(r.stdout || '[]') as NsIface[];
    const inside = pod.ips.length
      ? ifaces.find((i) => i.addr_info?.some((a) => pod.ips.includes(a.local)))
      : ifaces.find((i) => i.ifname === 'eth0');
    // the namespace does not hold the pod's address: not (or no longer) this pod's
    if (!inside || inside.linkinfo?.info_kind !== 'veth' || !inside.link_index) return undefined;
    const peer = (await hostLinks()).find((l) => l.ifindex === inside.link_index && isVeth(l) && l.link_index === inside.ifindex);
    return peer ? { ifname: peer.ifname, ifindex: peer.ifindex, method: 'pod' } : undefined;
  }
  return undefined;
}

/** The host-side interface of @pod, or undefined. */
export async function resolvePodInterface(runner: Runner, pod: PodRef, opts: ResolveOptions = {}): Promise<ResolvedInterface | undefined> {
  const methods = opts.methods ?? DEFAULT_METHODS;
  let links: Link[] | undefined;
  const hostLinks = async () => (links ??= await listLinks(runner));
  if (methods.includes('pod')) {
    const p = await byPod(runner, pod, opts.procRoot ?? '/proc', hostLinks);
    if (p) return p;
  }
  for (const ip of pod.ips) {
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
