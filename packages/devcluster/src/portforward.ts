/**
 * pods/portforward, with the stand-in kubelet's half: each forwarded port is a
 * TCP connection to the pod's `status.podIP`. Three wire forms, as a 1.32
 * control plane offers them:
 *
 * - WebSocket with `SPDY/3.1+portforward.k8s.io`: kube-apiserver's tunnel,
 *   what kubectl 1.32 tries first (GET). SPDY frames ride in binary messages.
 * - WebSocket with `v4.channel.k8s.io`, `v4.base64.channel.k8s.io` or no
 *   subprotocol: the kubelet's channel protocol, what client-node's
 *   PortForward speaks. Ports come from `?ports=`; channel 2i carries port i's
 *   data, 2i+1 its errors, and each starts with the port, 2 bytes little-endian.
 * - A plain SPDY/3.1 upgrade (POST, `X-Stream-Protocol-Version:
 *   portforward.k8s.io`): kubectl's fallback (KUBECTL_PORT_FORWARD_WEBSOCKETS=false).
 *
 * In both SPDY forms a connection is a pair of streams (`streamType` data and
 * error, one `requestID`, the `port` header). Failures found before the
 * upgrade are HTTP Status responses; after it, a message on the error channel
 * or stream: `error forwarding port P to pod NAME, uid UID: dial tcp …`.
 */
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import { connect, isIPv6, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createWebSocketStream, WebSocketServer, type RawData, type WebSocket } from 'ws';
import type { Logger } from 'pino';
import type { Api } from './api.ts';
import { ApiError, asApiError, badRequest } from './errors.ts';
import { getPath, type KubeObject } from './objects.ts';
import type { ResourceDef } from './registry.ts';
import { SpdyConnection, type SpdyStream } from './spdy.ts';

export const TUNNEL_PROTOCOL = 'SPDY/3.1+portforward.k8s.io';
export const CHANNEL_PROTOCOLS = ['v4.channel.k8s.io', 'v4.base64.channel.k8s.io'] as const;
const SPDY_PROTOCOL = 'portforward.k8s.io';
const PATH = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/portforward\/?$/;
/** The kubelet's default stream creation timeout: how long half of a stream pair waits for the other. */
const PAIR_TIMEOUT_MS = 30_000;
/** Bytes queued on a WebSocket above which a pod connection stops being read. */
const WS_HIGH_WATER = 1024 * 1024;

export interface PodTarget {
  namespace: string;
  name: string;
  uid: string;
  ip: string;
}

interface Session {
  destroy(): void;
}

export class PortForwarding {
  private readonly api: Api;
  private readonly pods: ResourceDef;
  private readonly log: Logger;
  private readonly sessions = new Set<Session>();
  private readonly chosen = new WeakMap<IncomingMessage, string>();
  private readonly wss: WebSocketServer;

  constructor(api: Api, pods: ResourceDef, log: Logger) {
    this.api = api;
    this.pods = pods;
    this.log = log;
    this.wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      handleProtocols: (_offered, req) => this.chosen.get(req) || false,
    });
  }

  /** Whether an upgrade request is this module's (http.Server's shouldUpgradeCallback); others get ordinary responses. */
  claims(req: IncomingMessage): boolean {
    return PATH.test(new URL(req.url ?? '/', 'http://devcluster').pathname);
  }

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', (err) => this.log.debug({ err }, 'port-forward socket error'));
    try {
      const url = new URL(req.url ?? '/', 'http://devcluster');
      const target = this.target(url);
      const upgrade = String(req.headers.upgrade ?? '').toLowerCase();
      if (upgrade === 'websocket') return this.upgradeWebSocket(req, socket, head, url, target);
      if (upgrade.split(',').some((u) => u.trim() === 'spdy/3.1')) return this.upgradeSpdy(req, socket, head, target);
      throw badRequest(`unable to upgrade: missing upgrade headers in request: ${JSON.stringify(req.headers.upgrade ?? '')}`);
    } catch (err) {
      rejectUpgrade(socket, asApiError(err));
    }
  }

  close(): void {
    for (const s of this.sessions) s.destroy();
    this.sessions.clear();
    this.wss.close();
  }

  /** The pod, as kube-apiserver resolves it before it proxies: 404 for none, 400 for one that cannot be reached. */
  target(url: URL): PodTarget {
    const m = PATH.exec(url.pathname)!;
    const namespace = decodeURIComponent(m[1]!);
    const name = decodeURIComponent(m[2]!);
    const pod: KubeObject = this.api.get(this.pods, namespace, name);
    const ip = getPath(pod, ['status', 'podIP']);
    if (typeof ip !== 'string' || ip === '') {
      if (!getPath(pod, ['spec', 'nodeName'])) throw badRequest(`pod ${name} does not have a host assigned`);
      throw badRequest(`pod ${name} does not have an IP address (status.podIP is empty)`);
    }
    return { namespace, name, uid: pod.metadata.uid ?? '', ip };
  }

  private track(s: Session): () => void {
    this.sessions.add(s);
    return () => this.sessions.delete(s);
  }

  private upgradeWebSocket(req: IncomingMessage, socket: Duplex, head: Buffer, url: URL, target: PodTarget): void {
    const offered = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean);
    if (offered.some((p) => p.startsWith('SPDY/3.1+'))) {
      if (!offered.includes(TUNNEL_PROTOCOL)) throw badRequest(`unable to upgrade: no tunneling spdy protocols provided: ${offered.join(', ')}`);
      this.chosen.set(req, TUNNEL_PROTOCOL);
      // ws refuses '/' in a subprotocol (RFC 6455 wants HTTP tokens); gorilla and kube-apiserver take it. ws is
      // shown a stand-in token, and the handshake reply still names the real protocol (handleProtocols).
      req.headers['sec-websocket-protocol'] = 'spdy-tunnel';
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        this.log.debug({ pod: target.name, transport: 'websocket', protocol: TUNNEL_PROTOCOL }, 'port-forward session');
        ws.on('error', (err) => this.log.debug({ err }, 'port-forward websocket error'));
        this.serveSpdy(createWebSocketStream(ws), target);
      });
      return;
    }
    // The kubelet takes the client's first protocol it knows; a client that names none gets binary channels.
    const protocol = offered.length === 0 ? '' : offered.find((p) => (CHANNEL_PROTOCOLS as readonly string[]).includes(p));
    if (protocol === undefined) {
      throw new ApiError(403, 'Forbidden', `requested protocol(s) are not supported: [${offered.join(' ')}]; supports [ ${CHANNEL_PROTOCOLS.join(' ')}]`);
    }
    const ports = parsePorts(url.searchParams);
    this.chosen.set(req, protocol);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.log.debug({ pod: target.name, transport: 'websocket', protocol, ports }, 'port-forward session');
      ws.on('error', (err) => this.log.debug({ err }, 'port-forward websocket error'));
      const untrack = this.track({ destroy: () => ws.terminate() });
      ws.once('close', untrack);
      serveChannels(ws, protocol === 'v4.base64.channel.k8s.io', target, ports);
    });
  }

  /** httpstream.Handshake and spdy's response upgrader, then the raw connection is SPDY. */
  private upgradeSpdy(req: IncomingMessage, socket: Duplex, head: Buffer, target: PodTarget): void {
    const versions = String(req.headers['x-stream-protocol-version'] ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean);
    if (versions.length === 0) throw badRequest('unable to upgrade: X-Stream-Protocol-Version is required');
    if (!versions.includes(SPDY_PROTOCOL)) {
      throw new ApiError(403, 'Forbidden', `unable to upgrade: unable to negotiate protocol: client supports [${versions.join(' ')}], server accepts [${SPDY_PROTOCOL}]`);
    }
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n' + `X-Stream-Protocol-Version: ${SPDY_PROTOCOL}\r\n\r\n`,
    );
    if (head.length) socket.unshift(head);
    (socket as Socket).setNoDelay?.(true);
    this.log.debug({ pod: target.name, transport: 'spdy', protocol: SPDY_PROTOCOL }, 'port-forward session');
    this.serveSpdy(socket, target);
  }

  private serveSpdy(transport: Duplex, target: PodTarget): void {
    const pairs = new Map<string, StreamPair>();
    const sockets = new Set<Socket>();
    const conn = new SpdyConnection(transport, (s) => acceptStream(s), this.log);
    const untrack = this.track({ destroy: () => transport.destroy() });
    conn.onclose = () => {
      untrack();
      for (const p of pairs.values()) clearTimeout(p.timer);
      pairs.clear();
      for (const s of sockets) s.destroy();
    };
    const acceptStream = (s: SpdyStream) => {
      const type = s.header('streamType');
      if (type !== 'data' && type !== 'error') return s.reset();
      // Clients older than requestID pair streams by id: the error stream first, its data stream next.
      const id = s.header('requestID') ?? String(type === 'error' ? s.id : s.id - 2);
      let pair = pairs.get(id);
      if (!pair) {
        const p: StreamPair = {
          timer: setTimeout(() => {
            pairs.delete(id);
            if (p.error) {
              p.error.write(Buffer.from(`timed out waiting for streams of request ${id}`));
              p.error.end();
            }
            p.data?.reset();
          }, PAIR_TIMEOUT_MS),
        };
        pairs.set(id, p);
        pair = p;
      }
      if (pair[type]) return s.reset();
      pair[type] = s;
      s.reply();
      if (pair.data && pair.error) {
        clearTimeout(pair.timer);
        pairs.delete(id);
        const sock = forwardStreams(conn, pair.data, pair.error, target);
        if (!sock) return;
        sockets.add(sock);
        sock.once('close', () => sockets.delete(sock));
      }
    };
  }
}

interface StreamPair {
  data?: SpdyStream;
  error?: SpdyStream;
  timer: NodeJS.Timeout;
}

/** One forwarded connection over a SPDY stream pair. Half-closes pass through: the client's FIN ends the write side to the pod, the pod's FIN ends the data stream. */
function forwardStreams(conn: SpdyConnection, data: SpdyStream, error: SpdyStream, target: PodTarget): Socket | undefined {
  const portHeader = data.header('port') ?? '';
  const port = /^\d+$/.test(portHeader) ? Number(portHeader) : 0;
  if (port < 1 || port > 65535) {
    error.write(Buffer.from(forwardingError(port, target, `invalid port ${JSON.stringify(portHeader)}`)));
    error.end();
    data.end();
    return undefined;
  }
  const sock = connect({ host: target.ip, port, allowHalfOpen: true });
  let failure: string | undefined;
  let holding = false;
  const release = () => {
    if (holding) conn.resumeInput();
    holding = false;
  };
  data.ondata = (chunk) => {
    // A socket that is gone never drains: what comes for it after is dropped, the error stream tells why.
    if (!sock.writable) return;
    if (!sock.write(chunk) && !holding) {
      holding = true;
      conn.holdInput();
      sock.once('drain', release);
    }
  };
  data.onend = () => sock.end();
  data.onreset = () => sock.destroy();
  sock.on('data', (chunk: Buffer) => {
    if (!data.write(chunk)) {
      sock.pause();
      conn.whenDrained(() => sock.resume());
    }
  });
  sock.on('end', () => data.end());
  sock.on('error', (err: NodeJS.ErrnoException) => {
    failure ??= netError(target.ip, port, err);
  });
  sock.on('close', () => {
    release();
    // The kubelet's order: the message, the error stream's FIN, then the data stream's.
    if (failure) error.write(Buffer.from(forwardingError(port, target, failure)));
    error.end();
    data.end();
  });
  return sock;
}

/** The kubelet's WebSocket port-forward: all ports dialled at once; the session closes when every one has ended. */
function serveChannels(ws: WebSocket, base64: boolean, target: PodTarget, ports: number[]): void {
  const send = (channel: number, payload: Buffer, cb?: (err?: Error) => void) => {
    if (ws.readyState !== ws.OPEN) return;
    if (base64) ws.send(String.fromCharCode(48 + channel) + payload.toString('base64'), cb);
    else ws.send(Buffer.concat([Buffer.of(channel), payload]), cb);
  };
  let open = ports.length;
  let holds = 0;
  const sockets = ports.map((port, i) => {
    const portBytes = Buffer.alloc(2);
    portBytes.writeUInt16LE(port);
    send(2 * i, portBytes);
    send(2 * i + 1, portBytes);
    const sock = connect({ host: target.ip, port });
    let failure: string | undefined;
    sock.on('data', (chunk: Buffer) => {
      if (ws.bufferedAmount < WS_HIGH_WATER) return send(2 * i, chunk);
      sock.pause();
      send(2 * i, chunk, () => sock.resume());
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      failure ??= netError(target.ip, port, err);
    });
    sock.on('close', () => {
      if (failure) send(2 * i + 1, Buffer.from(forwardingError(port, target, failure)));
      if (--open === 0 && ws.readyState === ws.OPEN) ws.close(1000);
    });
    return sock;
  });
  ws.on('message', (msg: RawData, isBinary: boolean) => {
    const raw = Buffer.isBuffer(msg) ? msg : Array.isArray(msg) ? Buffer.concat(msg) : Buffer.from(msg);
    if (raw.length === 0) return;
    const channel = base64 && !isBinary ? raw[0]! - 48 : raw[0]!;
    const payload = base64 && !isBinary ? Buffer.from(raw.subarray(1).toString('latin1'), 'base64') : raw.subarray(1);
    // Only data channels are readable; frames for others are dropped, as wsstream drops them.
    const sock = channel % 2 === 0 ? sockets[channel / 2] : undefined;
    if (!sock || !sock.writable || payload.length === 0) return;
    if (!sock.write(payload)) {
      if (holds++ === 0) ws.pause();
      const release = () => {
        sock.off('drain', release);
        sock.off('close', release);
        if (--holds === 0) ws.resume();
      };
      sock.on('drain', release);
      sock.on('close', release);
    }
  });
  ws.on('close', () => {
    for (const s of sockets) s.destroy();
  });
}

/** `ports=8080,9090` or repeated: kube-apiserver's conversion, then the kubelet's checks. */
export function parsePorts(q: URLSearchParams): number[] {
  const ports: number[] = [];
  for (const value of q.getAll('ports')) {
    for (const p of value.split(',')) {
      if (!/^\d+$/.test(p) || Number(p) > 65535) {
        throw badRequest(`cannot convert to []int32: strconv.ParseUint: parsing ${JSON.stringify(p)}: ${/^\d+$/.test(p) ? 'value out of range' : 'invalid syntax'}`);
      }
      if (Number(p) < 1) throw badRequest(`port ${JSON.stringify(value)} must be > 0`);
      ports.push(Number(p));
    }
  }
  if (ports.length === 0) throw badRequest('query parameter "port" is required');
  return ports;
}

function forwardingError(port: number, target: PodTarget, why: string): string {
  return `error forwarding port ${port} to pod ${target.name}, uid ${target.uid}: ${why}`;
}

const errnoText: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset by peer',
  EHOSTUNREACH: 'no route to host',
  ENETUNREACH: 'network is unreachable',
  ETIMEDOUT: 'connection timed out',
  EPIPE: 'broken pipe',
};

/** Go's wording for a failed dial (`dial tcp 10.0.0.5:80: connect: connection refused`), which users of real clusters know. */
function netError(ip: string, port: number, err: NodeJS.ErrnoException): string {
  const text = err.code ? errnoText[err.code] : undefined;
  if (!text || !err.syscall) return err.message;
  const addr = isIPv6(ip) ? `[${ip}]:${port}` : `${ip}:${port}`;
  return err.syscall === 'connect' ? `dial tcp ${addr}: connect: ${text}` : `${err.syscall} tcp ${addr}: ${text}`;
}

/** A Status response on a socket that was not upgraded. */
function rejectUpgrade(socket: Duplex, err: ApiError): void {
  const body = JSON.stringify(err.toStatus());
  socket.end(
    `HTTP/1.1 ${err.code} ${STATUS_CODES[err.code] ?? 'Error'}\r\n` +
      'Content-Type: application/json\r\nCache-Control: no-cache, private\r\nConnection: close\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
