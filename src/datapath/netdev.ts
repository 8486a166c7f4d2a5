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
  num_tx_queues?: number;
  num_rx_queues?: number;
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

/** What the emit stage needs of the capture device (bpf/podtap.bpf.c, pt_tunnel). */
const CAPTURE_FEATURES: { dev: 'dev' | 'peer'; feature: string; on: boolean; why: string }[] = [
  // the kernel completes a carrier's offloaded checksum while it crosses the
  // device, so the pieces built in it carry none a device would write
  { dev: 'dev', feature: 'tx-checksumming', on: false, why: 'carriers lose their offloaded checksum' },
  { dev: 'dev', feature: 'tx-checksum-sctp', on: false, why: 'carriers lose their offloaded CRC32c' },
  // carriers reach pt_emit one by one, never held or merged by GRO
  { dev: 'peer', feature: 'generic-receive-offload', on: false, why: 'carriers are never merged' },
];

/**
 * The capture device: a veth pair the agent owns. MTU 65535 so no frame is too
 * big for it; no IPv6 address so the kernel sends nothing of its own through it
 * (the tunnel program would count it as foreign and drop it anyway). @mtu:
 * the device's MTU where 65535 cannot be (a kernel whose veth takes XDP
 * without frags only below a page, features.ts); its peer keeps 65535. A
 * queue per CPU (@queues), so that each CPU's carriers are cut on that CPU
 * (the tunnel program picks the queue) rather than all on whichever polls a
 * single one; transmit checksum offload off and GRO off on the peer
 * (CAPTURE_FEATURES). A device with another number of queues (an older
 * agent's) is made again.
 */
export async function ensureCaptureDevice(runner: Runner, session: string, opts: { queues: number; mtu?: number | undefined }): Promise<Link> {
  const { dev, peer } = captureDeviceNames(session);
  const mtu = opts.mtu ?? CAPTURE_MTU;
  let link = await getLink(runner, dev);
  if (link && link.num_tx_queues !== opts.queues) {
    await deleteLink(runner, dev);
    link = undefined;
  }
  if (link && link.mtu !== mtu) {
    await runner.check('ip', ['link', 'set', 'dev', dev, 'mtu', String(mtu)]);
    link = await getLink(runner, dev);
  }
  if (!link) {
    const q = ['numtxqueues', String(opts.queues), 'numrxqueues', String(opts.queues)];
    await runner.check('ip', ['link', 'add', dev, 'mtu', String(mtu), ...q, 'type', 'veth', 'peer', 'name', peer, 'mtu', String(CAPTURE_MTU), ...q]);
    for (const d of [dev, peer]) {
      // no IPv6 link-local address, hence no ND/MLD of the kernel's own; works
      // where /proc/sys is read-only (a container), unlike disable_ipv6
      await runner.check('ip', ['link', 'set', d, 'addrgenmode', 'none']);
      await runner.run('sysctl', ['-qw', `net.ipv6.conf.${d}.disable_ipv6=1`]);
    }
    link = await getLink(runner, dev);
    if (!link) throw new Error(`capture device ${dev} vanished after creation`);
  }
  for (const f of CAPTURE_FEATURES) {
    const name = f.dev === 'dev' ? dev : peer;
    const r = await runner.run('ethtool', ['-K', name, f.feature, f.on ? 'on' : 'off']);
    if (r.exitCode !== 0) throw new Error(`ethtool -K ${name} ${f.feature} ${f.on ? 'on' : 'off'} (${f.why}): ${r.stderr.trim()}`);
  }
  for (const d of [dev, peer]) await runner.check('ip', ['link', 'set', d, 'up']);
  return link;
}

export async function deleteLink(runner: Runner, name: string): Promise<void> {
  const r = await runner.run('ip', ['link', 'del', name]);
  if (r.exitCode !== 0 && !/Cannot find device/.test(r.stderr)) throw new Error(`ip link del ${name}: ${r.stderr.trim()}`);
}
