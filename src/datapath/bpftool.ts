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
 * The maps the agent reads back (configuration, counters). They are created
 * without BTF before the load and handed to it (`map name … pinned …`): bpftool
 * prints a map with BTF only through that BTF, which it fetches by id
 * (BPF_BTF_GET_FD_BY_ID), and the kernel allows that only to CAP_SYS_ADMIN.
 * Without BTF it prints the raw bytes, which we decode (CONFIG_LAYOUT,
 * readCounters). The data plane's other maps keep their BTF: some hold a
 * bpf_spin_lock, which needs it.
 */
export const PLAIN_MAPS = ['pt_config', 'pt_counters'] as const;

/** bpftool's names of the map types PLAIN_MAPS may have (BPF_MAP_TYPE_*, uapi/linux/bpf.h). */
const MAP_TYPE_NAMES: Record<number, string> = { 2: 'array', 6: 'percpu_array' };

export interface MapDefinition {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

interface BtfType {
  id: number;
  kind: string;
  name?: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  vars?: { type_id: number }[];
  members?: { name: string; type_id: number }[];
}

/**
 * The definitions of @names in the object's `.maps` section, as libbpf reads
 * them: from the object's BTF (`bpftool btf dump file`, no privilege), where
 * `__uint(x, N)` is a pointer to an array of N and `__type(x, T)` a pointer to T.
 */
export async function mapDefinitions(obj: string, names: readonly string[], runner: Runner = createRunner()): Promise<MapDefinition[]> {
  const types = (JSON.parse(await runner.check('bpftool', ['-j', 'btf', 'dump', 'file', obj], { netnsScoped: false })) as { types: BtfType[] }).types;
  const byId = new Map(types.map((t) => [t.id, t]));
  const resolve = (id: number | undefined): BtfType | undefined => {
    let t = id === undefined ? undefined : byId.get(id);
    while (t && ['TYPEDEF', 'CONST', 'VOLATILE', 'RESTRICT', 'TYPE_TAG'].includes(t.kind)) t = byId.get(t.type_id ?? -1);
    return t;
  };
  const sizeOf = (id: number | undefined): number => {
    const t = resolve(id);
    if (t?.kind === 'ARRAY') return (t.nr_elems ?? 0) * sizeOf(t.type_id);
    return t?.size ?? 0;
  };
  const section = types.find((t) => t.kind === 'DATASEC' && t.name === '.maps');
  const out: MapDefinition[] = [];
  for (const name of names) {
    const v = section?.vars?.map((x) => byId.get(x.type_id)).find((x) => x?.name === name);
    const def = resolve(v?.type_id);
    if (!def?.members) throw new Error(`map ${name} is not defined in the .maps section of ${obj}`);
    const field = (m: string) => def.members!.find((x) => x.name === m);
    /** __uint(m, N): a pointer to an array of N elements */
    const uint = (m: string) => resolve(byId.get(field(m)?.type_id ?? -1)?.type_id)?.nr_elems ?? 0;
    /** __type(m, T): a pointer to T; or __uint(m_size, N) */
    const size = (m: string) => (field(m) ? sizeOf(byId.get(field(m)!.type_id)?.type_id) : uint(`${m}_size`));
    out.push({ name, type: uint('type'), keySize: size('key'), valueSize: size('value'), maxEntries: uint('max_entries'), flags: uint('map_flags') });
  }
  return out;
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
  // PLAIN_MAPS, made without BTF and pinned here only until the load has
  // taken them (and pinned them again under @dir/maps)
  const staging = `${dir}-plain`; // (bpffs refuses names with a dot)
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging);
  try {
    const reuse = Object.entries(opts.maps ?? {}).flatMap(([name, pin]) => ['map', 'name', name, 'pinned', pin]);
    for (const m of await mapDefinitions(obj, PLAIN_MAPS, runner)) {
      const type = MAP_TYPE_NAMES[m.type];
      if (!type) throw new Error(`map ${m.name} of ${obj} has type ${m.type}, which podtap does not create without BTF`);
      if (m.name === 'pt_config' && m.valueSize !== CONFIG_SIZE) throw new Error(`struct pt_config is ${m.valueSize} bytes in ${obj}, ${CONFIG_SIZE} in CONFIG_LAYOUT (src/datapath/bpftool.ts)`);
      const pin = `${staging}/${m.name}`;
      await runner.check('bpftool', [
        'map', 'create', pin, 'type', type, 'key', String(m.keySize), 'value', String(m.valueSize),
        'entries', String(m.maxEntries), 'name', m.name, ...(m.flags ? ['flags', String(m.flags)] : []),
      ], { netnsScoped: false });
      reuse.push('map', 'name', m.name, 'pinned', pin);
    }
    const r = await runner.run('bpftool', ['prog', 'loadall', obj, dir, ...reuse, 'pinmaps', `${dir}/maps`], { netnsScoped: false });
    if (r.exitCode !== 0) {
      await runner.run('rm', ['-rf', dir], { netnsScoped: false });
      const log = `${r.stderr}\n${r.stdout}`;
      if (looksLikeVerifierRejection(log)) throw await verifierError(log, opts.logDir, opts.key);
      throw new CommandError(`bpftool prog loadall ${obj}`, r);
    }
  } finally {
    await rm(staging, { recursive: true, force: true });
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

/**
 * struct pt_config (bpf/include/maps.h): byte offsets, little-endian; the
 * addresses are 16 bytes (IPv4 in the first 4). loadAndPin checks the size
 * against the object's BTF.
 */
const CONFIG_LAYOUT = {
  enabled: 0, captureIfindex: 4, instance: 8, routeIfindex: 12, src: 16, dst: 32, budgetPackets: 48, budgetBytes: 56, expiresNs: 64,
} as const;
const CONFIG_SIZE = 72;

export async function writeConfig(maps: string, c: RuntimeConfig, runner: Runner = createRunner()): Promise<void> {
  const v = Buffer.alloc(CONFIG_SIZE);
  const L = CONFIG_LAYOUT;
  v.writeUInt32LE(c.enabled ? 1 : 0, L.enabled);
  v.writeUInt32LE(c.captureIfindex >>> 0, L.captureIfindex);
  v.writeUInt32LE(c.instance >>> 0, L.instance);
  v.writeUInt32LE(c.routeIfindex >>> 0, L.routeIfindex);
  addrBytes(c.src).copy(v, L.src);
  addrBytes(c.dst).copy(v, L.dst);
  const u64 = (n: number | bigint) => (typeof n === 'bigint' ? (n < 0n ? 0n : n) : BigInt(Math.max(0, Math.floor(n))));
  v.writeBigUInt64LE(u64(c.budgetPackets ?? 0), L.budgetPackets);
  v.writeBigUInt64LE(u64(c.budgetBytes ?? 0), L.budgetBytes);
  v.writeBigUInt64LE(u64(c.expiresNs ?? 0n), L.expiresNs);
  await runner.check('bpftool', ['map', 'update', 'pinned', `${maps}/pt_config`, 'key', 'hex', ...hexLe32(0), 'value', 'hex', ...hexBytes(v)], { netnsScoped: false });
}

/** bpftool -j prints a map without BTF as arrays of "0x.." strings. */
function rawBytes(hex: string[]): Buffer {
  return Buffer.from(hex.map((h) => parseInt(h, 16)));
}

export async function readConfig(maps: string, runner: Runner = createRunner()): Promise<RuntimeConfig> {
  const out = JSON.parse(await runner.check('bpftool', ['-j', 'map', 'lookup', 'pinned', `${maps}/pt_config`, 'key', 'hex', ...hexLe32(0)], { netnsScoped: false })) as { value?: string[] };
  if (out.value?.length !== CONFIG_SIZE) throw new Error(`unexpected bpftool output for ${maps}/pt_config: ${JSON.stringify(out).slice(0, 200)}`);
  const v = rawBytes(out.value);
  const L = CONFIG_LAYOUT;
  const ip = (at: number) => {
    const b = v.subarray(at, at + 16);
    return b.subarray(4).some((x) => x) ? b.toString('hex').match(/.{4}/g)!.join(':') : [...b.subarray(0, 4)].join('.');
  };
  return {
    enabled: v.readUInt32LE(L.enabled) !== 0, captureIfindex: v.readUInt32LE(L.captureIfindex), instance: v.readUInt32LE(L.instance),
    routeIfindex: v.readUInt32LE(L.routeIfindex), src: ip(L.src), dst: ip(L.dst),
    budgetPackets: Number(v.readBigUInt64LE(L.budgetPackets)), budgetBytes: Number(v.readBigUInt64LE(L.budgetBytes)), expiresNs: v.readBigUInt64LE(L.expiresNs),
  };
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

/** One per-CPU row of pt_counters (struct pt_count: u64 packets, u64 bytes), raw. */
export interface CounterRow {
  key: number;
  perCpu: { packets: number; bytes: number }[];
}

/** pt_counters, one row per reason index, one value per possible CPU. */
export async function readCounterRows(maps: string, runner: Runner = createRunner()): Promise<CounterRow[]> {
  const rows = JSON.parse(await runner.check('bpftool', ['-j', 'map', 'dump', 'pinned', `${maps}/pt_counters`], { netnsScoped: false })) as { key: string[]; values: { value: string[] }[] }[];
  return rows.map((e) => ({
    key: rawBytes(e.key).readUInt32LE(0),
    perCpu: e.values.map((c) => {
      const b = rawBytes(c.value);
      return { packets: Number(b.readBigUInt64LE(0)), bytes: Number(b.readBigUInt64LE(8)) };
    }),
  }));
}

/** Sum the per-CPU counters. */
export async function readCounters(maps: string, runner: Runner = createRunner()): Promise<Counters> {
  const c = emptyCounters();
  for (const row of await readCounterRows(maps, runner)) {
    const name = REASONS[row.key];
    if (!name) continue;
    for (const v of row.perCpu) {
      c[name].packets += v.packets;
      c[name].bytes += v.bytes;
    }
  }
  // the tap counts no `seen` (one map update less per packet): every packet
  // that reaches a hook is skipped as podtap's own, filtered out, or matched
  for (const k of ['packets', 'bytes'] as const) c.seen[k] = c.skipOwn[k] + c.filtered[k] + c.matched[k];
  return c;
}
