/**
 * Ingest, Admission and Router in one object, writing into one pcapng writer:
 * datagrams in, packets out, with no sockets, threads or files of its own.
 * For tests that turn a list of datagrams into a capture (the collector
 * itself wires these stages in src/collector/collector.ts).
 */
import { Admission, type AdmissionOptions } from '../../src/collector/admission.ts';
import { DEFAULT_MAX_SKEW_MS, Ingest, type IngestLimits, type IngestOptions, type IngestStats } from '../../src/collector/ingest.ts';
import { PcapngWriter } from '../../src/collector/pcapng.ts';
import { PendingNotes } from '../../src/collector/annotations.ts';
import { Router, describeLoss, type Iface, type PacketOutput, type RouterLimits, type RouterStats, type TransitLoss } from '../../src/collector/router.ts';
import { MALFORMED_REASONS, type MalformedReason } from '../../src/wire/format.ts';

/** Every interface into one writer, each one's IDB before its first packet; losses in the next packet's comment. */
export class WriterOutput implements PacketOutput {
  readonly writer: PcapngWriter;
  readonly #notes = new PendingNotes();
  constructor(writer: PcapngWriter) {
    this.writer = writer;
  }

  packet(iface: Iface, tsHi: number, tsLo: number, data: Buffer, off: number, len: number, origLen: number, direction: number | undefined): void {
    const w = this.writer;
    let id = w.interfaceId(iface.uid);
    if (id === undefined) id = w.addInterface({ name: iface.name, description: iface.description, snaplen: iface.snaplen }, iface.uid);
    w.packet(id, tsHi, tsLo, data, off, len, origLen, direction, this.#notes.take());
  }

  lost(l: TransitLoss): void {
    this.#notes.add(describeLoss(l));
  }
}

export interface PipelineOptions extends Omit<IngestOptions, 'limits'> {
  limits?: Partial<IngestLimits & RouterLimits>;
  admission?: Pick<AdmissionOptions, 'allow' | 'grantTtlMs' | 'limits' | 'clock'>;
}

export type PipelineStats = IngestStats & Omit<RouterStats, 'refused'> & { malformed: number; bytesWritten: number; grants: number };

export class Pipeline {
  readonly ingest: Ingest;
  readonly admission: Admission;
  readonly router: Router;
  readonly #writer: PcapngWriter | undefined;

  constructor(out: PcapngWriter | PacketOutput, opts: PipelineOptions) {
    const output = out instanceof PcapngWriter ? new WriterOutput(out) : out;
    this.#writer = output instanceof WriterOutput ? output.writer : undefined;
    this.router = new Router([output], { limits: opts.limits ?? {} });
    this.admission = new Admission(this.router, { ...opts.admission, authenticated: !!opts.secret, maxSkewMs: opts.maxSkewMs ?? DEFAULT_MAX_SKEW_MS });
    this.ingest = new Ingest(this.admission, opts);
    this.admission.onGrant = (address, instance, ttlMs) => this.ingest.grant(address, instance, ttlMs);
    this.admission.onRevoke = (address, instance) => this.ingest.revoke(address, instance);
    this.router.onRefuse = (reason: MalformedReason) => this.ingest.refuse(reason);
  }

  /** Process one UDP payload from `address`. Never throws on bad input. */
  handle(buf: Buffer, address: string): void {
    this.ingest.handle(buf, address);
  }

  /** Advance time (performance.now() ms). */
  tick(nowMs = performance.now()): void {
    this.ingest.tick(nowMs);
    this.router.tick(nowMs);
  }

  /** End of input: missing sequence numbers become lost, pending frames incomplete. */
  finish(): void {
    this.ingest.finish();
  }

  stats(): PipelineStats {
    const i = this.ingest.stats();
    const a = this.admission.stats();
    const { refused: _, ...r } = this.router.stats();
    let malformed = 0;
    for (const reason of MALFORMED_REASONS) {
      i.malformedByReason[reason] += a.refusedByReason[reason];
      malformed += i.malformedByReason[reason];
    }
    return { ...i, ...r, announcements: a.admitted, grants: a.grants, malformed, bytesWritten: this.#writer?.bytes ?? 0 };
  }
}
