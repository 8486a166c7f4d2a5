/**
 * The tunnel sockets, and what the kernel dropped before we read: a UDP
 * socket whose receive buffer is full drops datagrams and counts them in the
 * `drops` column of /proc/net/udp (per socket, in our network namespace).
 * Those are losses too: the collector reports them as `kernelDropped`, along
 * with the bytes waiting in the buffers (`rx_queue`).
 */
import { createSocket, type Socket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { isIPv6 } from 'node:net';

export type OnDatagram = (msg: Buffer, address: string) => void;

/** Binds one tunnel socket; `reusePort` lets several (threads) share the port. */
export function bindSocket(host: string, port: number, reusePort: boolean, recvBufferSize: number, onMessage: OnDatagram): Promise<Socket> {
  const sock = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4', reuseAddr: false, reusePort, recvBufferSize });
  sock.on('message', (msg, rinfo) => {
    const a = rinfo.address;
    // a dual-stack socket reports IPv4 senders as ::ffff:a.b.c.d
    onMessage(msg, a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a);
  });
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind({ address: host, port, exclusive: !reusePort }, () => {
      sock.off('error', reject);
      resolve(sock);
    });
  });
}

export interface UdpSocketInfo {
  inode: string;
  rxQueue: number;
  drops: number;
}

/** The UDP sockets bound to local `port` (IPv4 and IPv6) as /proc/net/udp{,6} lists them. */
export async function udpSockets(port: number, procRoot = '/proc/net'): Promise<UdpSocketInfo[]> {
  const out: UdpSocketInfo[] = [];
  for (const f of ['udp', 'udp6']) {
    let text: string;
    try {
      text = await readFile(`${procRoot}/${f}`, 'utf8');
    } catch {
      continue; // (no IPv6 in this kernel)
    }
    for (const line of text.split('\n').slice(1)) {
      const c = line.trim().split(/\s+/);
      if (c.length < 13) continue;
      const local = c[1]!;
      if (Number.parseInt(local.slice(local.lastIndexOf(':') + 1), 16) !== port) continue;
      const queues = c[4]!.split(':');
      out.push({ inode: c[9]!, rxQueue: Number.parseInt(queues[1] ?? '0', 16), drops: Number(c[12]) });
    }
  }
  return out;
}

/**
 * Kernel drops of the sockets on a port, kept monotonic across sockets that
 * come and go (a restarted worker's socket is new; its predecessor's drops
 * still count).
 */
export class KernelDrops {
  readonly #port: number;
  readonly #procRoot: string;
  readonly #byInode = new Map<string, number>();
  #retired = 0;
  dropped = 0;
  queued = 0;

  constructor(port: number, procRoot = '/proc/net') {
    this.#port = port;
    this.#procRoot = procRoot;
  }

  async refresh(): Promise<void> {
    const socks = await udpSockets(this.#port, this.#procRoot);
    const seen = new Set<string>();
    let queued = 0;
    for (const s of socks) {
      seen.add(s.inode);
      this.#byInode.set(s.inode, Math.max(s.drops, this.#byInode.get(s.inode) ?? 0));
      queued += s.rxQueue;
    }
    for (const [inode, n] of this.#byInode) {
      if (!seen.has(inode)) {
        this.#retired += n;
        this.#byInode.delete(inode);
      }
    }
    let live = 0;
    for (const n of this.#byInode.values()) live += n;
    this.dropped = this.#retired + live;
    this.queued = queued;
  }
}
