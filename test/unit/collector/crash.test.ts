/**
 * kill -9 in the middle of heavy writing, then a restart on the same
 * directory: every capture file is readable by tshark afterwards. A torn tail
 * (a write cut short by the kill, or by a power loss: simulated by appending
 * part of a block) is cut back on start; numbering continues.
 */
import { appendFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { createSocket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCapture, tempDir } from './helpers.ts';
import { FrameSource, announcement, sendAll } from './running.ts';

const NODE = join(process.cwd(), 'node_modules/.bin/node');
const SCRIPT = join(process.cwd(), 'test/unit/collector/run-collector.ts');

function start(dir: string): { proc: ResultPromise; port: Promise<number> } {
  const proc = execa(NODE, [SCRIPT, '--listen', '127.0.0.1:0', '--out', dir, '--workers', '1'], { reject: false, env: { PODTAP_LOG_LEVEL: 'info' } });
  const port = new Promise<number>((resolve, reject) => {
    let text = '';
    proc.stdout!.on('data', (d: Buffer) => {
      text += d.toString();
      const m = /listening on udp 127\.0\.0\.1:(\d+)/.exec(text);
      if (m) resolve(Number(m[1]));
    });
    void proc.then((r) => reject(new Error(`collector exited early: ${String(r.stderr)}`)));
  });
  return { proc, port };
}

async function files(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).filter((f) => f.endsWith('.pcapng')).sort();
}

describe('crash and restart', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => ({ dir, cleanup } = await tempDir()));
  afterAll(async () => cleanup());

  it('kill -9 while writing, a torn tail on top, restart: every file readable, numbering continues', async () => {
    const first = start(dir);
    const port = await first.port;
    const udp = createSocket('udp4');
    const src = new FrameSource();
    const policy = { namespace: 'shop', name: 'web-debug' };
    await sendAll(udp, port, [announcement(policy, [{ ifindex: 11, namespace: 'shop', pod: 'web-1' }])]);
    // keep it writing: 64 KB frames, ~30 MB
    const sending = (async () => {
      for (let k = 0; k < 60; k++) await sendAll(udp, port, src.frames(8, { ifindex: 11, payload: 60_000 }));
    })();
    await new Promise((r) => setTimeout(r, 400));
    first.proc.kill('SIGKILL');
    const r1 = await first.proc;
    expect(r1.signal).toBe('SIGKILL');
    await sending.catch(() => undefined);
    udp.close();
    const [file] = await files(dir);
    expect(file).toMatch(/^shop_web-debug\/web-debug-\d{8}T\d{6}Z-0001\.pcapng$/);
    // whatever the kill left, a power loss could leave part of a block more
    await appendFile(join(dir, file!), Buffer.from([6, 0, 0, 0, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 9, 9, 9]));
    await expect(readCapture(join(dir, file!))).rejects.toThrow();

    const second = start(dir);
    await second.port;
    second.proc.kill('SIGTERM');
    const r2 = await second.proc;
    expect(r2.exitCode).toBe(0);
    expect(String(r2.stderr)).toMatch(/capture file had a torn tail, cut back to its last whole block/);
    const packets = await readCapture(join(dir, file!));
    expect(packets.length).toBeGreaterThan(0);
    expect(packets.every((p) => p.ifName === 'shop/web-1' && p.len === 14 + 20 + 8 + 60_000)).toBe(true);

    // the next file of the policy continues the numbering
    const third = start(dir);
    const port3 = await third.port;
    const udp3 = createSocket('udp4');
    await sendAll(udp3, port3, [announcement(policy, [{ ifindex: 11, namespace: 'shop', pod: 'web-1' }]), ...new FrameSource().frames(3, { ifindex: 11 })]);
    udp3.close();
    await new Promise((r) => setTimeout(r, 500));
    third.proc.kill('SIGTERM');
    expect((await third.proc).exitCode).toBe(0);
    const all = await files(dir);
    expect(all).toHaveLength(2);
    expect(all[1]).toMatch(/-0002\.pcapng$/);
    for (const f of all) await readCapture(join(dir, f));
  });
});
