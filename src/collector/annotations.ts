/**
 * What a capture says about itself besides its packets: comments that tell a
 * reader where frames are missing (a sequence gap, a slow live reader), and
 * each interface's statistics block (ISB) when a file closes: when capture on
 * it started and ended, what arrived, what was written, what was lost.
 */
import type { PcapngWriter } from './pcapng.ts';

/** Notes waiting for the next packet's comment; at most MAX_NOTES kept word for word, the rest counted. */
export class PendingNotes {
  static readonly MAX_NOTES = 8;
  readonly #notes: string[] = [];
  #more = 0;

  get pending(): boolean {
    return this.#notes.length > 0;
  }

  add(note: string): void {
    if (this.#notes.length < PendingNotes.MAX_NOTES) this.#notes.push(note);
    else this.#more++;
  }

  /** The comment for the next packet (and forget it), or undefined when nothing waits. */
  take(): string | undefined {
    if (this.#notes.length === 0) return undefined;
    const more = this.#more ? `; and ${this.#more} more` : '';
    const text = `podtap: ${this.#notes.join('; ')}${more}`;
    this.#notes.length = 0;
    this.#more = 0;
    return text;
  }
}

interface Counts {
  /** the interface's id in this file */
  id: number;
  startNs: bigint;
  delivered: number;
  osDropped: number;
  ifDropped: number;
}

/** The interfaces of one open file: their ids, and the counts their ISBs report when it closes. */
export class FileInterfaces {
  readonly #byUid = new Map<number, Counts>();
  /** frames of this file's capture lost in transit that no single interface can claim */
  #unattributed = 0;

  /** The interface's id in this file, if its block was written. */
  idOf(uid: number): number | undefined {
    return this.#byUid.get(uid)?.id;
  }

  /** Its block was written as `id`, capture on it starting at `startNs` (ns since the epoch). */
  add(uid: number, id: number, startNs: bigint): void {
    this.#byUid.set(uid, { id, startNs, delivered: 0, osDropped: 0, ifDropped: 0 });
  }

  delivered(uid: number): void {
    const c = this.#byUid.get(uid);
    if (c) c.delivered++;
  }

  /** A packet of the interface that the collector could not write (counted only once it is in the file). */
  osDropped(uid: number): void {
    const c = this.#byUid.get(uid);
    if (c) c.osDropped++;
  }

  /** `n` frames lost in transit, on interface `uid` when known and in this file. */
  lost(uid: number | undefined, n: number): void {
    const c = uid === undefined ? undefined : this.#byUid.get(uid);
    if (c) c.ifDropped += n;
    else this.#unattributed += n;
  }

  /**
   * An ISB for each interface, stamped and ending at `endNs`: isb_starttime,
   * isb_endtime, isb_ifrecv (written + dropped here), isb_usrdeliv
   * (written), isb_osdrop (dropped here), and isb_ifdrop (lost in transit)
   * when it could be told for that interface; a comment when some of the
   * capture's losses could not.
   */
  writeStatistics(w: PcapngWriter, endNs: bigint): void {
    const comment = this.#unattributed
      ? `podtap: ${this.#unattributed} frame(s) of this capture never arrived while this file was open and are not in any interface's isb_ifdrop: their data plane taps several interfaces (see the packet comments)`
      : undefined;
    for (const c of this.#byUid.values()) {
      w.interfaceStatistics(c.id, endNs, {
        startNs: c.startNs, endNs, received: c.delivered + c.osDropped, delivered: c.delivered, osDropped: c.osDropped,
        ...(c.ifDropped ? { ifDropped: c.ifDropped } : {}), ...(comment ? { comment } : {}),
      });
    }
  }
}

/** Wall-clock ms as pcapng ns. */
export function msToNs(ms: number): bigint {
  return BigInt(Math.round(ms)) * 1_000_000n;
}
