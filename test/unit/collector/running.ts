/**
 * A collector on 127.0.0.1 (inside the test's private network namespace) with
 * its HTTP API, a UDP sender, and the datagrams of a small fake cluster.
 */
import { createSocket, type Socket } from 'node:dgram';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startCollector, type Collector, type CollectorOptions } from '../../../src/collector/collector.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { encodeAnnouncement, monotonicRealtimePair, readEnvelope, type AnnouncedInterface } from '../../../src/wire/announce.ts';
import { announcementMac, deriveNodeKey } from '../../../src/wire/auth.ts';
import { encodeFrame, type EncodeOptions } from '../../helpers/encode.ts';
import { ipv4Frame } from '../wire/frames.ts';
import { tempDir } from './helpers.ts';

export const TOKEN = 's3cret-api-token';

export interface Running {
  c: Collector;
  dir: string;
  /** http://127.0.0.1:PORT */
  base: string;
  udp: Socket;
  send(ds: Buffer[]): Promise<void>;
  /** fetch with the bearer token */
  get(path: string, init?: RequestInit): Promise<Response>;
  stop(): Promise<void>;
}

export async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** What a test changes of the collector's defaults here, stage by stage. */
export interface RunningOptions extends Omit<CollectorOptions, 'logger' | 'store' | 'http'> {
  store?: Partial<CollectorOptions['store']>;
}

export async function startRunning(opts: RunningOptions = {}): Promise<Running> {
  const { dir, cleanup } = await tempDir();
  const tokenFile = join(dir, '..', `${dir.split('/').pop()}.token`);
  await writeFile(tokenFile, `${TOKEN}\n`);
  const c = await startCollector({
    ...opts,
    logger: silentLogger,
    ingest: { host: '127.0.0.1', port: 0, ...opts.ingest },
    store: { ...opts.store, dir },
    http: { host: '127.0.0.1', port: 0, tokenFile },
  });
  const udp = createSocket('udp4');
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
  const base = `http://127.0.0.1:${c.http!.port}`;
  return {
    c, dir, base, udp,
    send: (ds) => sendAll(udp, c.address.port, ds),
    get: (path, init = {}) => fetch(`${base}${path}`, { ...init, headers: { Authorization: `Bearer ${TOKEN}`, ...(init.headers ?? {}) } }),
    async stop() {
      udp.close();
      await c.close();
      await cleanup();
      await rm(tokenFile, { force: true });
    },
  };
}

/** Sends in order, pausing now and then so loopback keeps everything. */
export async function sendAll(sock: Socket, port: number, ds: Buffer[], from?: Socket): Promise<void> {
  const s = from ?? sock;
  for (let i = 0; i < ds.length; i++) {
    await new Promise<void>((resolve, reject) => s.send(ds[i]!, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
    if (i % 64 === 63) await new Promise((r) => setTimeout(r, 1));
  }
}

export interface PodSpec {
  ifindex: number;
  namespace: string;
  pod: string;
}

/**
 * An announcement of node-a from 127.0.0.1 (where the tests send from),
 * signed with node-a's key under `secret` when one is given.
 */
export function announcement(policy: { namespace: string; name: string } | null, pods: PodSpec[], opts: { instance?: number; secret?: string; node?: string } = {}): Buffer {
  const interfaces: AnnouncedInterface[] = pods.map((p) => ({
    ifindex: p.ifindex, name: `veth${p.ifindex}`, pod: { namespace: p.namespace, name: p.pod }, directions: ['Ingress', 'Egress'],
  }));
  return encodeAnnouncement({
    v: 2, node: opts.node ?? 'node-a', source: '127.0.0.1', sender: 'agent', senderId: 'test', instance: opts.instance ?? 1, tunnel: 'Geneve',
    policy: policy ? { ...policy, uid: 'u' } : null, clock: monotonicRealtimePair(), interfaces,
  }, opts.secret ? { key: { id: opts.node ?? 'node-a', key: deriveNodeKey(opts.secret, opts.node ?? 'node-a') } } : {});
}

/**
 * An announcement datagram carrying `json` exactly as given, in a valid
 * envelope, signed with `node`'s key under `secret` when one is given: what a
 * forger, or a key holder gone wrong, writes by hand.
 */
export function rawAnnouncement(json: string, secret?: string, node = 'node-a', timeMs = Date.now()): Buffer {
  const shell = encodeAnnouncement(
    { v: 2, node, source: '127.0.0.1', sender: 'agent', senderId: 'raw', instance: 1, tunnel: 'Geneve', policy: null, clock: monotonicRealtimePair(), interfaces: [] },
    { timeMs, ...(secret ? { key: { id: node, key: deriveNodeKey(secret, node) } } : {}) },
  );
  const env = readEnvelope(shell, 16)!;
  const at = env.signed.length - env.json.length;
  const body = Buffer.from(json);
  const signed = Buffer.concat([shell.subarray(0, at), body]);
  signed.writeUInt16BE(body.length, 18);
  return secret ? Buffer.concat([signed, announcementMac(deriveNodeKey(secret, node), signed)]) : signed;
}

/** Sequence numbers per (instance, cpu), as the data plane keeps them. */
export class FrameSource {
  readonly #seq = new Map<string, number>();

  /** Datagrams of `n` frames of `payload` bytes on `ifindex`, alternating direction. */
  frames(n: number, o: { ifindex: number; payload?: number; instance?: number; cpu?: number; toPod?: boolean } & EncodeOptions): Buffer[] {
    const key = `${o.instance ?? 1}/${o.cpu ?? 0}`;
    const out: Buffer[] = [];
    for (let k = 0; k < n; k++) {
      const seq = this.#seq.get(key) ?? 0;
      this.#seq.set(key, seq + 1);
      const frame = ipv4Frame({ proto: 'UDP', payload: o.payload ?? 200, seed: seq + 1 });
      out.push(...encodeFrame(frame, { instance: 1, cpu: 0, toPod: k % 2 === 0, ...o, seq, tstamp: process.hrtime.bigint() }));
    }
    return out;
  }
}
