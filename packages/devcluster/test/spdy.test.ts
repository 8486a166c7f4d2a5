/**
 * The SPDY/3.1 codec behind port-forward, alone and against the server over a
 * plain SPDY upgrade: what kubectl exercises only by chance (pings, streams
 * without requestID, resets, frames split anywhere).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { constants as zc, createDeflate, deflateSync } from 'node:zlib';
import {
  ByteQueue,
  ControlType,
  controlFrame,
  dataFrame,
  decodeHeaderBlock,
  encodeHeaderBlock,
  HEADER_DICTIONARY,
  HeaderCompressor,
  HeaderDecompressor,
  readFrame,
  RstStatus,
  type Frame,
  type SpdyHeaders,
} from '../src/spdy.ts';
import { eventually, http, startCluster, type Cluster } from './harness.ts';

const u32s = (...v: number[]) => Buffer.concat(v.map((n) => Buffer.of(n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255)));

describe('SPDY codec', () => {
  it('has the SPDY/3 dictionary: its zlib id is the one kubectl writes', () => {
    expect(HEADER_DICTIONARY.length).toBe(1423);
    expect(deflateSync(Buffer.alloc(0), { dictionary: HEADER_DICTIONARY }).readUInt32BE(2).toString(16)).toBe('e3c6a7c2');
  });

  it.each<{ description: string; input: SpdyHeaders }>([
    { description: 'no headers', input: {} },
    { description: 'port-forward headers', input: { streamtype: ['data'], port: ['8080'], requestid: ['0'] } },
    { description: 'several values of one name', input: { accept: ['a', 'b', 'c'] } },
  ])('encodes and decodes a header block: $description', ({ input }) => {
    const block = encodeHeaderBlock(input);
    expect(decodeHeaderBlock(block)).toEqual({ headers: input, used: block.length });
    expect(decodeHeaderBlock(block.subarray(0, block.length - 1))).toBeUndefined();
  });

  it('refuses header names that are not lowercase', () => {
    const block = Buffer.concat([u32s(1, 4), Buffer.from('Port'), u32s(2), Buffer.from('80')]);
    expect(() => decodeHeaderBlock(block)).toThrow('invalid header name "Port"');
  });

  it('inflates header blocks of one long zlib stream, as Go writes them, and its own', async () => {
    const blocks: SpdyHeaders[] = [{ streamtype: ['error'], port: ['80'], requestid: ['0'] }, { streamtype: ['data'], port: ['80'], requestid: ['0'] }, {}];
    const peer = createDeflate({ dictionary: HEADER_DICTIONARY });
    const d = new HeaderDecompressor();
    for (const h of blocks) {
      const out: Buffer[] = [];
      const collect = (b: Buffer) => out.push(b);
      peer.on('data', collect);
      peer.write(encodeHeaderBlock(h));
      await new Promise<void>((r) => peer.flush(zc.Z_SYNC_FLUSH, () => r()));
      peer.off('data', collect);
      expect(await d.decompress(Buffer.concat(out))).toEqual(h);
    }
    const mine = new HeaderCompressor();
    const d2 = new HeaderDecompressor();
    for (const h of blocks) expect(await d2.decompress(mine.compress(h))).toEqual(h);
    d.close();
    d2.close();
  });

  it('reads frames split at any byte', () => {
    const wire = Buffer.concat([dataFrame(3, Buffer.from('abc'), true), controlFrame(ControlType.ping, 0, u32s(7))]);
    for (let cut = 0; cut <= wire.length; cut++) {
      const q = new ByteQueue();
      const frames: Frame[] = [];
      for (const part of [wire.subarray(0, cut), wire.subarray(cut)]) {
        q.push(part);
        for (let f = readFrame(q); f; f = readFrame(q)) frames.push(f);
      }
      expect(frames).toEqual([
        { kind: 'data', streamId: 3, flags: 1, data: Buffer.from('abc') },
        { kind: 'control', version: 3, type: ControlType.ping, flags: 0, payload: u32s(7) },
      ]);
    }
  });
});

// ---- against the server ------------------------------------------------------------------

let c: Cluster;
let echo: Server;
let echoPort: number;

beforeAll(async () => {
  c = await startCluster();
  echo = createServer((s) => s.pipe(s));
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  echoPort = (echo.address() as AddressInfo).port;
  await http(c, 'POST', '/api/v1/namespaces/default/pods', { metadata: { name: 'echo' }, spec: { containers: [{ name: 'c', image: 'x' }] } });
  await http(c, 'PATCH', '/api/v1/namespaces/default/pods/echo/status', { status: { phase: 'Running', podIP: '127.0.0.1' } }, { 'Content-Type': 'application/merge-patch+json' });
});
afterAll(async () => {
  await c?.close();
  echo?.close();
});

/** The client half, as little of it as the checks need: header blocks are compressed, replies' headers are not read. */
class RawSpdy {
  readonly frames: Frame[] = [];
  private readonly sock: Socket;
  private readonly q = new ByteQueue();
  private readonly compressor = new HeaderCompressor();

  constructor(sock: Socket) {
    this.sock = sock;
    sock.on('data', (b: Buffer) => {
      this.q.push(b);
      for (let f = readFrame(this.q); f; f = readFrame(this.q)) this.frames.push(f);
    });
  }

  static async open(): Promise<RawSpdy> {
    const sock = connect(Number(new URL(c.url).port), '127.0.0.1');
    sock.write(
      'POST /api/v1/namespaces/default/pods/echo/portforward HTTP/1.1\r\nHost: devcluster\r\nContent-Length: 0\r\n' +
        'Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n',
    );
    let head = '';
    while (!head.includes('\r\n\r\n')) head += ((await once(sock, 'data')) as [Buffer])[0].toString('latin1');
    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 101 Switching Protocols');
    return new RawSpdy(sock);
  }

  synStream(id: number, headers: SpdyHeaders, fin = false): void {
    this.sock.write(controlFrame(ControlType.synStream, fin ? 1 : 0, Buffer.concat([u32s(id, 0), Buffer.of(0, 0), this.compressor.compress(headers)])));
  }

  send(frame: Buffer): void {
    this.sock.write(frame);
  }

  data(id: number): string {
    return Buffer.concat(this.frames.flatMap((f) => (f.kind === 'data' && f.streamId === id ? [f.data] : []))).toString();
  }

  control(type: number): Frame[] {
    return this.frames.filter((f) => f.kind === 'control' && f.type === type);
  }

  close(): void {
    this.sock.destroy();
  }
}

describe('SPDY port-forward sessions', () => {
  it('answers a client PING with the same id', async () => {
    const s = await RawSpdy.open();
    s.send(controlFrame(ControlType.ping, 0, u32s(1)));
    await eventually(() => expect(s.control(ControlType.ping)).toEqual([{ kind: 'control', version: 3, type: ControlType.ping, flags: 0, payload: u32s(1) }]));
    s.close();
  });

  it('pairs streams without requestID by id, as for old clients, and forwards', async () => {
    const s = await RawSpdy.open();
    s.synStream(1, { streamtype: ['error'], port: [String(echoPort)] }, true);
    s.synStream(3, { streamtype: ['data'], port: [String(echoPort)] });
    s.send(dataFrame(3, Buffer.from('old client'), true));
    await eventually(() => expect(s.data(3)).toBe('old client'));
    await eventually(() => expect(s.control(ControlType.synReply).map((f) => (f.kind === 'control' ? f.payload.readUInt32BE(0) : 0))).toEqual([1, 3]));
    // The echo closes after our FIN: both streams end with FIN (data first: the pod's FIN is passed on at once), the error stream empty.
    await eventually(() => expect(s.frames.filter((f) => f.kind === 'data' && f.flags === 1).map((f) => (f.kind === 'data' ? f.streamId : 0))).toEqual([3, 1]));
    expect(s.data(1)).toBe('');
    s.close();
  });

  it.each([
    {
      description: 'a stream of an unknown type is reset',
      act: (s: RawSpdy) => s.synStream(1, { streamtype: ['stdin'], port: ['80'], requestid: ['0'] }),
      expected: u32s(1, RstStatus.cancel),
    },
    { description: 'data for a stream never opened is refused', act: (s: RawSpdy) => s.send(dataFrame(5, Buffer.from('x'), false)), expected: u32s(5, RstStatus.invalidStream) },
  ])('$description', async ({ act, expected }) => {
    const s = await RawSpdy.open();
    act(s);
    await eventually(() => expect(s.control(ControlType.rstStream).map((f) => (f.kind === 'control' ? f.payload : undefined))).toEqual([expected]));
    s.close();
  });
});
