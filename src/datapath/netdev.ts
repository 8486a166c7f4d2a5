/** Network devices and routes, through `ip -j`. */
import type { Runner } from './exec.ts';

export interface Link {
  ifindex: number;
  ifname: string;
  mtu: number;
  operstate: string;
  link_type?: string;
  address?: string;
  linkinfo?: { info_kind?: string };
  /** peer ifindex for veths (in the peer's namespace) */
  link_index?: number;
  link_netnsid?: number;
}

export async function listLinks(runner: Runner): Promise<Link[]> {
  return JSON.parse(await runner.check('ip', ['-d', '-j', 'link', 'show'])) as Link[];
}

export async function getLink(runner: Runner, name: string): Promise<Link | undefined> {
  const r = await runner.run('ip', ['-d', '-j', 'link', 'show', 'dev', name]);
  if (r.exitCode !== 0) return undefined;
  return (JSON.parse(r.stdout) as Link[])[0];
}

export interface Route {
  dev: string;
  ifindex: number;
  src: string;
  mtu: number;
  gateway?: string | undefined;
}

/** The route the kernel would use to reach @addr, with its source address and MTU. */
export async function routeTo(runner: Runner, addr: string): Promise<Route | undefined> {
  const r = await runner.run('ip', ['-j', 'route', 'get', addr]);
  if (r.exitCode !== 0) return undefined;
  const rt = (JSON.parse(r.stdout) as { dev?: string; prefsrc?: string; gateway?: string; metrics?: { mtu?: number }[] }[])[0];
  if (!rt?.dev || !rt.prefsrc) return undefined;
  const link = await getLink(runner, rt.dev);
  if (!link) return undefined;
  const routeMtu = rt.metrics?.find((m) => m.mtu)?.mtu;
  return { dev: rt.dev, ifindex: link.ifindex, src: rt.prefsrc, mtu: routeMtu ?? link.mtu, gateway: rt.gateway };
}

/** Capture device names of a session: the tunnel program runs at egress of the first. */
export function captureDeviceNames(session: string): { dev: string; peer: string } {
  const id = session.replace(/[^a-z0-9]/g, '').slice(-10);
  return { dev: `ptc${id}`, peer: `ptp${id}` };
}

export const CAPTURE_DEVICE_RE = /^pt[cp][a-z0-9]{1,10}$/;

/** The capture device's MTU: no frame is too big for it. */
export const CAPTURE_MTU = 65535;

/**
 * The capture device: a veth pair the agent owns. MTU 65535 so no frame is too
 * big for it; no IPv6 address so the kernel sends nothing of its own through it
 * (the tunnel program would count it as foreign and drop it anyway). @mtu:
 * the device's MTU where 65535 cannot be (a kernel whose veth takes XDP
 * without frags only below a page, features.ts); its peer keeps 65535.
 */
export async function ensureCaptureDevice(runner: Runner, session: string, mtu = CAPTURE_MTU): Promise<Link> {
  const { dev, peer } = captureDeviceNames(session);
  let link = await getLink(runner, dev);
  if (link && link.mtu !== mtu) {
    await runner.check('ip', ['link', 'set', 'dev', dev, 'mtu', String(mtu)]);
    link = await getLink(runner, dev);
  }
  if (!link) {
    await runner.check('ip', ['link', 'add', dev, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', peer, 'mtu', String(CAPTURE_MTU)]);
    for (const d of [dev, peer]) {
      // no IPv6 link-local address, hence no ND/MLD of the kernel's own; works
      // where /proc/sys is read-only (a container), unlike disable_ipv6
      await runner.check('ip', ['link', 'set', d, 'addrgenmode', 'none']);
      await runner.run('sysctl', ['-qw', `net.ipv6.conf.${d}.disable_ipv6=1`]);
    }
    link = await getLink(runner, dev);
    if (!link) throw new Error(`capture device ${dev} vanished after creation`);
  }
  for (const d of [dev, peer]) await runner.check('ip', ['link', 'set', d, 'up']);
  return link;
}

export async function deleteLink(runner: Runner, name: string): Promise<void> {
  const r = await runner.run('ip', ['link', 'del', name]);
  if (r.exitCode !== 0 && !/Cannot find device/.test(r.stderr)) throw new Error(`ip link del ${name}: ${r.stderr.trim()}`);
}
