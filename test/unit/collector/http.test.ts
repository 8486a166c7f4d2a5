/**
 * The HTTP API: bearer token from a file, health and metrics, listing and
 * downloading captures (an open one too), and the live pcapng stream read by
 * tshark while packets flow — `tshark -r -` and `tshark -i -` (the pipe path
 * `wireshark -k -i -` takes) — with interfaces announced mid-stream, filters,
 * and a reader too slow to keep up.
 */
import { request } from 'node:http';
import { connect } from 'node:net';
import { createWriteStream } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCapture } from './helpers.ts';
import { FrameSource, TOKEN, announcement, startRunning, until, type Running } from './running.ts';
import { join } from 'node:path';

const WEB = { namespace: 'shop', name: 'web-debug' };
const PODS = [
  { ifindex: 11, namespace: 'shop', pod: 'web-1' },
  { ifindex: 12, namespace: 'shop', pod: 'web-2' },
];

describe('HTTP API', () => {
  let r: Running;
  const src = new FrameSource();
  beforeAll(async () => {
    r = await startRunning({ ingest: { workers: 1 } });
    await r.send([announcement(WEB, PODS), ...src.frames(20, { ifindex: 11 }), ...src.frames(10, { ifindex: 12, payload: 3000 })]);
    await until(() => r.c.stats().rebuilt === 30, 'the first frames');
  });
  afterAll(async () => r.stop());

  it.each([
    { description: 'no token', input: { path: '/api/v1/captures', headers: {} }, expected: 401 },
    { description: 'wrong token', input: { path: '/api/v1/captures', headers: { Authorization: 'Bearer nope' } }, expected: 401 },
    { description: 'token without Bearer', input: { path: '/api/v1/captures', headers: { Authorization: TOKEN } }, expected: 401 },
    { description: 'the stream needs the token too', input: { path: '/stream', headers: {} }, expected: 401 },
    { description: 'right token', input: { path: '/api/v1/captures', headers: { Authorization: `Bearer ${TOKEN}` } }, expected: 200 },
    { description: 'healthz is public', input: { path: '/healthz', headers: {} }, expected: 200 },
    { description: 'readyz is public', input: { path: '/readyz', headers: {} }, expected: 200 },
    { description: 'metrics are public', input: { path: '/metrics', headers: {} }, expected: 200 },
    { description: 'unknown path', input: { path: '/nope', headers: { Authorization: `Bearer ${TOKEN}` } }, expected: 404 },
    { description: 'unknown stream parameter', input: { path: '/stream?podd=x', headers: { Authorization: `Bearer ${TOKEN}` } }, expected: 400 },
    { description: 'bad direction', input: { path: '/stream?direction=sideways', headers: { Authorization: `Bearer ${TOKEN}` } }, expected: 400 },
    { description: 'not a name', input: { path: '/stream?pod=..%2Fetc', headers: { Authorization: `Bearer ${TOKEN}` } }, expected: 400 },
    { description: 'path traversal', input: { path: '/api/v1/captures/..%2F..%2Fetc%2Fpasswd', headers: { Authorization: `Bearer ${TOKEN}` } }, expected: 404 },
  ])('auth and routing: $description → $expected', async ({ input, expected }) => {
    const res = await fetch(`${r.base}${input.path}`, { headers: input.headers });
    await res.arrayBuffer();
    expect(res.status).toBe(expected);
  });

  it.each([
    { description: "0.1's ingress (sent by the pod): its conversion", input: 'ingress', expected: 'direction=ingress was removed in podtap 0.2: it meant sent by the pod; write direction=out' },
    { description: "0.1's Egress (sent to the pod): its conversion", input: 'Egress', expected: 'direction=Egress was removed in podtap 0.2: it meant sent to the pod; write direction=in' },
    { description: 'a prototype key is no word', input: 'constructor', expected: "direction: expected one of both, in, out (from the pod's side)" },
  ])('the stream refuses direction=$input: $description', async ({ input, expected }) => {
    const res = await fetch(`${r.base}/stream?direction=${input}`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(400);
    expect(await res.text()).toContain(expected);
  });

  it('a rotated token file is read again', async () => {
    const file = join(r.dir, '..', `${r.dir.split('/').pop()}.token`);
    await writeFile(file, 'next-token\n');
    await new Promise((res) => setTimeout(res, 1100));
    expect((await fetch(`${r.base}/api/v1/status`, { headers: { Authorization: 'Bearer next-token' } })).status).toBe(200);
    expect((await fetch(`${r.base}/api/v1/status`, { headers: { Authorization: `Bearer ${TOKEN}` } })).status).toBe(401);
    await writeFile(file, `${TOKEN}\n`);
    await new Promise((res) => setTimeout(res, 1100));
  });

  it('lists captures and downloads the open file up to its last whole block', async () => {
    await until(async () => ((await (await r.get('/api/v1/captures')).json()) as { items: { size: number }[] }).items[0]?.size! > 0, 'bytes on disk');
    const list = (await (await r.get('/api/v1/captures?namespace=shop')).json()) as { items: { path: string; open: boolean; policy: string; size: number }[] };
    expect(list.items).toHaveLength(1);
    expect(list.items[0]).toMatchObject({ policy: 'web-debug', open: true });
    expect(list.items[0]!.path).toMatch(/^shop_web-debug\/web-debug-\d{8}T\d{6}Z-0001\.pcapng$/);
    expect(((await (await r.get('/api/v1/captures?policy=other')).json()) as { items: unknown[] }).items).toEqual([]);
    const res = await r.get(`/api/v1/captures/${encodeURIComponent(list.items[0]!.path)}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/x-pcapng');
    const body = Buffer.from(await res.arrayBuffer());
    const file = join(r.dir, '..', 'download.pcapng');
    await writeFile(file, body);
    const packets = await readCapture(file);
    expect(packets.length).toBe(30);
    expect(new Set(packets.map((p) => p.ifName))).toEqual(new Set(['shop/web-1', 'shop/web-2']));
  });

  it('metrics and status count what happened', async () => {
    const text = await (await fetch(`${r.base}/metrics`)).text();
    for (const m of [
      'podtap_collector_received_total 51', 'podtap_collector_rebuilt_total 30', 'podtap_collector_lost_total 0', 'podtap_collector_kernel_dropped_total 0',
      'podtap_collector_malformed_total{reason="short"} 0', 'podtap_collector_files 1', 'podtap_collector_workers 1', 'podtap_collector_ingest_lag_seconds',
      'podtap_collector_disk_usage_bytes', 'podtap_collector_write_dropped_total{reason="disk-full"} 0', 'podtap_collector_bytes_written_total',
    ]) expect(text).toContain(m);
    const status = (await (await r.get('/api/v1/status')).json()) as Record<string, unknown>;
    expect(status).toMatchObject({ received: 51, rebuilt: 30, lost: 0, files: 1, diskFull: false });
  });
});

/**
 * A tshark reading a live stream on its standard input through a real pipe
 * (a FIFO: Node's child stdin is a socket, which `tshark -r -` refuses), as
 * `curl … | tshark -r -` would. Resolves once the response headers came.
 */
async function streamToTshark(base: string, path: string, args: string[]): Promise<{ tshark: ResultPromise; abort(): void }> {
  const fifo = join(tmpdir(), `podtap-stream-${process.pid}-${fifos++}`);
  await execa('mkfifo', [fifo]);
  const tshark = execa('sh', ['-c', 'exec tshark "$@" < "$0"', fifo, ...args], { reject: false });
  const sink = createWriteStream(fifo);
  void tshark.finally(() => rm(fifo, { force: true }));
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { headers: { Authorization: `Bearer ${TOKEN}` } }, (res) => {
      if (res.statusCode !== 200) reject(new Error(`stream: HTTP ${res.statusCode}`));
      res.pipe(sink);
      res.on('close', () => sink.end()); // (pipe does not end the FIFO when the response is aborted)
      resolve({ tshark, abort: () => req.destroy() });
    });
    req.on('error', () => sink.end());
    req.end();
  });
}
let fifos = 0;

function lines(p: ResultPromise): () => string[] {
  let text = '';
  p.stdout!.on('data', (d: Buffer) => (text += d.toString()));
  return () => text.split('\n').filter((l) => l.length > 0);
}

describe('live stream', () => {
  let r: Running;
  const src = new FrameSource();
  beforeAll(async () => {
    r = await startRunning({ ingest: { workers: 2 }, live: { clientBufferBytes: 256 << 10 } });
    await r.send([announcement(WEB, PODS)]);
    await until(() => r.c.stats().announcements === 1, 'the announcement');
  });
  afterAll(async () => r.stop());

  it.each([
    { description: 'tshark -r - (a file on stdin)', input: ['-r', '-'] },
    { description: 'tshark -i - (the pipe capture wireshark -k -i - uses)', input: ['-i', '-'] },
  ])('$description reads packets while they flow; a pod announced mid-stream appears', async ({ input }) => {
    const { tshark, abort } = await streamToTshark(r.base, '/stream?namespace=shop', [
      ...input, '-l', '-n', '-T', 'fields', '-e', 'frame.interface_name', '-e', 'frame.len', '-e', 'frame.packet_flags_direction',
    ]);
    const out = lines(tshark);
    await r.send(src.frames(6, { ifindex: 11 }));
    await until(() => out().length === 6, 'tshark to print the first 6 packets while the stream is open', 15_000);
    // a new pod, announced now: its interface block comes before its first packet
    const pod = { ifindex: 20 + input.length + input[0]!.length, namespace: 'shop', pod: `new-${input[0]!.slice(1)}` };
    await r.send([announcement(WEB, [...PODS, pod])]);
    await until(() => r.c.router.interfaces().some((i) => i.pod?.name === pod.pod), 'the announcement');
    await r.send(src.frames(4, { ifindex: pod.ifindex, payload: 5000 }));
    await until(() => out().length === 10, 'tshark to print the new pod\u2019s packets', 15_000);
    abort();
    const res = await tshark;
    // (tshark 4.0's pipe capture says "Capture started", the temporary file, and an empty "tshark: " at the end of the pipe)
    const complaints = String(res.stderr).split('\n').filter((l) => l && !/dangerous|Capturing on|packets? captured|\[Main MESSAGE\]|^tshark: $/.test(l));
    expect(complaints).toEqual([]);
    expect(out().map((l) => l.split('\t')[0])).toEqual([...Array(6).fill('shop/web-1'), ...Array(4).fill(`shop/${pod.pod}`)]);
    expect(out().slice(6).map((l) => Number(l.split('\t')[1]))).toEqual(Array(4).fill(14 + 20 + 8 + 5000));
  });

  it.each([
    { description: 'by pod', input: '?pod=web-2', expected: ['shop/web-2', 'shop/web-2'] },
    { description: 'by policy', input: '?policy=web-debug&namespace=shop', expected: ['shop/web-1', 'shop/web-1', 'shop/web-2', 'shop/web-2'] },
    { description: 'by another policy', input: '?policy=other', expected: [] },
    { description: 'by direction: sent by the pods', input: '?direction=out', expected: ['shop/web-1', 'shop/web-2'] },
    { description: 'by direction: sent to the pods', input: '?direction=in&pod=web-1', expected: ['shop/web-1'] },
  ])('filters $description', async ({ input, expected }) => {
    const { tshark, abort } = await streamToTshark(r.base, `/stream${input}`, ['-r', '-', '-l', '-n', '-T', 'fields', '-e', 'frame.interface_name', '-e', 'frame.packet_flags_direction']);
    const out = lines(tshark);
    const before = r.c.stats().livePackets;
    // toPod alternates: web-1 sends one and receives one; web-2 the same
    await r.send([...src.frames(2, { ifindex: 11 }), ...src.frames(2, { ifindex: 12 })]);
    await until(() => r.c.stats().livePackets - before >= expected.length, 'the stream to get its packets');
    await new Promise((res) => setTimeout(res, 300)); // (and no more)
    abort();
    await tshark;
    expect(out().map((l) => l.split('\t')[0])).toEqual(expected);
    // and each packet's flag says so: inbound (1) = to the pod, outbound (2) = from it
    const flags = new Set(out().map((l) => Number(l.split('\t')[1])));
    if (input.includes('direction=in')) expect([...flags]).toEqual([1]);
    if (input.includes('direction=out')) expect([...flags]).toEqual([2]);
  });

  it('a reader that stops reading costs it packets, not ingest: counted, bounded, told in a comment', async () => {
    // a client that asks for the stream and then does not read
    const sock = connect(Number(new URL(r.base).port), '127.0.0.1');
    sock.write(`GET /stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`);
    await until(() => r.c.stats().liveClients === 1, 'the slow client');
    sock.pause();
    const before = r.c.stats();
    // ~24 MB: far more than the client's 256 KiB buffer and the sockets' buffers
    for (let k = 0; k < 6; k++) await r.send(src.frames(60, { ifindex: 11, payload: 60_000 }));
    await until(() => r.c.stats().rebuilt - before.rebuilt === 360, 'ingest to rebuild every frame');
    await until(() => r.c.stats().written - before.written === 360, 'every frame on disk');
    const mid = r.c.stats();
    expect(mid.liveDropped - before.liveDropped).toBeGreaterThan(200);
    expect(mid.writeDropped).toBe(0);
    // now read everything that was kept, then one more packet that carries the note
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.resume();
    await new Promise((res) => setTimeout(res, 300));
    await r.send(src.frames(1, { ifindex: 11 }));
    await until(() => r.c.stats().livePackets > mid.livePackets, 'the next packet');
    await new Promise((res) => setTimeout(res, 300));
    sock.destroy();
    const raw = Buffer.concat(chunks);
    const body = raw.subarray(raw.indexOf('\r\n\r\n') + 4);
    // chunked transfer encoding: strip it
    const parts: Buffer[] = [];
    for (let p = 0; p < body.length; ) {
      const eol = body.indexOf('\r\n', p);
      if (eol < 0) break;
      const n = Number.parseInt(body.toString('latin1', p, eol), 16);
      if (!(n > 0) || eol + 2 + n > body.length) break;
      parts.push(body.subarray(eol + 2, eol + 2 + n));
      p = eol + 2 + n + 2;
    }
    const file = join(r.dir, '..', 'slow.pcapng');
    await writeFile(file, Buffer.concat(parts));
    const comments = await execa('tshark', ['-r', file, '-n', '-T', 'fields', '-e', 'frame.comment', '-Y', 'frame.comment']);
    expect(comments.stdout).toMatch(/podtap: \d+ packet\(s\) matching this stream were dropped before this one: the reader did not keep up/);
    const kept = (await readCapture(file)).length;
    // what reached the reader is what was not dropped
    expect(kept + (r.c.stats().liveDropped - before.liveDropped)).toBe(361);
    // the bytes waiting for it never exceeded its buffer, plus one batch
    expect(r.c.live.stats().maxBacklog).toBeLessThanOrEqual((256 << 10) + (1 << 17));
  });
});
