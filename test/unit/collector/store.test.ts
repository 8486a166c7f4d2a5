/**
 * The capture files: naming per policy, rotation by size and time, retention
 * by size and age, sequence numbers across restarts, torn tails repaired on
 * start, a disk that fills up and frees again, hostile names, files that
 * cannot be created, and file modes. Files are read back with tshark.
 */
import { appendFile, chmod, mkdir, readFile, readdir, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { nodeCaptureFs, type CaptureFs } from '../../../src/collector/capture-file.ts';
import { repairCapture } from '../../../src/collector/repair.ts';
import { captureKey, type Iface, type Ref } from '../../../src/collector/router.ts';
import { Retention, type RetentionOptions } from '../../../src/collector/retention.ts';
import { CREATE_RETRY_MS, CaptureNameError, CaptureStore, pathUnder, type StoreOptions } from '../../../src/collector/store.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { pattern } from '../wire/frames.ts';
import { readCapture, tempDir } from './helpers.ts';

let uid = 0;
function iface(pod: string, policy: Ref | null, ns = 'shop'): Iface {
  return { uid: ++uid, name: `${ns}/${pod}`, description: `pod ${pod}`, snaplen: 0, pod: { namespace: ns, name: pod }, policy, capture: captureKey(policy) };
}

const WEB: Ref = { namespace: 'shop', name: 'web-debug' };
const DB: Ref = { namespace: 'data', name: 'db.slow' };
const T0 = Date.parse('2025-11-25T10:00:00Z');

let dir: string;
let cleanup: () => Promise<void>;
let now: number;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
  now = T0;
});
afterEach(async () => cleanup());

function open(opts: Partial<StoreOptions> = {}): Promise<CaptureStore> {
  return CaptureStore.open({ dir, logger: silentLogger, clock: () => now, batchSize: 1 << 17, ...opts });
}

/** n packets of `len` bytes on `i`, timestamps 1 µs apart. */
function send(s: CaptureStore, i: Iface, n: number, len = 1000, seed = 1): void {
  for (let k = 0; k < n; k++) s.packet(i, 0x18000000, k * 1000, pattern(len, seed + k), 0, len, len, 1);
}

async function tree(): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).filter((f) => f.endsWith('.pcapng')).sort();
}

describe('owners: the namespace and policy a file is read under (the HTTP API authorizes by them)', () => {
  it('files found on start are catalogued under their own namespace and policy, as the running store files them', async () => {
    const s = await open();
    send(s, iface('web-1', WEB), 1);
    send(s, iface('db-0', DB, 'data'), 1);
    send(s, iface('x', null), 1);
    await s.close();
    const owners = (st: CaptureStore) => st.list().map((e) => [e.path, e.namespace, e.policy]);
    const before = owners(s);
    const again = await open();
    expect(owners(again)).toEqual(before);
    expect(owners(again).map(([, ns, p]) => `${ns}/${p}`).sort()).toEqual(['data/db.slow', 'null/null', 'shop/web-debug']);
    await again.close();
  });

  it.each([
    { description: 'a policy directory', input: 'team-b_web-debug/web-debug-20260101T000000Z-0001.pcapng', expected: { namespace: 'team-b', policy: 'web-debug' } },
    { description: 'a dotted policy name', input: 'data_db.slow/db.slow-20260101T000000Z-0001.pcapng', expected: { namespace: 'data', policy: 'db.slow' } },
    { description: 'unassigned packets', input: 'unassigned/unassigned-20260101T000000Z-0001.pcapng', expected: { namespace: null, policy: null } },
    { description: 'the single layout', input: 'podtap-20260101T000000Z-0001.pcapng', expected: { namespace: null, policy: null } },
    { description: 'a nested path', input: 'a_b/c_d/x.pcapng', expected: { namespace: null, policy: null } },
    { description: 'a traversal', input: '../team-b_web/x.pcapng', expected: { namespace: null, policy: null } },
  ])('ownerOf $description', async ({ input, expected }) => {
    const s = await open();
    expect(s.ownerOf(input)).toEqual(expected);
    await s.close();
  });
});

describe('naming', () => {
  it('one series per policy, unassigned for packets of no policy, opened at their first packet', async () => {
    const s = await open();
    expect(await tree()).toEqual([]);
    send(s, iface('web-1', WEB), 3);
    send(s, iface('db-0', DB, 'data'), 2);
    send(s, iface('x', null), 1);
    await s.close();
    expect(await tree()).toEqual([
      'data_db.slow/db.slow-20251125T100000Z-0001.pcapng',
      'shop_web-debug/web-debug-20251125T100000Z-0001.pcapng',
      'unassigned/unassigned-20251125T100000Z-0001.pcapng',
    ]);
    expect((await readCapture(join(dir, 'shop_web-debug/web-debug-20251125T100000Z-0001.pcapng'))).map((p) => p.ifName)).toEqual(['shop/web-1', 'shop/web-1', 'shop/web-1']);
    expect(s.list().map((e) => [e.capture, e.namespace, e.policy, e.open])).toEqual([
      ['data_db.slow', 'data', 'db.slow', false],
      ['shop_web-debug', 'shop', 'web-debug', false],
      ['unassigned', null, null, false],
    ]);
  });

  it('layout single: every packet in podtap-<start>-<seq>.pcapng', async () => {
    const s = await open({ layout: 'single' });
    send(s, iface('web-1', WEB), 2);
    send(s, iface('x', null), 1);
    await s.close();
    expect(await tree()).toEqual(['podtap-20251125T100000Z-0001.pcapng']);
    expect((await readCapture(join(dir, (await tree())[0]!))).length).toBe(3);
  });
});

describe('rotation', () => {
  it('by size: a new file once the size is reached, every file complete', async () => {
    const s = await open({ rotateBytes: 200_000 });
    const i = iface('web-1', WEB);
    for (let k = 0; k < 10; k++) {
      send(s, i, 50, 1000, k * 50); // ~52 KB
      now += 1000;
    }
    await s.close();
    const files = await tree();
    expect(files.length).toBe(3); // 4 × ~52 KB per file
    const seqs = files.map((f) => Number(/-(\d{4})\.pcapng$/.exec(f)![1]));
    expect(seqs).toEqual([1, 2, 3]);
    let total = 0;
    for (const f of files) {
      const packets = await readCapture(join(dir, f));
      total += packets.length;
      expect(packets.every((p) => p.ifName === 'shop/web-1')).toBe(true); // each file describes its interfaces again
    }
    expect(total).toBe(500);
    expect(s.stats()).toMatchObject({ written: 500, files: 3, openFiles: 0 });
  });

  it('by time: a file is closed after the interval; the next packet opens a new one', async () => {
    const s = await open({ rotateMs: 60_000 });
    const i = iface('web-1', WEB);
    send(s, i, 5);
    now += 59_000;
    s.tick();
    expect(s.stats().openFiles).toBe(1);
    now += 1_000;
    s.tick();
    await s.idle();
    expect(s.stats().openFiles).toBe(0);
    send(s, i, 5);
    await s.close();
    expect(await tree()).toEqual(['shop_web-debug/web-debug-20251125T100000Z-0001.pcapng', 'shop_web-debug/web-debug-20251125T100100Z-0002.pcapng']);
  });

  it('sequence numbers continue from the files already there', async () => {
    const first = await open();
    send(first, iface('web-1', WEB), 1);
    await first.close();
    now += 5000;
    const second = await open();
    send(second, iface('web-1', WEB), 1);
    await second.close();
    expect(await tree()).toEqual(['shop_web-debug/web-debug-20251125T100000Z-0001.pcapng', 'shop_web-debug/web-debug-20251125T100005Z-0002.pcapng']);
  });
});

/** Retention over a store, run as the collector runs it: at start, after each closed file, on ticks. */
function retain(s: CaptureStore, opts: RetentionOptions): Retention {
  const r = new Retention(s, { ...opts, logger: silentLogger, clock: () => now });
  s.onFileClosed = () => r.run();
  r.run();
  return r;
}

describe('retention', () => {
  it('by total size: the oldest closed files go first; open files count but stay', async () => {
    const s = await open({ rotateBytes: 64 << 20, rotateMs: 60_000 });
    const r = retain(s, { maxBytes: 3_000_000 });
    const i = iface('web-1', WEB);
    const j = iface('db-0', DB, 'data');
    for (let k = 0; k < 6; k++) {
      send(s, k % 2 ? j : i, 1000, 1100, k * 1000); // ~1.1 MB: one file each (rotated by time)
      now += 60_000;
      s.tick();
      r.tick();
      await s.idle();
    }
    await s.close();
    const usage = s.stats().diskUsage;
    expect(usage).toBeLessThanOrEqual(3_000_000);
    // (deleting from the disk is asynchronous; the catalogue is not)
    await vi.waitFor(async () => expect((await tree()).length).toBe(2));
    const left = await tree();
    // what is left is the newest
    expect(left.map((f) => /-(\d{8}T\d{6}Z)-/.exec(f)![1]).sort()).toEqual(['20251125T100400Z', '20251125T100500Z']);
    expect(r.stats().deletedBySize).toBeGreaterThanOrEqual(4);
  });

  it('by age: closed files older than the limit are deleted, their directory too', async () => {
    const s = await open();
    send(s, iface('db-0', DB, 'data'), 3);
    send(s, iface('web-1', WEB), 3);
    await s.close();
    // closed "at" T0 on the test's clock
    for (const f of await tree()) await utimes(join(dir, f), T0 / 1000, T0 / 1000);
    const s2 = await open();
    const r = retain(s2, { maxAgeMs: 3_600_000 });
    now += 3_600_000 + 20_000;
    send(s2, iface('web-1', WEB), 1); // a fresh file, open: never deleted
    s2.tick();
    r.tick();
    await vi.waitFor(async () => {
      expect(await tree()).toEqual(['shop_web-debug/web-debug-20251125T110020Z-0002.pcapng']);
      expect(await readdir(dir)).toEqual(['shop_web-debug']); // (the directory goes after its last file)
    });
    expect(r.stats().deletedByAge).toBe(2);
    await s2.close();
  });
});

describe('torn tails', () => {
  async function oneFile(packets: number): Promise<string> {
    const s = await open();
    send(s, iface('web-1', WEB), packets, 1500);
    await s.close();
    return join(dir, (await tree())[0]!);
  }

  it.each([
    { description: 'cut in the middle of a packet', input: (size: number) => size - 700, expected: { kind: 'truncated', packets: 9 } },
    { description: 'cut right after a block header', input: (size: number) => size - 1544 + 8, expected: { kind: 'truncated', packets: 9 } },
    { description: 'cut inside the section header', input: () => 20, expected: { kind: 'empty', packets: 0 } },
    { description: 'not cut', input: (size: number) => size, expected: { kind: 'whole', packets: 10 } },
  ])('$description', async ({ input, expected }) => {
    const file = await oneFile(10);
    const size = (await stat(file)).size;
    await truncate(file, input(size));
    const before = await readCapture(file).then(
      () => 'readable',
      () => 'unreadable',
    );
    if (expected.kind !== 'whole') expect(before).toBe('unreadable');
    expect((await repairCapture(file)).kind).toBe(expected.kind);
    if (expected.kind !== 'empty') expect((await readCapture(file)).length).toBe(expected.packets);
  });

  it('garbage after the last block is cut too', async () => {
    const file = await oneFile(4);
    await appendFile(file, Buffer.from([6, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3]));
    expect(await repairCapture(file)).toMatchObject({ kind: 'truncated', removedBytes: 11 });
    expect((await readCapture(file)).length).toBe(4);
  });

  it('the store repairs on start: torn files cut, empty ones removed, foreign ones left alone', async () => {
    const file = await oneFile(10);
    await truncate(file, (await stat(file)).size - 100);
    await mkdir(join(dir, 'unassigned'));
    await writeFile(join(dir, 'unassigned/unassigned-20251125T090000Z-0001.pcapng'), Buffer.from([0x0a, 0x0d, 0x0d, 0x0a, 28, 0]));
    await writeFile(join(dir, 'unassigned/unassigned-20251125T090000Z-0002.pcapng'), 'not a capture at all');
    const s = await open();
    expect(s.stats().repaired).toBe(2);
    expect((await readCapture(file)).length).toBe(9);
    expect(await tree()).toEqual(['shop_web-debug/web-debug-20251125T100000Z-0001.pcapng', 'unassigned/unassigned-20251125T090000Z-0002.pcapng']);
    expect(s.list().map((e) => e.path)).toEqual(['shop_web-debug/web-debug-20251125T100000Z-0001.pcapng']);
    await s.close();
    expect(await readFile(join(dir, 'unassigned/unassigned-20251125T090000Z-0002.pcapng'), 'utf8')).toBe('not a capture at all');
  });
});

describe('a full disk', () => {
  /** The real file system, except that writes fail with ENOSPC once `limit` bytes were written, until `free` is called. */
  function fillingFs(limit: number): CaptureFs & { free(): void; written: number } {
    let full = false;
    const fs = {
      written: 0,
      free() {
        full = false;
        limit = Number.POSITIVE_INFINITY;
      },
      ...nodeCaptureFs,
      async write(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
        if (full || fs.written + len > limit) {
          full = true;
          // a short write, as the kernel does when the last blocks run out, then ENOSPC
          const part = Math.max(0, Math.min(len - 1, limit - fs.written));
          if (part > 0) {
            const n = await nodeCaptureFs.write(fd, buf, off, part, pos);
            fs.written += n;
            limit = fs.written;
            return n;
          }
          throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
        }
        const n = await nodeCaptureFs.write(fd, buf, off, len, pos);
        fs.written += n;
        return n;
      },
      freeBytes: async () => (full ? 0 : 1 << 30),
    };
    return fs;
  }

  it('stops writing, keeps every file readable, counts what it drops, resumes in a new file', async () => {
    const fs = fillingFs(300_000);
    const s = await open({ fs, minFreeBytes: 1 << 20 });
    const i = iface('web-1', WEB);
    for (let k = 0; k < 8; k++) {
      send(s, i, 100, 1000, k * 100); // ~105 KB, one batch each
      s.tick();
      await s.idle(); // (this batch reached the disk, or the store knows it is full)
    }
    const full = s.stats();
    expect(full.diskFull).toBe(true);
    expect(full.droppedDiskFull).toBeGreaterThan(0);
    expect(full.written + full.lostInWrite + full.droppedDiskFull).toBe(800);
    // keeps answering
    expect(s.list().length).toBe(1);
    fs.free();
    now += 2000;
    await vi.waitFor(() => {
      now += 1000; // (it looks for room again on a tick, at most once a second)
      s.tick();
      expect(s.stats().diskFull).toBe(false);
    });
    send(s, i, 10);
    await s.close();
    const after = s.stats();
    expect(after.written + after.lostInWrite + after.droppedDiskFull).toBe(810);
    const files = await tree();
    expect(files.length).toBe(2);
    const counts = await Promise.all(files.map(async (f) => (await readCapture(join(dir, f))).length));
    expect(counts).toEqual([full.written, 10]);
  });
});

describe('hostile names and failed creates', () => {
  /** An interface whose policy names are whatever a (buggy or forged) sender said, bypassing the announcement schema. */
  function hostile(policy: Ref): Iface {
    return { uid: ++uid, name: 'x/y', description: '', snaplen: 0, pod: null, policy, capture: captureKey(policy) };
  }

  it.each([
    { description: 'a policy named ../../escape', input: { namespace: 'shop', name: '../../escape' } },
    { description: 'a namespace with a slash', input: { namespace: '../..', name: 'web' } },
    { description: 'an absolute path', input: { namespace: 'shop', name: '/tmp/escape' } },
    { description: 'upper case (not a Kubernetes name)', input: { namespace: 'shop', name: 'Web' } },
    { description: 'a name too long for the file system', input: { namespace: 'shop', name: `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(50)}` } },
  ])('$description: no file anywhere, that capture counted, the others keep writing', async ({ input }) => {
    const outside = await readdir(join(dir, '..'));
    const s = await open();
    send(s, hostile(input), 3);
    send(s, iface('web-1', WEB), 2);
    await s.close();
    expect(await readdir(join(dir, '..'))).toEqual(outside);
    expect(await tree()).toEqual(['shop_web-debug/web-debug-20251125T100000Z-0001.pcapng']);
    expect(s.stats()).toMatchObject({ captureErrors: 1, droppedCreateFailed: 3, diskFull: false, droppedDiskFull: 0, written: 2 });
  });

  it('pathUnder refuses what leaves the root', () => {
    expect(pathUnder('/captures', 'shop_web/web-1.pcapng')).toBe('/captures/shop_web/web-1.pcapng');
    for (const rel of ['..', '../x', 'a/../../x', '/etc/passwd', '', '.']) expect(() => pathUnder('/captures', rel), rel).toThrow(CaptureNameError);
  });

  it('a file that cannot be created (not for space) stops only its capture, for a while, counted', async () => {
    let refuse = true;
    const fs: CaptureFs = {
      ...nodeCaptureFs,
      create: (path) => {
        if (refuse && path.includes('/data_db.slow/')) throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
        return nodeCaptureFs.create(path);
      },
    };
    const s = await open({ fs });
    send(s, iface('db-0', DB, 'data'), 4);
    send(s, iface('web-1', WEB), 2);
    expect(s.stats()).toMatchObject({ captureErrors: 1, droppedCreateFailed: 4, diskFull: false });
    refuse = false;
    send(s, iface('db-0', DB, 'data'), 1); // still waiting: no new try yet
    now += CREATE_RETRY_MS;
    send(s, iface('db-0', DB, 'data'), 2);
    await s.close();
    expect(s.stats()).toMatchObject({ captureErrors: 1, droppedCreateFailed: 5, written: 4, diskFull: false, droppedDiskFull: 0 });
    expect(await tree()).toEqual(['data_db.slow/db.slow-20251125T100010Z-0001.pcapng', 'shop_web-debug/web-debug-20251125T100000Z-0001.pcapng']);
  });

  it('files are 0600 and directories 0700; older 0644 files are made private on start', async () => {
    const s = await open();
    send(s, iface('web-1', WEB), 1);
    await s.close();
    const file = join(dir, (await tree())[0]!);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'shop_web-debug'))).mode & 0o777).toBe(0o700);
    await chmod(file, 0o644);
    await chmod(join(dir, 'shop_web-debug'), 0o755);
    await (await open()).close();
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'shop_web-debug'))).mode & 0o777).toBe(0o700);
  });
});
