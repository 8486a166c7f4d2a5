/**
 * Finding a pod's host-side interface from the node.
 *
 * The agent's way (method `pod`) goes by the pod's identity, never by a guess
 * from its IP or MAC: the kubelet puts every process of a pod in a cgroup
 * named after the pod's UID (`…/pod<UID>/…` with the cgroupfs driver,
 * `…-pod<UID with _>.slice/…` with systemd's), so a process found there holds
 * the pod's network namespace (/proc/PID/ns/net); the node's veth whose peer
 * is in that namespace is the pod's host side (with several, the one whose
 * peer holds the pod's IPv6 address). An IP is only a cross-check: a pod whose
 * namespace does not hold the IP the assignment names is not tapped, so a
 * stale assignment can never tap the pod that inherited an address. All of
 * it is read from outside the namespace, never by entering it (setns needs
 * CAP_SYS_ADMIN): the namespace's addresses from /proc/PID/net, its id as the
 * node sees it from the kernel (lsns, RTM_GETNSID by PID), and the node's veth
 * whose peer is in that namespace (its link-netnsid). Needs the host's /proc
 * (hostPID) and the right to look at other users' namespaces (CAP_SYS_PTRACE).
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
import { isIPv6 } from 'node:net';
import { getLink, ipv6Bytes, listLinks, type Link, type Runner } from '../datapath/index.ts';

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

/**
 * The pod namespace's id as the node's namespace sees it (the "link-netnsid"
 * its veths carry): lsns asks the kernel by PID (RTM_GETNSID), which needs no
 * capability, where entering the namespace (setns) needs CAP_SYS_ADMIN.
 */
async function netnsIdOf(runner: Runner, pid: number): Promise<number | undefined> {
  const r = await runner.run('lsns', ['-J', '-t', 'net', '-p', String(pid), '-o', 'NS,NETNSID']);
  if (r.exitCode !== 0) return undefined;
  const row = (JSON.parse(r.stdout || '{}') as { namespaces?: { netnsid?: string | number | null }[] }).namespaces?.[0];
  const id = row?.netnsid === null || row?.netnsid === '' || row?.netnsid === undefined ? NaN : Number(row.netnsid);
  return Number.isInteger(id) && id >= 0 ? id : undefined;
}

/**
 * The addresses a process's network namespace holds, read from outside it
 * (/proc/PID/net, the namespace of that process): IPv4 local addresses from
 * fib_trie (no interface there), IPv6 ones with their ifindex from if_inet6.
 */
export async function namespaceAddresses(procRoot: string, pid: number): Promise<{ v4: Set<string>; v6: Map<string, number> }> {
  const v4 = new Set<string>();
  const trie = await readFile(`${procRoot}/${pid}/net/fib_trie`, 'utf8').catch(() => '');
  for (const m of trie.matchAll(/\|-- (\d+\.\d+\.\d+\.\d+)\n\s+\/32 host LOCAL/g)) v4.add(m[1]!);
  const v6 = new Map<string, number>();
  const inet6 = await readFile(`${procRoot}/${pid}/net/if_inet6`, 'utf8').catch(() => '');
  for (const line of inet6.split('\n')) {
    const [hex, index] = line.trim().split(/\s+/);
    if (hex?.length === 32 && index) v6.set(hex, parseInt(index, 16));
  }
  return { v4, v6 };
}

/** An IPv6 address as if_inet6 writes it: 32 hex digits. */
function inet6Hex(ip: string): string {
  return ipv6Bytes(ip).toString('hex');
}

async function byPod(runner: Runner, pod: PodRef, procRoot: string, hostLinks: () => Promise<Link[]>): Promise<ResolvedInterface | undefined> {
  const own = await stat(runner.netns ? `/run/netns/${runner.netns}` : `${procRoot}/self/ns/net`);
  for (const pid of await podPids(pod.uid, procRoot)) {
    const nsPath = `${procRoot}/${pid}/ns/net`;
    const ns = await stat(nsPath).catch(() => undefined);
    if (!ns) continue; // exited meanwhile
    // a hostNetwork pod shares the node's namespace: it has no veth of its own
    if (ns.ino === own.ino && ns.dev === own.dev) return undefined;
    // the namespace must hold the pod's address: else it is not (or no longer) this pod's
    const held = await namespaceAddresses(procRoot, pid);
    const v6 = pod.ips.filter((ip) => isIPv6(ip)).map(inet6Hex);
    if (pod.ips.length && !pod.ips.some((ip) => (isIPv6(ip) ? held.v6.has(inet6Hex(ip)) : held.v4.has(ip)))) return undefined;
    // the links list first: listing veths gives their peers' namespaces ids
    const links = await hostLinks();
    const nsid = await netnsIdOf(runner, pid);
    if (nsid === undefined) continue;
    // the node's veths whose peer is in the pod's namespace: the peer's
    // (namespace id, ifindex) pair names one interface, no guess involved
    const veths = links.filter((l) => isVeth(l) && l.link_netnsid === nsid && l.link_index);
    // several (a pod with more than one network): the one whose peer holds the
    // pod's IPv6 address; IPv4 addresses carry no interface outside the namespace
    const byAddress = veths.filter((l) => v6.some((hex) => held.v6.get(hex) === l.link_index));
    const peer = veths.length === 1 ? veths[0] : byAddress.length === 1 ? byAddress[0] : undefined;
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
