/**
 * In-band announcements to the collector: which interface each ifindex is
 * (namespace/pod when known), the node's clock pair for timestamps, and the
 * address they come from, each signed with the node's key (wire/auth.ts: a
 * MAC over the message, its time and a fresh nonce; the key itself never
 * leaves the node). Sent from the node's own address on the tunnel port when
 * a session starts, whenever the interfaces change, and periodically (so a
 * restarted collector learns them again, and its grant of the stream never
 * lapses). Large lists are split.
 */
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { isIPv6 } from 'node:net';
import { encodeAnnouncement, encodeAnnouncements, monotonicRealtimePair, type AnnouncedInterface } from '../wire/announce.ts';
import type { NodeKeySource } from '../wire/auth.ts';
import { ExitCode, UserError } from '../util/errors.ts';
import { silentLogger, type Logger } from '../util/log.ts';
import type { TunnelKind } from '../wire/sizes.ts';

export type { AnnouncedInterface };

/**
 * A socket error of one kind is a warning at most this often; its repeats in
 * between are debug, counted in the next warning. A connected UDP socket
 * reports the collector's ICMP port unreachable (ECONNREFUSED) on the send
 * after it, so an unreachable collector would warn on every announcement (each
 * interval, each report): the capture's status says CollectorUnreachable
 * already, and the log stays readable.
 */
export const SOCKET_ERROR_WARN_MS = 60_000;

export interface AnnouncerOptions {
  collector: { address: string; port: number };
  node: string;
  sender: 'agent' | 'sniff';
  tunnel: TunnelKind;
  /** the policy's snap length (0 = all): the collector writes it into the interface blocks */
  snapLength?: number | undefined;
  /** the node's key: announcements are signed with it (absent: unsigned, for a collector without a secret) */
  key?: NodeKeySource | undefined;
  /** The loaded object's instance id (changes when the object is swapped). */
  instance: () => number;
  policy: { namespace: string; name: string; uid: string } | null;
  interfaces: () => Promise<AnnouncedInterface[]>;
  intervalMs?: number;
  logger?: Logger;
}

export class Announcer {
  private readonly opts: AnnouncerOptions;
  private readonly senderId = randomBytes(8).toString('hex');
  private socket: Socket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  private lastError: { code: string; warnedAt: number; repeats: number } | undefined;
  sent = 0;

  constructor(opts: AnnouncerOptions) {
    this.opts = opts;
    this.log = opts.logger ?? silentLogger;
  }

  async start(): Promise<void> {
    const { address, port } = this.opts.collector;
    const socket = createSocket(isIPv6(address) ? 'udp6' : 'udp4');
    socket.on('error', (err) => this.socketError(err));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(port, address, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    this.socket = socket;
    await this.announceNow();
    this.timer = setInterval(() => void this.announceNow(), this.opts.intervalMs ?? 5000);
    this.timer.unref();
  }

  private socketError(err: Error): void {
    const code = (err as NodeJS.ErrnoException).code ?? err.message;
    const last = this.lastError;
    const now = Date.now();
    if (last && last.code === code && now - last.warnedAt < SOCKET_ERROR_WARN_MS) {
      last.repeats++;
      this.log.debug({ err }, 'announcement socket error (again)');
      return;
    }
    this.log.warn({ err, ...(last?.repeats ? { repeatsOfPrevious: last.repeats } : {}) }, `announcement socket error (repeats are logged at debug for ${SOCKET_ERROR_WARN_MS / 1000} s)`);
    this.lastError = { code, warnedAt: now, repeats: 0 };
  }

  /** The announcements for the current state (split to fit a datagram). */
  async build(instance = this.opts.instance()): Promise<Buffer[]> {
    const key = await this.opts.key?.current();
    return encodeAnnouncements({
      v: 2,
      node: this.opts.node,
      // the address the kernel chose for the connected socket: the one the data plane sends from too
      source: this.socket?.address().address ?? '0.0.0.0',
      sender: this.opts.sender,
      senderId: this.senderId,
      instance,
      tunnel: this.opts.tunnel,
      snapLength: this.opts.snapLength ?? 0,
      policy: this.opts.policy,
      clock: monotonicRealtimePair(),
      interfaces: await this.opts.interfaces(),
    }, { key });
  }

  /** Announce now, for @instance (default: the session's current one). */
  async announceNow(instance?: number): Promise<void> {
    const socket = this.socket;
    if (!socket) return;
    try {
      for (const msg of await this.build(instance)) {
        await new Promise<void>((resolve) => socket.send(msg, () => resolve()));
        this.sent++;
      }
    } catch (err) {
      this.log.warn({ err }, 'announcement failed');
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    const s = this.socket;
    this.socket = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

/**
 * Best-effort reachability check of a UDP collector: a datagram to a port
 * nobody listens on comes back as ICMP port unreachable (ECONNREFUSED on the
 * next operation of a connected socket); no route fails at once.
 */
export async function probeCollector(collector: { address: string; port: number }, waitMs = 300): Promise<void> {
  const socket = createSocket(isIPv6(collector.address) ? 'udp6' : 'udp4');
  const fail = (why: string) =>
    new UserError(`collector ${collector.address}:${collector.port} is unreachable: ${why}`, {
      exitCode: ExitCode.unreachable,
      hint: 'start it (podtap collector --listen ADDR:PORT --out DIR) or fix --collector',
    });
  const code = (err: Error) => (err as NodeJS.ErrnoException).code ?? err.message;
  // an unsigned, empty announcement: a collector counts it (unauthenticated, or as an announcement of nothing)
  const probe = (): Buffer =>
    encodeAnnouncement({
      v: 2, node: 'probe', source: socket.address().address, sender: 'sniff', senderId: 'probe', instance: 0, tunnel: 'Geneve',
      policy: null, clock: monotonicRealtimePair(), interfaces: [],
    });
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', (err) => reject(fail(code(err))));
      socket.connect(collector.port, collector.address, () => {
        socket.send(probe(), (err) => {
          if (err) return reject(fail(code(err)));
          // a second send surfaces a pending ICMP error as ECONNREFUSED
          timer = setTimeout(() => {
            socket.send(probe(), (e2) => (e2 ? reject(fail(code(e2))) : (timer = setTimeout(resolve, 50))));
          }, waitMs);
        });
      });
    });
  } finally {
    clearTimeout(timer);
    socket.close();
  }
}
