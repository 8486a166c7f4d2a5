/**
 * The capture files: one rotating series per policy, and what happens when
 * the disk is full. (Which closed files to delete is retention.ts's.)
 *
 * Layout under the capture directory (layout "policy", the default):
 *
 *   <namespace>_<policy>/<policy>-<UTC start>-<seq>.pcapng
 *   unassigned/unassigned-<UTC start>-<seq>.pcapng   (frames of no announced policy)
 *
 * Layout "single" writes every packet into one series,
 * podtap-<UTC start>-<seq>.pcapng, in the directory itself.
 *
 * A file is opened when its first packet comes and rotated when it reaches
 * the size limit or the time limit; rotation flushes, fsyncs and closes it.
 * Sequence numbers continue from the highest on disk, so names never repeat.
 * A write failure (ENOSPC, EDQUOT, EIO) stops all writing: open files are cut
 * back to their last whole block and closed, packets are counted as dropped
 * while the condition lasts, and writing resumes in new files once the file
 * system has room again. A file that cannot be created for any other reason
 * (a name the file system refuses, a permission) stops only its own capture,
 * for CREATE_RETRY_MS, its packets counted (create-failed).
 *
 * Names come from senders' announcements, which the wire schema already
 * holds to Kubernetes' name rules; the store checks again that every
 * directory and file name it makes is one of its own grammar and that the
 * path stays inside the capture directory, so no name can reach outside it.
 * Files are created 0600 and directories 0700: captures are other pods'
 * traffic.
 */
import { mkdirSync, rmdirSync, type Stats } from 'node:fs';
import { chmod, readdir, stat, unlink } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { Logger } from '../util/log.ts';
import { podtapVersion } from '../util/version.ts';
import { FileInterfaces, PendingNotes, msToNs } from './annotations.ts';
import { CaptureFile, nodeCaptureFs, type CaptureFs } from './capture-file.ts';
import { repairCapture } from './repair.ts';
import { UNASSIGNED, describeLoss, type Iface, type PacketOutput, type Ref, type TransitLoss } from './router.ts';

export type Layout = 'policy' | 'single';

export interface StoreOptions {
  dir: string;
  logger: Logger;
  layout?: Layout;
  /** rotate a file at this size (default 256 MiB) */
  rotateBytes?: number;
  /** rotate a file this long after it was opened (default 1 h; 0 = never) */
  rotateMs?: number;
  /** packets are dropped (and counted) while this many bytes wait for the disk (default 256 MiB) */
  maxQueuedBytes?: number;
  /** after a full disk, writing resumes when this much is free (default 64 MiB) */
  minFreeBytes?: number;
  batchSize?: number;
  section?: { userappl: string; os?: string; hardware?: string };
  fs?: CaptureFs;
  /** wall clock, ms (tests move it) */
  clock?: () => number;
}

/** A capture file as the API lists it. */
export interface CaptureEntry {
  /** relative to the capture directory, "/"-separated: what the API serves */
  path: string;
  /** `<namespace>_<policy>`, `unassigned`, or `podtap` (single layout) */
  capture: string;
  namespace: string | null;
  policy: string | null;
  /** UTC time the file was opened, ms since the epoch (from its name) */
  start: number;
  seq: number;
  /** bytes of whole blocks: for an open file, what has reached the disk so far */
  size: number;
  /** last write, ms since the epoch */
  modified: number;
  open: boolean;
}

export interface StoreStats {
  /** packets on disk (this process) */
  written: number;
  /** pcapng bytes on disk (this process) */
  bytesWritten: number;
  /** capture files in the directory (ours), open ones included */
  files: number;
  openFiles: number;
  /** bytes of all capture files in the directory */
  diskUsage: number;
  /** free bytes on the file system, as last seen */
  diskFree: number;
  /** true while writing is stopped by a failed write (disk full) */
  diskFull: boolean;
  /** packets refused while writing was stopped */
  droppedDiskFull: number;
  /** packets refused because the disk could not keep up */
  droppedSlow: number;
  /** packets of captures whose file could not be created (not for lack of space): see captureErrors */
  droppedCreateFailed: number;
  /** times a capture's file could not be created */
  captureErrors: number;
  /** packets in batches whose write failed */
  lostInWrite: number;
  /** files whose torn tail was cut on start, and empty ones removed */
  repaired: number;
}

const SINGLE = 'podtap';
/** A capture whose file could not be created waits this long before it tries again. */
export const CREATE_RETRY_MS = 10_000;
/** The longest file or directory name (bytes) the file systems we write to take (NAME_MAX). */
const NAME_MAX = 255;
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
/** How often the free space is looked at (the disk_free_bytes metric). */
const FREE_CHECK_INTERVAL_MS = 10_000;
const NAME_RE = /^(.+)-(\d{8}T\d{6}Z)-(\d{4,})\.pcapng$/;
const LABEL = '[a-z0-9](?:[-a-z0-9]*[a-z0-9])?'; // (no capturing group: DIR_RE's groups 1 and 2 are the namespace and the policy)
const SUBDOMAIN = `${LABEL}(?:\\.${LABEL})*`;
const DIR_RE = new RegExp(`^(${LABEL})_(${SUBDOMAIN})$`);
const PREFIX_RE = new RegExp(`^${SUBDOMAIN}$`);

/** A capture's directory or file name could not be made safely. */
export class CaptureNameError extends Error {}

/**
 * `rel` resolved under `root`, refused unless it stays strictly inside it:
 * no `..`, no absolute part, nothing that resolves to the root itself.
 */
export function pathUnder(root: string, rel: string): string {
  const base = resolve(root);
  const abs = resolve(base, rel);
  const r = relative(base, abs);
  if (r === '' || r === '..' || r.startsWith(`..${sep}`) || isAbsolute(r)) {
    throw new CaptureNameError(`${JSON.stringify(rel)} is not inside the capture directory ${base}`);
  }
  return abs;
}

/** 20251125T101530Z */
export function utcStamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

function parseStamp(s: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  return m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])) : 0;
}

/** `<prefix>-<UTC start>-<seq>.pcapng`, seq with at least 4 digits. */
export function captureFileName(prefix: string, startMs: number, seq: number): string {
  return `${prefix}-${utcStamp(startMs)}-${String(seq).padStart(4, '0')}.pcapng`;
}

interface Entry extends CaptureEntry {
  file: CaptureFile | undefined;
}

interface Capture {
  key: string;
  /** directory relative to the root ('' for the single layout) */
  dir: string;
  prefix: string;
  namespace: string | null;
  policy: string | null;
  file: CaptureFile | undefined;
  entry: Entry | undefined;
  /** clock() when the open file was opened */
  openedAt: number;
  nextSeq: number;
  /** its file could not be created: no new try before `until` (clock()) */
  failed: { until: number; code: string } | undefined;
  /** the open file's interfaces and their statistics */
  ifaces: FileInterfaces;
  /** losses the next packet's comment tells */
  notes: PendingNotes;
}

const errCode = (err: unknown): string | undefined => {
  let e = err as { code?: string; cause?: unknown } | undefined;
  while (e) {
    if (e.code) return e.code;
    e = e.cause as typeof e;
  }
  return undefined;
};

export class CaptureStore implements PacketOutput {
  readonly root: string;
  readonly #log: Logger;
  readonly #layout: Layout;
  readonly #rotateBytes: number;
  readonly #rotateMs: number;
  readonly #maxQueued: number;
  readonly #minFree: number;
  readonly #batchSize: number | undefined;
  readonly #section: { userappl: string; os?: string; hardware?: string };
  readonly #fs: CaptureFs;
  readonly #clock: () => number;
  readonly #entries = new Map<string, Entry>();
  readonly #captures = new Map<string, Capture>();
  readonly #closing = new Set<Promise<void>>();
  #queued = 0;
  #full: { since: number; code: string } | undefined;
  #lastProbe = 0;
  #lastFreeCheck = 0;
  #closed = false;
  #diskFree = 0;
  // counters
  #writtenClosed = 0;
  #bytesClosed = 0;
  #lostClosed = 0;
  #droppedDiskFull = 0;
  #droppedSlow = 0;
  #droppedCreateFailed = 0;
  #captureErrors = 0;
  #repaired = 0;
  /** told after a file was closed (rotation, a failed write, close): retention runs then */
  onFileClosed: () => void = () => undefined;

  private constructor(opts: StoreOptions) {
    this.root = opts.dir;
    this.#log = opts.logger;
    this.#layout = opts.layout ?? 'policy';
    this.#rotateBytes = opts.rotateBytes ?? 256 << 20;
    this.#rotateMs = opts.rotateMs ?? 3_600_000;
    this.#maxQueued = opts.maxQueuedBytes ?? 256 << 20;
    this.#minFree = opts.minFreeBytes ?? 64 << 20;
    this.#batchSize = opts.batchSize;
    this.#section = opts.section ?? { userappl: `podtap ${podtapVersion()}` };
    this.#fs = opts.fs ?? nodeCaptureFs;
    this.#clock = opts.clock ?? Date.now;
  }

  /** Opens the store: finds the capture files already there and repairs torn tails. */
  static async open(opts: StoreOptions): Promise<CaptureStore> {
    const s = new CaptureStore(opts);
    await s.#scan();
    s.#diskFree = await s.#fs.freeBytes(s.root).catch(() => 0);
    return s;
  }

  async #scan(): Promise<void> {
    const found: { rel: string; dir: string; name: string }[] = [];
    for (const d of await readdir(this.root, { withFileTypes: true })) {
      if (d.isFile() && NAME_RE.test(d.name)) found.push({ rel: d.name, dir: '', name: d.name });
      else if (d.isDirectory() && (d.name === UNASSIGNED || DIR_RE.test(d.name))) {
        for (const f of await readdir(join(this.root, d.name), { withFileTypes: true })) {
          if (f.isFile() && NAME_RE.test(f.name)) found.push({ rel: `${d.name}/${f.name}`, dir: d.name, name: f.name });
        }
      }
    }
    for (const d of new Set(found.map((f) => f.dir).filter((d) => d !== ''))) await this.#private(join(this.root, d), DIR_MODE);
    for (const f of found) {
      const abs = join(this.root, f.rel);
      let outcome;
      try {
        outcome = await repairCapture(abs);
      } catch (err) {
        this.#log.warn({ err, file: abs }, 'cannot check capture file, skipping it');
        continue;
      }
      if (outcome.kind === 'foreign') {
        this.#log.warn({ file: abs }, 'not a pcapng file of ours, leaving it alone');
        continue;
      }
      if (outcome.kind === 'empty') {
        this.#repaired++;
        this.#log.warn({ file: abs, bytes: outcome.size }, 'capture file holds no complete block, removing it');
        await unlink(abs).catch(() => undefined);
        continue;
      }
      if (outcome.kind === 'truncated') {
        this.#repaired++;
        this.#log.warn({ file: abs, removedBytes: outcome.removedBytes, size: outcome.size }, 'capture file had a torn tail, cut back to its last whole block');
      }
      const m = NAME_RE.exec(f.name)!;
      const st = await this.#private(abs, FILE_MODE);
      const [namespace, policy] = this.#owner(f.dir, m[1]!);
      this.#entries.set(f.rel, {
        path: f.rel, capture: f.dir || SINGLE, namespace, policy, start: parseStamp(m[2]!), seq: Number(m[3]),
        size: outcome.size, modified: st.mtimeMs, open: false, file: undefined,
      });
    }
  }

  /** Takes group and other permissions away from a file or directory of ours (older versions wrote 0644); returns its stat. */
  async #private(abs: string, mode: number): Promise<Stats> {
    const st = await stat(abs);
    if ((st.mode & 0o777) !== mode) {
      await chmod(abs, mode).then(
        () => this.#log.info({ path: abs, was: (st.mode & 0o777).toString(8), now: mode.toString(8) }, 'capture path made private'),
        (err: unknown) => this.#log.warn({ err, path: abs }, 'cannot make a capture path private'),
      );
    }
    return st;
  }

  #owner(dir: string, prefix: string): [string | null, string | null] {
    const m = DIR_RE.exec(dir);
    return m ? [m[1]!, m[2]!] : [null, dir === UNASSIGNED ? null : prefix === SINGLE ? null : prefix];
  }

  /** The capture packets of this capture key (`<namespace>_<policy>`, unassigned) go to: one series in the single layout. */
  #capture(capture: string, policy: Ref | null): Capture {
    const key = this.#layout === 'single' ? SINGLE : capture;
    let cap = this.#captures.get(key);
    if (cap) return cap;
    const dir = key === SINGLE ? '' : key;
    const own = key !== SINGLE && key !== UNASSIGNED && policy !== null;
    const prefix = key === SINGLE ? SINGLE : own ? policy.name : UNASSIGNED;
    let seq = 0;
    for (const e of this.#entries.values()) if (e.capture === key && e.seq > seq) seq = e.seq;
    cap = {
      key, dir, prefix, namespace: own ? policy.namespace : null, policy: own ? policy.name : null, file: undefined, entry: undefined, openedAt: 0,
      nextSeq: seq + 1, failed: undefined, ifaces: new FileInterfaces(), notes: new PendingNotes(),
    };
    this.#captures.set(key, cap);
    return cap;
  }

  /**
   * The directory and file name of a capture's next file, checked: names of
   * our own grammar only, short enough for the file system, inside the root.
   */
  #paths(cap: Capture, start: number, seq: number): { dirAbs: string; name: string; rel: string; abs: string } {
    const name = captureFileName(cap.prefix, start, seq);
    const ownDir = cap.dir === '' || cap.dir === UNASSIGNED || DIR_RE.test(cap.dir);
    const ownPrefix = cap.prefix === SINGLE || cap.prefix === UNASSIGNED || PREFIX_RE.test(cap.prefix);
    if (!ownDir || !ownPrefix) throw new CaptureNameError(`capture ${JSON.stringify(cap.key)} does not make a capture file name`);
    if (Buffer.byteLength(cap.dir) > NAME_MAX || Buffer.byteLength(name) > NAME_MAX) {
      throw new CaptureNameError(`capture ${JSON.stringify(cap.key)}: its directory or file name would be longer than ${NAME_MAX} bytes`);
    }
    const rel = cap.dir ? `${cap.dir}/${name}` : name;
    const abs = pathUnder(this.root, rel);
    return { dirAbs: cap.dir ? pathUnder(this.root, cap.dir) : resolve(this.root), name, rel, abs };
  }

  #open(cap: Capture): CaptureFile | undefined {
    const start = this.#clock();
    if (cap.failed && start < cap.failed.until) return undefined;
    try {
      for (;;) {
        const seq = cap.nextSeq++;
        const { dirAbs, rel, abs } = this.#paths(cap, start, seq);
        if (cap.dir) mkdirSync(dirAbs, { recursive: true, mode: DIR_MODE });
        let file: CaptureFile;
        try {
          file = CaptureFile.create(abs, {
            fs: this.#fs,
            ...(this.#batchSize === undefined ? {} : { batchSize: this.#batchSize }),
            onError: (err) => this.#writeFailed(err),
            onQueued: (d) => (this.#queued += d),
          });
        } catch (err) {
          if (errCode(err) === 'EEXIST') continue;
          throw err;
        }
        file.writer.sectionHeader(this.#section);
        const entry: Entry = {
          path: rel, capture: cap.key, namespace: cap.namespace, policy: cap.policy, start: Math.floor(start / 1000) * 1000, seq,
          size: 0, modified: start, open: true, file,
        };
        this.#entries.set(rel, entry);
        cap.file = file;
        cap.entry = entry;
        cap.openedAt = start;
        cap.failed = undefined;
        cap.ifaces = new FileInterfaces();
        this.#log.info({ file: abs }, 'capture file opened');
        return file;
      }
    } catch (err) {
      cap.nextSeq--; // that number was not used: the next try takes it
      const code = errCode(err) ?? (err instanceof CaptureNameError ? 'bad-name' : 'unknown');
      const wrapped = new Error('creating a capture file failed', { cause: err });
      if (code === 'ENOSPC' || code === 'EDQUOT') {
        this.#writeFailed(wrapped); // the file system is full: for every capture
        return undefined;
      }
      // this capture only: the others keep writing
      this.#captureErrors++;
      cap.failed = { until: start + CREATE_RETRY_MS, code };
      this.#log.error({ err: wrapped, capture: cap.key, code, retryMs: CREATE_RETRY_MS }, 'cannot create a capture file: packets of this capture are dropped and counted until it can');
      return undefined;
    }
  }

  packet(iface: Iface, tsHi: number, tsLo: number, data: Buffer, off: number, len: number, origLen: number, direction: number | undefined): void {
    if (this.#closed) return; // (ingest stops before the store closes)
    if (this.#full) {
      this.#droppedDiskFull++;
      return;
    }
    const cap = this.#capture(iface.capture, iface.policy);
    if (this.#queued > this.#maxQueued) {
      this.#droppedSlow++;
      cap.ifaces.osDropped(iface.uid);
      return;
    }
    const f = cap.file ?? this.#open(cap);
    if (!f) {
      if (this.#full) this.#droppedDiskFull++;
      else this.#droppedCreateFailed++;
      return;
    }
    const w = f.writer;
    let id = cap.ifaces.idOf(iface.uid);
    if (id === undefined) {
      id = w.addInterface({ name: iface.name, description: iface.description, snaplen: iface.snaplen });
      cap.ifaces.add(iface.uid, id, msToNs(this.#clock()));
    }
    w.packet(id, tsHi, tsLo, data, off, len, origLen, direction, cap.notes.take());
    cap.ifaces.delivered(iface.uid);
    if (w.bytes >= this.#rotateBytes) this.#rotate(cap);
  }

  /** Frames lost in transit: the capture's next packet says so, and its file's interface statistics count them. */
  lost(l: TransitLoss): void {
    if (this.#closed) return;
    const cap = this.#capture(l.capture, l.policy);
    cap.notes.add(describeLoss(l));
    if (cap.file) cap.ifaces.lost(l.iface?.uid, l.count);
  }

  #rotate(cap: Capture): void {
    const f = cap.file;
    const entry = cap.entry;
    if (!f || !entry) return;
    cap.ifaces.writeStatistics(f.writer, msToNs(this.#clock()));
    cap.file = undefined;
    cap.entry = undefined;
    const p: Promise<void> = f.close().then(async () => {
      entry.open = false;
      entry.file = undefined;
      entry.size = f.size;
      entry.modified = this.#clock();
      this.#writtenClosed += f.packetsWritten;
      this.#bytesClosed += f.size;
      this.#lostClosed += f.packetsLost;
      if (f.packetsWritten === 0) {
        // nothing but headers reached the disk (a failed write): no file to keep
        this.#entries.delete(entry.path);
        await unlink(f.path).catch(() => undefined);
      } else {
        this.#log.info({ file: f.path, bytes: f.size, packets: f.packetsWritten }, 'capture file closed');
      }
      this.#closing.delete(p);
      this.onFileClosed();
    });
    this.#closing.add(p);
  }

  #writeFailed(err: Error): void {
    if (this.#full) return;
    const code = errCode(err) ?? 'unknown';
    this.#full = { since: this.#clock(), code };
    this.#lastProbe = this.#clock();
    this.#log.error({ err, code }, 'writing capture files stopped: packets are dropped and counted until the disk has room');
    // cut every open file at its last whole block and close it: readable as it is
    for (const cap of this.#captures.values()) this.#rotate(cap);
  }

  /** Time passes: flush batches, rotate by age, look for disk space after a failure. */
  tick(): void {
    const now = this.#clock();
    for (const cap of this.#captures.values()) {
      const f = cap.file;
      const e = cap.entry;
      if (!f || !e) continue;
      if (this.#rotateMs > 0 && now - cap.openedAt >= this.#rotateMs) {
        this.#rotate(cap);
        continue;
      }
      f.flush();
      if (f.size !== e.size) {
        e.size = f.size;
        e.modified = now;
      }
    }
    if (this.#full && now - this.#lastProbe >= 1000) {
      this.#lastProbe = now;
      void this.#probe();
    }
    if (now - this.#lastFreeCheck >= FREE_CHECK_INTERVAL_MS) {
      this.#lastFreeCheck = now;
      void this.#fs.freeBytes(this.root).then((b) => (this.#diskFree = b), () => undefined);
    }
  }

  async #probe(): Promise<void> {
    const free = await this.#fs.freeBytes(this.root).catch(() => 0);
    this.#diskFree = free;
    if (!this.#full || free < this.#minFree || this.#closing.size > 0) return;
    this.#log.warn({ freeBytes: free, stoppedMs: this.#clock() - this.#full.since, dropped: this.#droppedDiskFull }, 'writing capture files resumes');
    this.#full = undefined;
  }

  /**
   * Deletes a closed file of the catalogue (retention's decision): gone from
   * listings at once, from the disk soon after, its directory with its last file.
   */
  delete(path: string): void {
    const e = this.#entries.get(path);
    if (!e || e.open) return;
    this.#entries.delete(path);
    const abs = join(this.root, path);
    void unlink(abs).then(
      () => this.#dropDirIfEmpty(path),
      (err: unknown) => {
        if (errCode(err) !== 'ENOENT') this.#log.warn({ err, file: abs }, 'cannot delete capture file');
      },
    );
  }

  /** Removes the directory of a deleted file when no file of ours is left in it (synchronously: #open recreates it synchronously too). */
  #dropDirIfEmpty(rel: string): void {
    const slash = rel.indexOf('/');
    if (slash < 0) return;
    const dir = rel.slice(0, slash + 1);
    for (const e of this.#entries.values()) if (e.path.startsWith(dir)) return;
    try {
      rmdirSync(join(this.root, dir));
    } catch {
      // not empty (something else is in it) or gone
    }
  }

  /** The capture files, oldest first within each capture. */
  list(): CaptureEntry[] {
    return [...this.#entries.values()]
      .map(({ file, ...e }) => ({ ...e, size: file ? file.size : e.size }))
      .sort((a, b) => (a.capture < b.capture ? -1 : a.capture > b.capture ? 1 : a.start - b.start || a.seq - b.seq));
  }

  /**
   * Whose file an API path names, from the path alone (whether or not it
   * exists): the policy of its `<namespace>_<policy>` directory, or nulls
   * (unassigned packets, the single layout, anything else). lookup() serves
   * only catalogued files, whose owner is derived the same way.
   */
  ownerOf(path: string): { namespace: string | null; policy: string | null } {
    const i = path.lastIndexOf('/');
    const m = DIR_RE.exec(i < 0 ? '' : path.slice(0, i));
    return m ? { namespace: m[1]!, policy: m[2]! } : { namespace: null, policy: null };
  }

  /** The file behind an API path, only if it is one of ours: no path is ever joined from user input. */
  lookup(path: string): { abs: string; size: number; open: boolean } | undefined {
    const e = this.#entries.get(path);
    if (!e) return undefined;
    return { abs: join(this.root, e.path), size: e.file ? e.file.size : e.size, open: e.open };
  }

  stats(): StoreStats {
    let written = this.#writtenClosed;
    let bytes = this.#bytesClosed;
    let lost = this.#lostClosed;
    let usage = 0;
    let open = 0;
    for (const e of this.#entries.values()) {
      if (e.file) {
        open++;
        written += e.file.packetsWritten;
        bytes += e.file.size;
        lost += e.file.packetsLost;
        usage += e.file.size;
      } else usage += e.size;
    }
    return {
      written, bytesWritten: bytes, files: this.#entries.size, openFiles: open, diskUsage: usage, diskFree: this.#diskFree,
      diskFull: this.#full !== undefined, droppedDiskFull: this.#droppedDiskFull, droppedSlow: this.#droppedSlow, lostInWrite: lost,
      droppedCreateFailed: this.#droppedCreateFailed, captureErrors: this.#captureErrors, repaired: this.#repaired,
    };
  }

  /**
   * Resolves when what was handed to the disk so far is written (or has
   * failed, and the store knows it) and every file being closed is closed:
   * flushed, fsynced, in the catalogue.
   */
  async idle(): Promise<void> {
    await Promise.all([...this.#captures.values()].map((c) => c.file?.settled()));
    while (this.#closing.size > 0) await Promise.all([...this.#closing]);
  }

  /** Closes every open file (flushed, fsynced). Later packets are dropped and counted. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const cap of this.#captures.values()) this.#rotate(cap);
    await this.idle();
  }
}
