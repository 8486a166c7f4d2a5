/**
 * Retention: which closed capture files are deleted, and when. Closed files
 * older than the age limit go first, then the oldest closed files until all
 * captures (open ones included) fit the size limit; open files are never
 * deleted. It runs when the collector starts, after every rotation, and every
 * 10 s. The store owns the files and their catalogue; retention only decides
 * and asks the store to delete.
 */
import { join } from 'node:path';
import type { Logger } from '../util/log.ts';
import type { CaptureEntry, CaptureStore } from './store.ts';

export interface RetentionOptions {
  /** keep at most this many bytes of captures (default 0 = no limit) */
  maxBytes?: number;
  /** delete closed files older than this, by their last write (default 0 = keep) */
  maxAgeMs?: number;
}

export interface RetentionStats {
  deletedBySize: number;
  deletedByAge: number;
}

export type RetentionReason = 'age' | 'size';

/** How often retention looks, besides after each rotation. */
export const RETENTION_INTERVAL_MS = 10_000;

/** The files to delete and why, oldest first. Pure: `files` as the store lists them. */
export function retentionVictims(files: readonly CaptureEntry[], now: number, opts: RetentionOptions): Map<CaptureEntry, RetentionReason> {
  const maxBytes = opts.maxBytes ?? 0;
  const maxAgeMs = opts.maxAgeMs ?? 0;
  const closed = files.filter((e) => !e.open).sort((a, b) => a.modified - b.modified || a.start - b.start || a.seq - b.seq);
  const doomed = new Map<CaptureEntry, RetentionReason>();
  if (maxAgeMs > 0) for (const e of closed) if (now - e.modified > maxAgeMs) doomed.set(e, 'age');
  if (maxBytes > 0) {
    let total = 0;
    for (const e of files) if (!doomed.has(e)) total += e.size;
    for (const e of closed) {
      if (total <= maxBytes) break;
      if (doomed.has(e)) continue;
      doomed.set(e, 'size');
      total -= e.size;
    }
  }
  return doomed;
}

export class Retention {
  readonly #store: CaptureStore;
  readonly #opts: RetentionOptions;
  readonly #log: Logger;
  readonly #clock: () => number;
  #last = 0;
  #deletedBySize = 0;
  #deletedByAge = 0;

  constructor(store: CaptureStore, opts: RetentionOptions & { logger: Logger; clock?: () => number }) {
    this.#store = store;
    this.#opts = { maxBytes: opts.maxBytes ?? 0, maxAgeMs: opts.maxAgeMs ?? 0 };
    this.#log = opts.logger;
    this.#clock = opts.clock ?? Date.now;
  }

  /** Whether any limit is set. */
  get enabled(): boolean {
    return (this.#opts.maxBytes ?? 0) > 0 || (this.#opts.maxAgeMs ?? 0) > 0;
  }

  /** Deletes what the limits say must go, now. */
  run(): void {
    const now = this.#clock();
    this.#last = now;
    if (!this.enabled) return;
    for (const [e, why] of retentionVictims(this.#store.list(), now, this.#opts)) {
      if (why === 'age') this.#deletedByAge++;
      else this.#deletedBySize++;
      this.#log.info({ file: join(this.#store.root, e.path), bytes: e.size, reason: why }, 'capture file deleted by retention');
      this.#store.delete(e.path);
    }
  }

  /** Time passes: runs every RETENTION_INTERVAL_MS. */
  tick(): void {
    if (this.#clock() - this.#last >= RETENTION_INTERVAL_MS) this.run();
  }

  stats(): RetentionStats {
    return { deletedBySize: this.#deletedBySize, deletedByAge: this.#deletedByAge };
  }
}
