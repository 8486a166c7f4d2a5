/**
 * Loading and pinning objects and reading/writing their maps with bpftool.
 * One load per object; every interface shares its programs and maps.
 */
import { mkdir, rm } from 'node:fs/promises';
import { isIPv6 } from 'node:net';
import { dirname } from 'node:path';
import { CommandError, createRunner, type Runner } from './exec.ts';
import { emptyCounters, REASONS, type Counters } from './counters.ts';
import { looksLikeVerifierRejection, verifierError } from './verifier.ts';

export const PROGRAMS = ['pt_tap_ingress', 'pt_tap_egress', 'pt_tunnel', 'pt_emit', 'pt_carrier'] as const;
export type ProgramName = (typeof PROGRAMS)[number];

export interface PinnedObject {
  dir: string;
  progs: Record<ProgramName, { path: string; id: number }>;
  maps: string;
}

/**
 * Load @obj and pin its programs in @dir and its maps in @dir/maps; each map
 * named in @maps is not created but the one pinned at the given path
 * (shared with the objects that name it too; pinned in @dir/maps as well).
 */
export async function loadAndPin(
  obj: string,
  dir: string,
  opts: { runner?: Runner; logDir: string; key: string; maps?: Record<string, string> },
): Promise<PinnedObject> {
  const runner = opts.runner ?? createRunner();
  await rm(dir, { recursive: true, force: true });
  await mkdir(dirname(dir), { recursive: true });
  const reuse = Object.entries(opts.maps ?? {}).flatMap(([name, pin]) => ['map', 'name', name, 'pinned', pin]);
  const r = await runner.run('bpftool', ['prog', 'loadall', obj, dir, ...reuse, 'pinmaps', `${dir}/maps`], { netnsScoped: false });
  if (r.exitCode !== 0) {
    await runner.run('rm', ['-rf', dir], { netnsScoped: false });
    const log = `${r.stderr}\n${r.stdout}`;
    if (looksLikeVerifierRejection(log)) throw await verifierError(log, opts.logDir, opts.key);
    throw new CommandError(`bpftool prog loadall ${obj}`, r);
  }
  return describePinned(dir, runner);
}

export async function describePinned(dir: string, runner: Runner = createRunner()): Promise<PinnedObject> {
  const progs = {} as PinnedObject['progs'];
  for (const name of PROGRAMS) {
    const path = `${dir}/${name}`;
    const info = JSON.parse(await runner.check('bpftool', ['-j', 'prog', 'show', 'pinned', path], { netnsScoped: false })) as { id: number };
    progs[name] = { path, id: info.id };
  }
  return { dir, progs, maps: `${dir}/maps` };
}

function hexLe32(n: number): string[] {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return [...b].map((x) => x.toString(16).padStart(2, '0'));
}

function hexBytes(b: Buffer | Uint8Array): string[] {
  return [...b].map((x) => x.toString(16).padStart(2, '0'));
}

/** 16-byte address field (IPv4 in the first 4 bytes). */
export function addrBytes(ip: string): Buffer {
  const out = Buffer.alloc(16);
  if (isIPv6(ip)) ipv6Bytes(ip).copy(out);
  else Buffer.from(ip.split('.').map(Number)).copy(out);
  return out;
}

export function ipv6Bytes(ip: string): Buffer {
  const [head, tail] = ip.split('::') as [string, string | undefined];
  const parse = (s: string | undefined) => (s ? s.split(':').filter(Boolean) : []);
  let h = parse(head);
  let t = parse(tail);
  // an embedded IPv4 tail (::ffff:1.2.3.4)
  const last = (tail === undefined ? h : t).at(-1);
  if (last?.includes('.')) {
    const v4 = last.split('.').map(Number);
    const words = [((v4[0] ?? 0) << 8 | (v4[1] ?? 0)).toString(16), ((v4[2] ?? 0) << 8 | (v4[3] ?? 0)).toString(16)];
    if (tail === undefined) h = [...h.slice(0, -1), ...words];
    else t = [...t.slice(0, -1), ...words];
  }
  const fill = tail === undefined ? [] : new Array(8 - h.length - t.length).fill('0');
  const words = [...h, ...fill, ...t];
  const out = Buffer.alloc(16);
  words.forEach((w, i) => out.writeUInt16BE(parseInt(w, 16), i * 2));
  return out;
}

export interface RuntimeConfig {
  enabled: boolean;
  captureIfindex: number;
  instance: number;
  routeIfindex: number;
  src: string;
  dst: string;
  /** Stop mirroring after this many packets / bytes (0 = no limit). */
  budgetPackets?: number;
  budgetBytes?: number;
  /** Stop mirroring at this CLOCK_MONOTONIC time, ns (bpf_ktime_get_ns; 0n = never). */
  expiresNs?: bigint;
}

function hexLe64(n: number | bigint): string[] {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(typeof n === 'bigint' ? (n < 0n ? 0n : n) : BigInt(Math.max(0, Math.floor(n))));
  return [...b].map((x) => x.toString(16).padStart(2, '0'));
}

/** struct pt_config: little-endian u32s, two 16-byte addresses, two u64 budgets, the u64 expiry. */
export async function writeConfig(maps: string, c: RuntimeConfig, runner: Runner = createRunner()): Promise<void> {
  const value = [
    ...hexLe32(c.enabled ? 1 : 0), ...hexLe32(c.captureIfindex), ...hexLe32(c.instance), ...hexLe32(c.routeIfindex),
    ...hexBytes(addrBytes(c.src)), ...hexBytes(addrBytes(c.dst)),
    ...hexLe64(c.budgetPackets ?? 0), ...hexLe64(c.budgetBytes ?? 0), ...hexLe64(c.expiresNs ?? 0n),
  ];
  await runner.check('bpftool', ['map', 'update', 'pinned', `${maps}/pt_config`, 'key', 'hex', ...hexLe32(0), 'value', 'hex', ...value], { netnsScoped: false });
}

export async function readConfig(maps: string, runner: Runner = createRunner()): Promise<RuntimeConfig> {
  const out = JSON.parse(await runner.check('bpftool', ['-j', 'map', 'lookup', 'pinned', `${maps}/pt_config`, 'key', 'hex', ...hexLe32(0)], { netnsScoped: false })) as {
    formatted?: { value: { enabled: number; capture_ifindex: number; instance: number; route_ifindex: number; src: number[]; dst: number[] } };
  };
  const v = out.formatted?.value;
  if (!v) throw new Error(`unexpected bpftool output for ${maps}/pt_config`);
  const ip = (b: number[]) => (b.slice(4).some((x) => x) ? Buffer.from(b).toString('hex').match(/.{4}/g)!.join(':') : b.slice(0, 4).join('.'));
  return { enabled: v.enabled !== 0, captureIfindex: v.capture_ifindex, instance: v.instance, routeIfindex: v.route_ifindex, src: ip(v.src), dst: ip(v.dst) };
}

/** Fill the peer-CIDR tries (PT_CIDR_FILTER). */
export async function writeCidrs(maps: string, cidrs: readonly string[], runner: Runner = createRunner()): Promise<void> {
  for (const cidr of cidrs) {
    const [ip = '', len = ''] = cidr.split('/');
    const v6 = isIPv6(ip);
    const addr = v6 ? ipv6Bytes(ip) : Buffer.from(ip.split('.').map(Number));
    await runner.check('bpftool', [
      'map', 'update', 'pinned', `${maps}/${v6 ? 'pt_cidr6' : 'pt_cidr4'}`,
      'key', 'hex', ...hexLe32(Number(len)), ...hexBytes(addr), 'value', 'hex', '01',
    ], { netnsScoped: false });
  }
}

/** Sum the per-CPU counters. */
export async function readCounters(maps: string, runner: Runner = createRunner()): Promise<Counters> {
  type Entry = { key: number; values: { value: { packets: number; bytes: number } }[] };
  // with BTF, `bpftool -j` gives raw bytes plus a "formatted" view
  const out = (JSON.parse(await runner.check('bpftool', ['-j', 'map', 'dump', 'pinned', `${maps}/pt_counters`], { netnsScoped: false })) as ({ formatted?: Entry } & Entry)[]).map(
    (e) => e.formatted ?? e,
  );
  const c = emptyCounters();
  for (const e of out) {
    const name = REASONS[e.key];
    if (!name) continue;
    for (const v of e.values) {
      c[name].packets += v.value.packets;
      c[name].bytes += v.value.bytes;
    }
  }
  // the tap counts no `seen` (one map update less per packet): every packet
  // that reaches a hook is skipped as podtap's own, filtered out, or matched
  for (const k of ['packets', 'bytes'] as const) c.seen[k] = c.skipOwn[k] + c.filtered[k] + c.matched[k];
  return c;
}
