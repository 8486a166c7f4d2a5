/**
 * The node's mirror budget: one token bucket (bpf/include/maps.h, struct
 * pt_node) shared by every podtap object on a node, so N policies tapping one
 * pod still mirror at most the node's rate between them.
 *
 *   <pin root>/node_budget_v1    the map, pinned once per node (per pin root)
 *
 * Every object a session loads gets this map in place of its own copy
 * (`bpftool prog loadall … map name pt_node pinned PATH`); the first load on
 * a node pins its own. The agent writes the rates (writeNodeBudget) into each
 * map it has not written them to yet, and again when they change: a restarted
 * agent keeps the map and its programs, and writes the rates once more (which
 * starts the bucket full). Why not compare with what the map holds, as a
 * restarted agent could: the map holds a bpf_spin_lock and so has BTF, and
 * bpftool reads a map with BTF only through it, fetched by id
 * (BPF_BTF_GET_FD_BY_ID), which the kernel allows only to CAP_SYS_ADMIN —
 * which the agent does not have (measured: `bpftool map lookup` "failed to
 * get btf"; a write needs no BTF). `podtap sniff` never writes the rates, and
 * is bound by the agent's. The pin goes with the last session of its pin root
 * (releaseNodeBudget) and with `podtap cleanup`.
 */
import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { loadAndPin, type PinnedObject } from './bpftool.ts';
import { CommandError, createRunner, type Runner } from './exec.ts';
import { PROBE_DIR_PREFIX } from './features.ts';

/**
 * The pin's name under the pin root: a `_` is in no session id (session.ts),
 * and bpffs names take no dot. The version is the layout of struct pt_node:
 * a new layout gets a new name, never a map the kernel refuses to share.
 */
export const NODE_BUDGET_PIN = 'node_budget_v1';

/** The map's name in the object (bpf/include/maps.h). */
const NODE_MAP = 'pt_node';

/**
 * The highest rate a token bucket takes (packets or bytes per second): one
 * second of it in tokens (rate * 1e9) must fit the bucket's u64 (pt_refill in
 * bpf/podtap.bpf.c). The API's rateLimit has the same bound.
 */
export const MAX_RATE_PER_SECOND = 10_000_000_000;

export interface NodeBudget {
  /** Packets per second the whole node mirrors; 0 = no such budget. */
  packetsPerSecond: number;
  /** Bytes per second the whole node mirrors; 0 = no such budget. */
  bytesPerSecond: number;
}

export function nodeBudgetPin(pinRoot: string): string {
  return join(pinRoot, NODE_BUDGET_PIN);
}

/** One pin operation at a time in this process (the agent applies two captures at once). */
const queues = new Map<string, Promise<unknown>>();
function serialized<T>(pin: string, fn: () => Promise<T>): Promise<T> {
  const next = (queues.get(pin) ?? Promise.resolve()).then(fn, fn);
  queues.set(pin, next.catch(() => undefined));
  return next;
}

/**
 * Load @obj into @dir like loadAndPin, its pt_node being the node's map under
 * @pinRoot (pinned from this object when there is none yet). Another process
 * may pin one, or remove the last, between the check and the load: then the
 * load is done again against what is there now.
 */
export async function loadSharingNodeBudget(
  obj: string,
  dir: string,
  opts: { runner?: Runner; logDir: string; key: string; pinRoot: string },
): Promise<PinnedObject> {
  const runner = opts.runner ?? createRunner();
  const pin = nodeBudgetPin(opts.pinRoot);
  const load = { runner, logDir: opts.logDir, key: opts.key };
  return serialized(pin, async () => {
    for (let attempt = 1; ; attempt++) {
      if (existsSync(pin)) {
        try {
          return await loadAndPin(obj, dir, { ...load, maps: { [NODE_MAP]: pin } });
        } catch (err) {
          if (attempt < 3 && !existsSync(pin)) continue; // the last user removed it meanwhile
          throw err;
        }
      }
      const loaded = await loadAndPin(obj, dir, load);
      const r = await runner.run('bpftool', ['map', 'pin', 'pinned', `${loaded.maps}/${NODE_MAP}`, pin], { netnsScoped: false });
      if (r.exitCode === 0) return loaded;
      await rm(dir, { recursive: true, force: true });
      if (attempt < 3 && existsSync(pin)) continue; // another process pinned its own first: share that one
      throw new Error(`pinning the node's mirror budget at ${pin} failed`, { cause: new CommandError(`bpftool map pin pinned ${loaded.maps}/${NODE_MAP} ${pin}`, r) });
    }
  });
}

function u64le(n: number): string[] {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return [...b].map((x) => x.toString(16).padStart(2, '0'));
}

const KEY = ['key', 'hex', '00', '00', '00', '00'];

/** The rates the node's map holds, or undefined when there is no map under @pinRoot. Reads through the map's BTF: needs CAP_SYS_ADMIN (tests, diagnostics; never the agent). */
export async function readNodeBudget(pinRoot: string, runner: Runner = createRunner()): Promise<NodeBudget | undefined> {
  const pin = nodeBudgetPin(pinRoot);
  if (!existsSync(pin)) return undefined;
  const out = JSON.parse(await runner.check('bpftool', ['-j', 'map', 'lookup', 'pinned', pin, ...KEY], { netnsScoped: false })) as {
    formatted?: { value: { pps: number; bps: number } };
  };
  const v = out.formatted?.value;
  if (!v) throw new Error(`unexpected bpftool output for ${pin}`);
  return { packetsPerSecond: v.pps, bytesPerSecond: v.bps };
}

/** What this process last wrote into each pinned map: its id and the rates. */
const written = new Map<string, { id: number; budget: NodeBudget }>();

/**
 * Make the node's map hold @budget; false when this process already wrote it
 * into this very map (the bucket is left as the programs keep it) or there
 * is no map under @pinRoot. A write starts the bucket full.
 */
export async function writeNodeBudget(pinRoot: string, budget: NodeBudget, runner: Runner = createRunner()): Promise<boolean> {
  for (const [name, v] of Object.entries(budget)) {
    if (!Number.isSafeInteger(v) || v < 0 || v > MAX_RATE_PER_SECOND) throw new Error(`node budget ${name} must be a whole number from 0 to ${MAX_RATE_PER_SECOND}, got ${v}`);
  }
  const pin = nodeBudgetPin(pinRoot);
  return serialized(pin, async () => {
    if (!existsSync(pin)) return false;
    // (a map id, unlike its contents, is read without BTF)
    const id = await mapId(pin, runner);
    const last = written.get(pin);
    if (last && last.id === id && last.budget.packetsPerSecond === budget.packetsPerSecond && last.budget.bytesPerSecond === budget.bytesPerSecond) return false;
    // struct pt_node: lock (the kernel skips it), pad, pps, bps, last_ns, pkt_tokens, byte_tokens
    const value = [...u64le(0), ...u64le(budget.packetsPerSecond), ...u64le(budget.bytesPerSecond), ...u64le(0), ...u64le(0), ...u64le(0)];
    await runner.check('bpftool', ['map', 'update', 'pinned', pin, ...KEY, 'value', 'hex', ...value], { netnsScoped: false });
    written.set(pin, { id, budget: { ...budget } });
    return true;
  });
}

/**
 * Remove the node's map when no object pinned under @pinRoot shares it any
 * more (each one that does has it pinned among its own maps, under its
 * session's directory; a session left by an older podtap, with a map of its
 * own, does not keep it). True when removed.
 */
export async function releaseNodeBudget(pinRoot: string, runner: Runner = createRunner()): Promise<boolean> {
  const pin = nodeBudgetPin(pinRoot);
  return serialized(pin, async () => {
    if (!existsSync(pin)) return false;
    const id = await mapId(pin, runner);
    for (const session of await readdir(pinRoot, { withFileTypes: true })) {
      if (!session.isDirectory() || session.name.startsWith(PROBE_DIR_PREFIX)) continue;
      for (const obj of await readdir(join(pinRoot, session.name), { withFileTypes: true }).catch(() => [])) {
        const theirs = join(pinRoot, session.name, obj.name, 'maps', NODE_MAP);
        if (obj.isDirectory() && existsSync(theirs) && (await mapId(theirs, runner).catch(() => undefined)) === id) return false;
      }
    }
    await rm(pin, { force: true });
    return true;
  });
}

async function mapId(pin: string, runner: Runner): Promise<number> {
  return (JSON.parse(await runner.check('bpftool', ['-j', 'map', 'show', 'pinned', pin], { netnsScoped: false })) as { id: number }).id;
}
