/**
 * The server half of SPDY/3.1 as kubectl and the kubelet speak it
 * (k8s.io/apimachinery's httpstream/spdy on moby/spdystream): framing, the
 * zlib-compressed header blocks, stream replies, FIN and RST_STREAM, PING.
 * port-forward needs it twice: kubectl 1.32 tunnels SPDY through a WebSocket
 * (`SPDY/3.1+portforward.k8s.io`) and falls back to a plain SPDY upgrade.
 * spdystream keeps no flow-control windows (it neither sends nor honours
 * WINDOW_UPDATE), so neither does this: backpressure is the transport's.
 */
import type { Duplex } from 'node:stream';
import { constants as zc, createInflate, deflateRawSync, deflateSync, type Inflate } from 'node:zlib';
import type { Logger } from 'pino';

export const ControlType = { synStream: 1, synReply: 2, rstStream: 3, settings: 4, ping: 6, goAway: 7, headers: 8, windowUpdate: 9 } as const;
export const RstStatus = { protocolError: 1, invalidStream: 2, refusedStream: 3, cancel: 5, internalError: 6, streamAlreadyClosed: 9 } as const;
const FLAG_FIN = 0x01;
const MAX_FRAME = 0xffffff;

/** The header compression dictionary of SPDY/3 (section 2.6.10.1): length-prefixed words, then a run of text. */
export const HEADER_DICTIONARY: Buffer = (() => {
  const words = [
    'options', 'head', 'post', 'put', 'delete', 'trace', 'accept', 'accept-charset', 'accept-encoding', 'accept-language',
    'accept-ranges', 'age', 'allow', 'authorization', 'cache-control', 'connection', 'content-base', 'content-encoding',
    'content-language', 'content-length', 'content-location', 'content-md5', 'content-range', 'content-type', 'date', 'etag',
    'expect', 'expires', 'from', 'host', 'if-match', 'if-modified-since', 'if-none-match', 'if-range', 'if-unmodified-since',
    'last-modified', 'location', 'max-forwards', 'pragma', 'proxy-authenticate', 'proxy-authorization', 'range', 'referer',
    'retry-after', 'server', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'user-agent', 'vary', 'via', 'warning',
    'www-authenticate', 'method', 'get', 'status', '200 OK', 'version', 'HTTP/1.1', 'url', 'public', 'set-cookie',
    'keep-alive', 'origin',
  ];
  const text =
    '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505' +
    '203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized' +
    '403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable' +
    'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT' +
    'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,' +
    'text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.';
  return Buffer.concat([...words.map((w) => lengthPrefixed(Buffer.from(w, 'latin1'))), Buffer.from(text, 'latin1')]);
})();

function lengthPrefixed(b: Buffer): Buffer {
  const out = Buffer.alloc(4 + b.length);
  out.writeUInt32BE(b.length, 0);
  b.copy(out, 4);
  return out;
}

/** Header names are lowercase on the wire; several values of one name are NUL-separated. */
export type SpdyHeaders = Record<string, string[]>;

// ---- bytes ---------------------------------------------------------------------------

/** A FIFO of buffers that hands out exact byte counts without copying more than it must. */
export class ByteQueue {
  private chunks: Buffer[] = [];
  length = 0;

  push(b: Buffer): void {
    if (b.length === 0) return;
    this.chunks.push(b);
    this.length += b.length;
  }

  /** The first n bytes, left in the queue. */
  peek(n: number): Buffer {
    const first = this.chunks[0];
    if (first && first.length >= n) return first.subarray(0, n);
    const parts: Buffer[] = [];
    let need = n;
    for (const c of this.chunks) {
      if (need <= 0) break;
      parts.push(c.length > need ? c.subarray(0, need) : c);
      need -= c.length;
    }
    return Buffer.concat(parts, n);
  }

  take(n: number): Buffer {
    const out = this.peek(n);
    let left = n;
    while (left > 0) {
      const c = this.chunks[0]!;
      if (c.length <= left) {
        this.chunks.shift();
        left -= c.length;
      } else {
        this.chunks[0] = c.subarray(left);
        left = 0;
      }
    }
    this.length -= n;
    return out;
  }
}

// ---- frames --------------------------------------------------------------------------

export type Frame =
  | { kind: 'data'; streamId: number; flags: number; data: Buffer }
  | { kind: 'control'; version: number; type: number; flags: number; payload: Buffer };

/** The next whole frame in q, or undefined while it is incomplete. */
export function readFrame(q: ByteQueue): Frame | undefined {
  if (q.length < 8) return undefined;
  const head = q.peek(8);
  const length = head.readUIntBE(5, 3);
  if (q.length < 8 + length) return undefined;
  q.take(8);
  const body = q.take(length);
  const flags = head[4]!;
  if (head[0]! & 0x80) return { kind: 'control', version: head.readUInt16BE(0) & 0x7fff, type: head.readUInt16BE(2), flags, payload: body };
  return { kind: 'data', streamId: head.readUInt32BE(0) & 0x7fffffff, flags, data: body };
}

export function controlFrame(type: number, flags: number, payload: Buffer): Buffer {
  const out = Buffer.alloc(8 + payload.length);
  out.writeUInt16BE(0x8000 | 3, 0);
  out.writeUInt16BE(type, 2);
  out.writeUInt32BE(((flags & 0xff) << 24) | payload.length, 4);
  payload.copy(out, 8);
  return out;
}

export function dataFrame(streamId: number, data: Buffer, fin: boolean): Buffer {
  const out = Buffer.alloc(8 + data.length);
  out.writeUInt32BE(streamId & 0x7fffffff, 0);
  out.writeUInt32BE(((fin ? FLAG_FIN : 0) << 24) | data.length, 4);
  data.copy(out, 8);
  return out;
}

function u32s(...values: number[]): Buffer {
  const b = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => b.writeUInt32BE(v >>> 0, 4 * i));
  return b;
}

// ---- header blocks -----------------------------------------------------------------------

export function encodeHeaderBlock(h: SpdyHeaders): Buffer {
  const entries = Object.entries(h);
  const parts: Buffer[] = [u32s(entries.length)];
  for (const [name, values] of entries) {
    parts.push(lengthPrefixed(Buffer.from(name.toLowerCase(), 'utf8')), lengthPrefixed(Buffer.from(values.join('\0'), 'utf8')));
  }
  return Buffer.concat(parts);
}

/** A whole header block at the start of b, with the bytes it used; undefined while b is too short; throws when malformed. */
export function decodeHeaderBlock(b: Buffer): { headers: SpdyHeaders; used: number } | undefined {
  let at = 0;
  const field = (): string | undefined => {
    if (b.length < at + 4) return undefined;
    const n = b.readUInt32BE(at);
    if (b.length < at + 4 + n) return undefined;
    const s = b.toString('utf8', at + 4, at + 4 + n);
    at += 4 + n;
    return s;
  };
  if (b.length < 4) return undefined;
  const count = b.readUInt32BE(0);
  at = 4;
  const headers: SpdyHeaders = {};
  for (let i = 0; i < count; i++) {
    const name = field();
    if (name === undefined) return undefined;
    const value = field();
    if (value === undefined) return undefined;
    if (name === '' || name !== name.toLowerCase()) throw new Error(`invalid header name ${JSON.stringify(name)}`);
    (headers[name] ??= []).push(...value.split('\0'));
  }
  return { headers, used: at };
}

/**
 * One zlib stream per direction and connection, preset with the dictionary,
 * each block ending on a sync flush. The first block is a zlib stream's head;
 * later ones are fresh raw deflate blocks, which a continuing inflater reads
 * just as well because they refer to nothing before them.
 */
export class HeaderCompressor {
  private started = false;

  compress(h: SpdyHeaders): Buffer {
    const block = encodeHeaderBlock(h);
    if (this.started) return deflateRawSync(block, { finishFlush: zc.Z_SYNC_FLUSH });
    this.started = true;
    return deflateSync(block, { dictionary: HEADER_DICTIONARY, finishFlush: zc.Z_SYNC_FLUSH });
  }
}

/** The peer's header blocks, inflated in order through one long-lived zlib stream. */
export class HeaderDecompressor {
  private readonly inflate: Inflate;
  private readonly out = new ByteQueue();
  private failure: Error | undefined;

  constructor() {
    this.inflate = createInflate({ dictionary: HEADER_DICTIONARY });
    this.inflate.on('data', (c: Buffer) => this.out.push(c));
    this.inflate.on('error', (err) => {
      this.failure = err;
    });
  }

  decompress(compressed: Buffer): Promise<SpdyHeaders> {
    return new Promise((resolve, reject) => {
      const settle = (last: boolean) => {
        if (this.failure) return reject(new Error('corrupt SPDY header block', { cause: this.failure }));
        let got: ReturnType<typeof decodeHeaderBlock>;
        try {
          got = decodeHeaderBlock(this.out.peek(this.out.length));
        } catch (err) {
          return reject(new Error('malformed SPDY header block', { cause: err }));
        }
        if (got) {
          this.out.take(got.used);
          return resolve(got.headers);
        }
        if (last) return reject(new Error('truncated SPDY header block'));
        setImmediate(() => settle(true));
      };
      this.inflate.write(compressed);
      this.inflate.flush(zc.Z_SYNC_FLUSH, () => settle(false));
    });
  }

  close(): void {
    this.inflate.destroy();
  }
}

// ---- streams and the connection ----------------------------------------------------------------

/** A stream the peer opened; this side replies, then reads and writes until both sides sent FIN or one reset it. */
export class SpdyStream {
  readonly id: number;
  readonly headers: SpdyHeaders;
  /** Data from the peer. */
  ondata: ((chunk: Buffer) => void) | undefined;
  /** The peer sent FIN: no more data comes. */
  onend: (() => void) | undefined;
  /** The peer reset the stream or the connection went away. */
  onreset: (() => void) | undefined;
  remoteClosed = false;
  localClosed = false;
  private readonly conn: SpdyConnection;

  constructor(conn: SpdyConnection, id: number, headers: SpdyHeaders, remoteClosed: boolean) {
    this.conn = conn;
    this.id = id;
    this.headers = headers;
    this.remoteClosed = remoteClosed;
  }

  header(name: string): string | undefined {
    return this.headers[name.toLowerCase()]?.[0];
  }

  /** Accepts the stream (SYN_REPLY, no headers), as spdystream's server does for every stream it keeps. */
  reply(): void {
    this.conn.sendControl(ControlType.synReply, 0, Buffer.concat([u32s(this.id), this.conn.compressHeaders({})]));
  }

  /** False when the transport wants a drain (see SpdyConnection.whenDrained). */
  write(data: Buffer): boolean {
    if (this.localClosed) return true;
    let ok = true;
    for (let at = 0; at < data.length; at += MAX_FRAME) ok = this.conn.send(dataFrame(this.id, data.subarray(at, at + MAX_FRAME), false));
    return ok;
  }

  /** FIN: this side sends no more. */
  end(): void {
    if (this.localClosed) return;
    this.localClosed = true;
    this.conn.send(dataFrame(this.id, Buffer.alloc(0), true));
    this.conn.forgetIfDone(this);
  }

  reset(status: number = RstStatus.cancel): void {
    this.localClosed = this.remoteClosed = true;
    this.conn.sendControl(ControlType.rstStream, 0, u32s(this.id, status));
    this.conn.forget(this.id);
  }
}

export class SpdyConnection {
  onclose: (() => void) | undefined;
  private readonly transport: Duplex;
  private readonly onStream: (s: SpdyStream) => void;
  private readonly log: Logger;
  private readonly inbox = new ByteQueue();
  private readonly compressor = new HeaderCompressor();
  private readonly decompressor = new HeaderDecompressor();
  private readonly streams = new Map<number, SpdyStream>();
  private readonly drainWaiters: (() => void)[] = [];
  private lastStreamId = 0;
  private decoding = false;
  private inputHolds = 0;
  private closed = false;

  constructor(transport: Duplex, onStream: (s: SpdyStream) => void, log: Logger) {
    this.transport = transport;
    this.onStream = onStream;
    this.log = log;
    transport.on('data', (chunk: Buffer) => {
      this.inbox.push(chunk);
      this.pump();
    });
    transport.on('drain', () => {
      for (const w of this.drainWaiters.splice(0)) w();
    });
    transport.on('error', (err) => this.log.debug({ err }, 'SPDY transport error'));
    transport.on('close', () => this.shutdown());
    transport.on('end', () => this.shutdown());
  }

  send(frame: Buffer): boolean {
    if (this.closed) return true;
    return this.transport.write(frame);
  }

  sendControl(type: number, flags: number, payload: Buffer): boolean {
    return this.send(controlFrame(type, flags, payload));
  }

  compressHeaders(h: SpdyHeaders): Buffer {
    return this.compressor.compress(h);
  }

  /** Runs cb once the transport has room again (at once if it has now). */
  whenDrained(cb: () => void): void {
    if (this.closed || !this.transport.writableNeedDrain) cb();
    else this.drainWaiters.push(cb);
  }

  /** Stops reading the peer until as many resumeInput calls; a pod socket that cannot keep up holds the whole connection, as TCP would. */
  holdInput(): void {
    if (this.inputHolds++ === 0) this.transport.pause();
  }

  resumeInput(): void {
    if (this.inputHolds > 0 && --this.inputHolds === 0) this.transport.resume();
  }

  forget(id: number): void {
    this.streams.delete(id);
  }

  forgetIfDone(s: SpdyStream): void {
    if (s.localClosed && s.remoteClosed) this.streams.delete(s.id);
  }

  /** GOAWAY, then the transport ends; every open stream sees a reset. */
  close(): void {
    if (this.closed) return;
    this.sendControl(ControlType.goAway, 0, u32s(this.lastStreamId, 0));
    this.transport.end();
    this.shutdown();
  }

  private shutdown(): void {
    if (this.closed) return;
    this.closed = true;
    this.decompressor.close();
    for (const w of this.drainWaiters.splice(0)) w();
    const open = [...this.streams.values()];
    this.streams.clear();
    for (const s of open) s.onreset?.();
    if (!this.transport.destroyed) this.transport.destroy();
    this.onclose?.();
  }

  private protocolError(message: string, fields: Record<string, unknown> = {}): void {
    this.log.debug(fields, message);
    this.sendControl(ControlType.goAway, 0, u32s(this.lastStreamId, RstStatus.protocolError));
    this.transport.end();
    this.shutdown();
  }

  /** Frames are handled strictly in order; a header block's inflation is the one asynchronous step. */
  private pump(): void {
    while (!this.decoding && !this.closed) {
      const frame = readFrame(this.inbox);
      if (!frame) return;
      if (frame.kind === 'data') {
        this.onData(frame.streamId, frame.flags, frame.data);
        continue;
      }
      if (frame.version !== 3) return this.protocolError('unsupported SPDY version', { version: frame.version });
      const offset = headerBlockOffset(frame.type);
      if (offset === undefined) {
        this.onControl(frame.type, frame.flags, frame.payload, undefined);
        continue;
      }
      if (frame.payload.length < offset) return this.protocolError('short SPDY frame', { type: frame.type });
      const f = frame;
      this.decoding = true;
      this.decompressor.decompress(f.payload.subarray(offset)).then(
        (headers) => {
          this.decoding = false;
          this.onControl(f.type, f.flags, f.payload, headers);
          this.pump();
        },
        (err: unknown) => {
          this.decoding = false;
          this.protocolError('bad SPDY header block', { err });
        },
      );
    }
  }

  private onData(id: number, flags: number, data: Buffer): void {
    const s = this.streams.get(id);
    if (!s) {
      if (id !== 0) this.sendControl(ControlType.rstStream, 0, u32s(id, RstStatus.invalidStream));
      return;
    }
    if (s.remoteClosed) {
      s.reset(RstStatus.streamAlreadyClosed);
      s.onreset?.();
      return;
    }
    if (data.length) s.ondata?.(data);
    if (flags & FLAG_FIN) {
      s.remoteClosed = true;
      this.forgetIfDone(s);
      s.onend?.();
    }
  }

  private onControl(type: number, flags: number, p: Buffer, headers: SpdyHeaders | undefined): void {
    switch (type) {
      case ControlType.synStream: {
        const id = p.readUInt32BE(0) & 0x7fffffff;
        if (id % 2 === 0 || id <= this.lastStreamId) return this.protocolError('bad SPDY stream id', { id });
        this.lastStreamId = id;
        const s = new SpdyStream(this, id, headers ?? {}, (flags & FLAG_FIN) !== 0);
        this.streams.set(id, s);
        this.onStream(s);
        return;
      }
      case ControlType.rstStream: {
        const s = this.streams.get(p.readUInt32BE(0) & 0x7fffffff);
        if (!s) return;
        s.localClosed = s.remoteClosed = true;
        this.streams.delete(s.id);
        s.onreset?.();
        return;
      }
      case ControlType.ping:
        // Odd ids are the client's: answered with the same frame. Even ones would answer ours, and this side sends none.
        if (p.length >= 4 && p.readUInt32BE(0) % 2 === 1) this.sendControl(ControlType.ping, 0, p.subarray(0, 4));
        return;
      case ControlType.goAway:
        // The peer opens no more streams; the ones it has run to their end, and it closes the transport.
        return;
      default:
        // SYN_REPLY and HEADERS for streams this side never opens, SETTINGS, WINDOW_UPDATE, unknown types: ignored, as spdystream does.
        return;
    }
  }
}

/** Where the compressed header block starts in a control frame's payload, for the types that carry one. */
function headerBlockOffset(type: number): number | undefined {
  if (type === ControlType.synStream) return 10;
  if (type === ControlType.synReply || type === ControlType.headers) return 4;
  return undefined;
}
