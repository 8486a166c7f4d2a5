/**
 * pods/portforward with the real clients: client-node's PortForward (the
 * kubelet's WebSocket channel protocol), kubectl port-forward (SPDY tunnelled
 * through a WebSocket, and its plain SPDY fallback), a 20 MB transfer each way,
 * and the errors before and after the upgrade. The "pod" is an object whose
 * status.podIP is 127.0.0.1, in front of TCP servers in this process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { execa, type ResultPromise } from 'execa';
import { PortForward } from '@kubernetes/client-node';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { eventually, http, kubectl, startCluster, type Cluster } from './harness.ts';

let c: Cluster;
let echo: Server;
let echoPort: number;
let refusedPort: number;
/** What the server logged about port-forward sessions: which transport each client took. */
const sessions: { transport: string; protocol: string }[] = [];

const MERGE = { 'Content-Type': 'application/merge-patch+json' };

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function createPod(name: string, status: Record<string, unknown>): Promise<string> {
  const pod = await http(c, 'POST', '/api/v1/namespaces/default/pods', { metadata: { name }, spec: { containers: [{ name: 'c', image: 'collector' }] } });
  expect(pod.status).toBe(201);
  if (Object.keys(status).length) expect((await http(c, 'PATCH', `/api/v1/namespaces/default/pods/${name}/status`, { status }, MERGE)).status).toBe(200);
  return pod.json.metadata.uid;
}

let echoUid = '';

beforeAll(async () => {
  const logs = new Writable({
    write(line: Buffer, _enc, done) {
      const entry = JSON.parse(line.toString());
      if (entry.msg === 'port-forward session') sessions.push({ transport: entry.transport, protocol: entry.protocol });
      done();
    },
  });
  c = await startCluster({ logger: pino({ level: 'debug' }, logs) });
  echo = createServer((s) => s.pipe(s));
  echoPort = await listen(echo);
  const closed = createServer();
  refusedPort = await listen(closed);
  await new Promise((r) => closed.close(r));
  echoUid = await createPod('echo', { phase: 'Running', podIP: '127.0.0.1' });
  await createPod('pending', {});
});
afterAll(async () => {
  await c?.close();
  echo?.close();
});

// ---- helpers ---------------------------------------------------------------------------

/** Reads from a stream until `size` bytes arrived. */
async function readBytes(stream: NodeJS.ReadableStream, size: number, timeoutMs = 20_000): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${got} of ${size} bytes`)), timeoutMs);
    const onData = (b: Buffer) => {
      chunks.push(b);
      got += b.length;
      if (got >= size) {
        clearTimeout(timer);
        stream.off('data', onData);
        resolve(Buffer.concat(chunks));
      }
    };
    stream.on('data', onData);
  });
}

/** Sends `data` over a fresh TCP connection, half-closes, and returns all that came back until the peer closed. */
async function roundTrip(port: number, data: Buffer): Promise<Buffer> {
  const s: Socket = connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  s.on('data', (b: Buffer) => chunks.push(b));
  s.end(data);
  await once(s, 'close');
  return Buffer.concat(chunks);
}

interface Forwarder {
  proc: ResultPromise;
  localPort: number;
  stderr(): string;
  stop(): Promise<void>;
}

/** `kubectl port-forward pod/NAME 0:PORT`, running until stopped; resolves once it prints "Forwarding from". */
async function portForward(pod: string, port: number, env: Record<string, string> = {}): Promise<Forwarder> {
  const proc = execa('kubectl', ['port-forward', `pod/${pod}`, `0:${port}`, '--address', '127.0.0.1'], {
    env: { KUBECONFIG: c.kubeconfig, KUBECACHEDIR: join(c.dir, 'kube-cache'), ...env },
    reject: false,
    buffer: false,
  });
  let out = '';
  let err = '';
  proc.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const localPort = await new Promise<number>((resolve, reject) => {
    proc.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /Forwarding from 127\.0\.0\.1:(\d+) ->/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    void proc.then((r) => reject(new Error(`kubectl port-forward exited (${r.exitCode}) before forwarding: ${err}`)));
  });
  return {
    proc,
    localPort,
    stderr: () => err,
    async stop() {
      proc.kill('SIGINT');
      await proc;
    },
  };
}

/** A raw WebSocket to the subresource, for what client-node does not expose (protocols, several ports). */
async function openChannels(query: string, protocol: string, cluster: Cluster = c): Promise<{ ws: WebSocket; frames: { channel: number; data: Buffer }[]; closed: Promise<unknown> }> {
  const ws = new WebSocket(`${cluster.url.replace('http', 'ws')}/api/v1/namespaces/default/pods/echo/portforward?${query}`, [protocol]);
  const frames: { channel: number; data: Buffer }[] = [];
  ws.on('message', (m: Buffer, isBinary) => {
    if (isBinary) frames.push({ channel: m[0]!, data: m.subarray(1) });
    else frames.push({ channel: m[0]! - 48, data: Buffer.from(m.subarray(1).toString(), 'base64') });
  });
  const closed = once(ws, 'close');
  await once(ws, 'open');
  expect(ws.protocol).toBe(protocol);
  return { ws, frames, closed };
}

const portBytes = (p: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(p);
  return b;
};

// ---- tests ------------------------------------------------------------------------------

describe('pods/portforward', () => {
  it('is in discovery with the verbs create and get', async () => {
    const legacy = await http(c, 'GET', '/api/v1');
    expect(legacy.json.resources.find((r: { name: string }) => r.name === 'pods/portforward')).toEqual({
      name: 'pods/portforward',
      singularName: '',
      namespaced: true,
      kind: 'PodPortForwardOptions',
      verbs: ['create', 'get'],
    });
    const agg = await http(c, 'GET', '/api', undefined, { Accept: 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList' });
    const pods = agg.json.items[0].versions[0].resources.find((r: { resource: string }) => r.resource === 'pods');
    expect(pods.subresources).toContainEqual({ subresource: 'portforward', responseKind: { group: '', version: 'v1', kind: 'PodPortForwardOptions' }, verbs: ['create', 'get'] });
  });

  it('round-trips bytes with client-node PortForward (v4.channel.k8s.io)', async () => {
    const output = new PassThrough();
    const errors = new PassThrough();
    const input = new PassThrough();
    const ws = (await new PortForward(c.kc).portForward('default', 'echo', [echoPort], output, errors, input)) as WebSocket;
    expect(ws.protocol).toBe('v4.channel.k8s.io');
    input.write('hello through the API server');
    expect((await readBytes(output, 28)).toString()).toBe('hello through the API server');
    input.end();
    await once(ws, 'close');
  });

  it.each([
    { description: 'binary channels, two ports', protocol: 'v4.channel.k8s.io' },
    { description: 'base64 channels, two ports', protocol: 'v4.base64.channel.k8s.io' },
  ])('speaks the kubelet channel protocol: $description', async ({ protocol }) => {
    const { ws, frames, closed } = await openChannels(`ports=${echoPort}&ports=${refusedPort}`, protocol);
    const send = (channel: number, text: string) =>
      protocol.includes('base64') ? ws.send(String.fromCharCode(48 + channel) + Buffer.from(text).toString('base64')) : ws.send(Buffer.concat([Buffer.of(channel), Buffer.from(text)]));
    send(0, 'ping');
    send(2, 'to the closed port');
    await eventually(() => expect(frames.some((f) => f.channel === 0 && f.data.toString() === 'ping')).toBe(true));
    await eventually(() => expect(frames.some((f) => f.channel === 3 && f.data.length > 2)).toBe(true));
    const byChannel = (ch: number) => frames.filter((f) => f.channel === ch).map((f) => f.data);
    // Every channel opens with its port, little-endian, as the kubelet writes it.
    for (const [ch, port] of [[0, echoPort], [1, echoPort], [2, refusedPort], [3, refusedPort]] as const) expect(byChannel(ch)[0]).toEqual(portBytes(port));
    expect(byChannel(3)[1]!.toString()).toBe(
      `error forwarding port ${refusedPort} to pod echo, uid ${echoUid}: dial tcp 127.0.0.1:${refusedPort}: connect: connection refused`,
    );
    ws.close();
    await closed;
  });

  it.each<{ description: string; env: Record<string, string>; expected: { transport: string; protocol: string } }>([
    { description: 'SPDY tunnelled in a WebSocket (kubectl 1.32 default)', env: {}, expected: { transport: 'websocket', protocol: 'SPDY/3.1+portforward.k8s.io' } },
    { description: 'plain SPDY (KUBECTL_PORT_FORWARD_WEBSOCKETS=false)', env: { KUBECTL_PORT_FORWARD_WEBSOCKETS: 'false' }, expected: { transport: 'spdy', protocol: 'portforward.k8s.io' } },
  ])('kubectl port-forward echoes: $description', async ({ env, expected }) => {
    const before = sessions.length;
    const fwd = await portForward('echo', echoPort, env);
    try {
      expect(sessions.slice(before)).toEqual([expected]);
      expect((await roundTrip(fwd.localPort, Buffer.from('hello\n'))).toString()).toBe('hello\n');
      // Several connections at once, each its own stream pair in the one session.
      const texts = Array.from({ length: 8 }, (_, i) => `connection ${i} `.repeat(1000));
      const back = await Promise.all(texts.map((t) => roundTrip(fwd.localPort, Buffer.from(t))));
      expect(back.map((b) => b.toString())).toEqual(texts);
      expect(sessions.length).toBe(before + 1);
    } finally {
      await fwd.stop();
    }
    expect(fwd.stderr()).toBe('');
  });

  it('ends its sessions when the API server closes', async () => {
    const other = await startCluster();
    await http(other, 'POST', '/api/v1/namespaces/default/pods', { metadata: { name: 'echo' }, spec: { containers: [{ name: 'c', image: 'x' }] } });
    await http(other, 'PATCH', '/api/v1/namespaces/default/pods/echo/status', { status: { podIP: '127.0.0.1' } }, MERGE);
    const { closed } = await openChannels(`ports=${echoPort}`, 'v4.channel.k8s.io', other);
    await other.close();
    await closed;
  });
});

describe('a 20 MB transfer arrives intact and in order', () => {
  const payload = randomBytes(20 * 1024 * 1024);
  const digest = (b: Buffer) => createHash('sha256').update(b).digest('hex');

  it('through kubectl port-forward (WebSocket tunnel)', async () => {
    const fwd = await portForward('echo', echoPort);
    try {
      const back = await roundTrip(fwd.localPort, payload);
      expect(back.length).toBe(payload.length);
      expect(digest(back)).toBe(digest(payload));
    } finally {
      await fwd.stop();
    }
  });

  it('through client-node PortForward', async () => {
    const output = new PassThrough();
    const input = new PassThrough();
    const ws = (await new PortForward(c.kc).portForward('default', 'echo', [echoPort], output, null, input)) as WebSocket;
    const back = readBytes(output, payload.length);
    for (let at = 0; at < payload.length; at += 256 * 1024) input.write(payload.subarray(at, at + 256 * 1024));
    const got = await back;
    expect(got.length).toBe(payload.length);
    expect(digest(got)).toBe(digest(payload));
    input.end();
    await once(ws, 'close');
  });
});

describe('errors', () => {
  it('kubectl fails clearly for an unknown pod', async () => {
    const r = await kubectl(c, ['port-forward', 'pod/nope', `0:${echoPort}`]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe('Error from server (NotFound): pods "nope" not found\n');
  });

  it('kubectl reports a refused port from the error stream, then stops', async () => {
    const fwd = await portForward('echo', refusedPort);
    expect((await roundTrip(fwd.localPort, Buffer.from('anyone?'))).length).toBe(0);
    const r = await fwd.proc;
    expect(r.exitCode).toBe(1);
    expect(fwd.stderr()).toContain(
      `an error occurred forwarding ${fwd.localPort} -> ${refusedPort}: error forwarding port ${refusedPort} to pod echo, uid ${echoUid}: dial tcp 127.0.0.1:${refusedPort}: connect: connection refused`,
    );
    expect(fwd.stderr()).toContain('error: lost connection to pod');
  });

  it('client-node gets a refused port on the error channel', async () => {
    const output = new PassThrough();
    const errors = new PassThrough();
    const ws = (await new PortForward(c.kc).portForward('default', 'echo', [refusedPort], output, errors, new PassThrough())) as WebSocket;
    const closed = once(ws, 'close');
    const text = `error forwarding port ${refusedPort} to pod echo, uid ${echoUid}: dial tcp 127.0.0.1:${refusedPort}: connect: connection refused`;
    expect((await readBytes(errors, text.length)).toString()).toBe(text);
    await closed;
  });

  it('client-node is refused an unknown pod before the upgrade', async () => {
    await expect(new PortForward(c.kc).portForward('default', 'nope', [echoPort], new PassThrough(), null, new PassThrough())).rejects.toThrow(
      'Unexpected server response: 404',
    );
  });

  const upgradeHeaders = (protocol: string) => ({
    Connection: 'Upgrade',
    Upgrade: 'websocket',
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
    'Sec-WebSocket-Protocol': protocol,
  });

  it.each([
    { description: 'an unknown pod', path: 'nope/portforward?ports=80', headers: upgradeHeaders('v4.channel.k8s.io'), expected: { code: 404, message: 'pods "nope" not found' } },
    {
      description: 'a pod without a node or IP',
      path: 'pending/portforward?ports=80',
      headers: upgradeHeaders('v4.channel.k8s.io'),
      expected: { code: 400, message: 'pod pending does not have a host assigned' },
    },
    { description: 'no ports', path: 'echo/portforward', headers: upgradeHeaders('v4.channel.k8s.io'), expected: { code: 400, message: 'query parameter "port" is required' } },
    {
      description: 'a port that is not a number',
      path: 'echo/portforward?ports=http',
      headers: upgradeHeaders('v4.channel.k8s.io'),
      expected: { code: 400, message: 'cannot convert to []int32: strconv.ParseUint: parsing "http": invalid syntax' },
    },
    {
      description: 'a subprotocol the kubelet does not speak',
      path: 'echo/portforward?ports=80',
      headers: upgradeHeaders('v5.channel.k8s.io'),
      expected: { code: 403, message: 'requested protocol(s) are not supported: [v5.channel.k8s.io]; supports [ v4.channel.k8s.io v4.base64.channel.k8s.io]' },
    },
    { description: 'no upgrade at all', path: 'echo/portforward?ports=80', headers: {}, expected: { code: 400, message: 'Upgrade request required' } },
  ])('answers $description with a Status before any upgrade', async ({ path, headers, expected }) => {
    const r = await rawRequest(`/api/v1/namespaces/default/pods/${path}`, headers);
    expect({ code: r.status, message: r.json?.message }).toEqual(expected);
    expect(r.json).toMatchObject({ kind: 'Status', status: 'Failure', code: expected.code });
  });
});

/** A GET over node:http, which (unlike fetch) sends Connection and Upgrade as given. */
async function rawRequest(path: string, headers: Record<string, string>): Promise<{ status: number; json: any }> {
  const { request } = await import('node:http');
  return new Promise((resolve, reject) => {
    const req = request(`${c.url}${path}`, { headers }, (res) => {
      let text = '';
      res.on('data', (b: Buffer) => (text += b.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }));
    });
    req.on('upgrade', () => reject(new Error('unexpected upgrade')));
    req.on('error', reject);
    req.end();
  });
}
