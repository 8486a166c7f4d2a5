/**
 * The collector on a real UDP socket (127.0.0.1 inside the test's private
 * network namespace), and `podtap collector` as a process stopped by SIGTERM.
 */
import { createSocket, type Socket } from 'node:dgram';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureFileName, defaultWorkers, startCollector } from '../../../src/collector/collector.ts';
import { parseListen } from '../../../src/collector/cli.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { encodeAnnouncement, monotonicRealtimePair } from '../../../src/wire/announce.ts';
import { deriveNodeKey } from '../../../src/wire/auth.ts';
import { encodeFrame } from '../../helpers/encode.ts';
import { ipv4Frame, ipv6Frame, rawFrame } from '../wire/frames.ts';
import { readCapture, tempDir } from './helpers.ts';

const NODE = join(process.cwd(), 'node_modules/.bin/node');
const SCRIPT = join(process.cwd(), 'test/unit/collector/run-collector.ts');

function frames(): Buffer[] {
  return [
    ipv4Frame({ proto: 'TCP', payload: 65495, seed: 1 }),
    ipv6Frame({ proto: 'UDP', payload: 30000, ext: ['hop'], seed: 2 }),
    ipv4Frame({ proto: 'ICMP', payload: 56, seed: 3 }),
    rawFrame(4000, 4),
  ];
}

/** node-a's announcement from 127.0.0.1, signed with its key under `secret` when given. */
function announcement(secret?: string): Buffer {
  return encodeAnnouncement({
    v: 2, node: 'node-a', source: '127.0.0.1', sender: 'sniff', senderId: 'x', instance: 3, tunnel: 'Geneve', policy: null,
    clock: monotonicRealtimePair(),
    interfaces: [{ ifindex: 21, name: 'veth21', pod: { namespace: 'shop', name: 'cart-0' }, directions: ['Ingress', 'Egress'] }],
  }, secret ? { key: { id: 'node-a', key: deriveNodeKey(secret, 'node-a') } } : {});
}

function datagrams(fs: Buffer[]): Buffer[] {
  return fs.flatMap((f, i) => encodeFrame(f, { instance: 3, cpu: 0, seq: i, ifindex: 21, toPod: i === 2, tstamp: process.hrtime.bigint() }));
}

/** Sends in order, pausing now and then so loopback keeps everything. */
async function send(sock: Socket, port: number, ds: Buffer[]): Promise<void> {
  for (let i = 0; i < ds.length; i++) {
    await new Promise<void>((resolve, reject) => sock.send(ds[i]!, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
    if (i % 32 === 31) await new Promise((r) => setTimeout(r, 1));
  }
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('collector on a UDP socket', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let client: Socket;
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
    client = createSocket('udp4');
    await new Promise<void>((r) => client.bind(0, '127.0.0.1', () => r()));
  });
  afterAll(async () => {
    client.close();
    await cleanup();
  });

  it('receives, rebuilds and writes; close leaves a complete file; metrics count', async () => {
    const out = join(dir, 'sock');
    await execa('mkdir', ['-p', out]);
    const c = await startCollector({ logger: silentLogger, ingest: { host: '127.0.0.1', port: 0, sockets: 2 }, store: { dir: out } });
    const fs = frames();
    const ds = [announcement(), ...datagrams(fs), Buffer.from('not a tunnel packet')];
    await send(client, c.address.port, ds);
    await until(() => c.stats().received === ds.length, 'all datagrams');
    const metrics = await c.registry.metrics();
    await c.close();
    await c.close(); // idempotent
    expect(c.stats()).toMatchObject({ received: ds.length, rebuilt: 4, lost: 0, malformed: 1, incomplete: 0, timestampFallback: 0 });
    expect(c.files()).toHaveLength(1);
    // announced without a policy: the unassigned series
    expect(c.files()[0]).toMatch(/\/unassigned\/unassigned-\d{8}T\d{6}Z-0001\.pcapng$/);
    const packets = await readCapture(c.files()[0]!);
    expect(packets.map((p) => [p.ifName, p.direction, p.data.equals(fs[packets.indexOf(p)]!)])).toEqual([
      ['shop/cart-0', 2, true],
      ['shop/cart-0', 2, true],
      ['shop/cart-0', 1, true],
      ['shop/cart-0', 2, true],
    ]);
    // captured "now": the announced clock pair turns the node's monotonic time into wall time
    for (const p of packets) expect(Math.abs(Number(p.epoch) - Date.now() / 1000)).toBeLessThan(30);
    expect(metrics).toContain(`podtap_collector_received_total ${ds.length}`);
    expect(metrics).toContain('podtap_collector_rebuilt_total 4');
    expect(metrics).toContain('podtap_collector_lost_total 0');
    expect(metrics).toContain('podtap_collector_malformed_total{reason="bad-version"} 1');
    expect(metrics).toMatch(/podtap_collector_bytes_written_total \d+/);
  });

  it('with a secret: data only on streams an authenticated announcement granted', async () => {
    const out = join(dir, 'secret');
    await execa('mkdir', ['-p', out]);
    const c = await startCollector({ logger: silentLogger, ingest: { host: '127.0.0.1', port: 0, secret: 'k' }, store: { dir: out } });
    const fs = frames();
    const before = datagrams(fs.slice(0, 1));
    await send(client, c.address.port, [...before, announcement('wrong')]);
    await until(() => c.stats().received === before.length + 1, 'refused datagrams');
    await send(client, c.address.port, [announcement('k'), ...datagrams(fs).slice(before.length)]);
    await until(() => c.stats().rebuilt === 3, 'accepted frames');
    await c.close();
    expect(c.stats().malformedByReason).toMatchObject({ unannounced: before.length, 'bad-mac': 1 });
    expect((await readCapture(c.files()[0]!)).length).toBe(3);
  });

  it('a forged announcement naming its policy ../../ creates nothing outside the capture directory (issue 9)', async () => {
    const out = join(dir, 'traversal', 'captures');
    await execa('mkdir', ['-p', out]);
    const c = await startCollector({ logger: silentLogger, ingest: { host: '127.0.0.1', port: 0 }, store: { dir: out } });
    // the JSON a forger writes by hand: the encoder itself refuses such names
    const good = announcement();
    const json = JSON.parse(good.subarray(44).toString('utf8')) as Record<string, unknown>;
    json.policy = { namespace: 'shop', name: '../../escaped', uid: 'u' };
    const body = Buffer.from(JSON.stringify(json));
    const forged = Buffer.concat([good.subarray(0, 44), body]);
    forged.writeUInt16BE(body.length, 18);
    const ds = [forged, ...datagrams(frames())];
    await send(client, c.address.port, ds);
    await until(() => c.stats().received === ds.length, 'all datagrams');
    await c.close();
    expect(c.stats().malformedByReason['bad-announcement']).toBe(1);
    // its frames were taken as from a sender that announced nothing
    expect(c.files().map((f) => f.slice(out.length + 1).split('/')[0])).toEqual(['unassigned']);
    expect(await readdir(join(dir, 'traversal'))).toEqual(['captures']);
    expect(await readdir(dir)).not.toContain('escaped');
  });

  it('file names: <policy>-<UTC start>-<seq>.pcapng', async () => {
    const start = Date.parse('2025-11-25T10:15:30.250Z');
    expect(captureFileName('web-debug', start, 1)).toBe('web-debug-20251125T101530Z-0001.pcapng');
    expect(captureFileName('web-debug', start, 12345)).toBe('web-debug-20251125T101530Z-12345.pcapng');
  });

  it.each([
    { input: 1, expected: 0 },
    { input: 2, expected: 0 },
    { input: 3, expected: 2 },
    { input: 8, expected: 4 },
  ])('default ingest workers on $input CPUs: $expected', ({ input, expected }) => {
    expect(defaultWorkers(input)).toBe(expected);
  });

  it.each([
    { description: 'host and port', input: '198.18.0.5:7000', expected: { host: '198.18.0.5', port: 7000 } },
    { description: 'port only', input: ':7000', expected: { host: '0.0.0.0', port: 7000 } },
    { description: 'bare port', input: '7000', expected: { host: '0.0.0.0', port: 7000 } },
    { description: 'host only', input: '127.0.0.1', expected: { host: '127.0.0.1', port: 6081 } },
    { description: 'IPv6', input: '[::]:6081', expected: { host: '::', port: 6081 } },
    { description: 'empty', input: '', expected: { host: '0.0.0.0', port: 6081 } },
  ])('--listen $description', ({ input, expected }) => {
    expect(parseListen(input, 6081)).toEqual(expected);
  });

  it.each(['::1:6081', '1.2.3.4:99999', '[nope]:1', 'host:port'])('--listen refuses %s', (input) => {
    expect(() => parseListen(input, 6081)).toThrow(/--listen/);
  });
});

describe('podtap collector process', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => ({ dir, cleanup } = await tempDir()));
  afterAll(async () => cleanup());

  it('SIGTERM leaves a pcapng that tshark reads completely, and a summary', async () => {
    const proc = execa(NODE, [SCRIPT, '--listen', '127.0.0.1:0', '--out', dir], { reject: false, env: { PODTAP_LOG_LEVEL: 'warn' } });
    const port = await new Promise<number>((resolve, reject) => {
      let text = '';
      proc.stdout!.on('data', (d: Buffer) => {
        text += d.toString();
        const m = /listening on udp 127\.0\.0\.1:(\d+) \(geneve\), writing (\S+)/.exec(text);
        if (m) resolve(Number(m[1]));
      });
      void proc.then((r) => reject(new Error(`collector exited early: ${r.stderr}`)));
    });
    const client = createSocket('udp4');
    const fs = frames();
    const ds = [announcement(), ...datagrams(fs)];
    await send(client, port, ds);
    client.close();
    await new Promise((r) => setTimeout(r, 300)); // loopback delivery
    proc.kill('SIGTERM');
    const r = await proc;
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`received ${ds.length} datagrams, rebuilt 4 packets, lost 0, malformed 0, incomplete 0, kernel dropped 0, write dropped 0, wrote \\d+ bytes in 1 files under `));
    const files = (await readdir(dir, { recursive: true })).filter((f) => f.endsWith('.pcapng'));
    expect(files).toEqual([expect.stringMatching(/^unassigned\/unassigned-\d{8}T\d{6}Z-0001\.pcapng$/)]);
    const packets = await readCapture(join(dir, files[0]!));
    expect(packets.map((p, i) => p.data.equals(fs[i]!) && p.ifName === 'shop/cart-0')).toEqual([true, true, true, true]);
  });

  it('--help explains the options and the files', async () => {
    const r = await execa(NODE, [SCRIPT, '--help']);
    for (const s of [
      '--listen', '--out', '--tunnel', '--token', '--workers', '--sockets', '--layout', '--rotate-size', '--rotate-interval', '--retain-size',
      '--retain-age', '--http', '--auth-token-file', '--http-public', '<namespace>_<policy>/<policy>-<UTC start>-<seq>.pcapng', 'unassigned',
      'SIGTERM', 'inbound', 'torn', 'wireshark -k -i -',
    ]) expect(r.stdout).toContain(s);
  });

  it.each([
    { description: 'missing --out', input: [], expected: { code: 2, message: /--out DIR is required/ } },
    { description: 'bad tunnel', input: ['--out', '/tmp', '--tunnel', 'gre'], expected: { code: 2, message: /--tunnel/ } },
    { description: 'unknown option', input: ['--out', '/tmp', '--bogus'], expected: { code: 2, message: /bogus/ } },
    { description: 'not a directory', input: ['--out', '/nonexistent/dir'], expected: { code: 5, message: /not a directory/ } },
    { description: 'a size without a number', input: ['--out', '/tmp', '--rotate-size', 'big'], expected: { code: 2, message: /--rotate-size: "big" is not a size/ } },
    { description: 'a tiny rotation size', input: ['--out', '/tmp', '--rotate-size', '1000'], expected: { code: 2, message: /--rotate-size: at least 1MiB/ } },
    { description: 'a rotation interval under a second', input: ['--out', '/tmp', '--rotate-interval', '500ms'], expected: { code: 2, message: /--rotate-interval: at least 1s/ } },
    { description: 'a bad retention age', input: ['--out', '/tmp', '--retain-age', 'a week'], expected: { code: 2, message: /--retain-age: "a week" is not a duration/ } },
    { description: 'a bad layout', input: ['--out', '/tmp', '--layout', 'flat'], expected: { code: 2, message: /--layout: expected policy or single/ } },
    { description: 'too many workers', input: ['--out', '/tmp', '--workers', '65'], expected: { code: 2, message: /--workers: expected 0\.\.64/ } },
    { description: 'a token file without --http', input: ['--out', '/tmp', '--auth-token-file', '/etc/hostname'], expected: { code: 2, message: /need --http/ } },
    {
      description: 'a missing token file',
      input: ['--out', '/tmp', '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0', '--auth-token-file', '/nonexistent/token'],
      expected: { code: 5, message: /--auth-token-file: \/nonexistent\/token is missing, unreadable or empty/ },
    },
  ])('usage error: $description', async ({ input, expected }) => {
    const r = await execa(NODE, [SCRIPT, ...input], { reject: false });
    expect(r.exitCode).toBe(expected.code);
    expect(r.stderr).toMatch(expected.message);
  });
});
