/**
 * One pcapng file being written. Batches of whole blocks are appended in
 * order with positional writes; `size` only ever covers whole blocks, so a
 * reader (a download of the open file) and a crash both see a readable file.
 * A write that fails (ENOSPC, EDQUOT, EIO) is cut back to the last whole
 * block, and every later batch of the file is dropped and counted: the file
 * stays readable, and the store opens a new one when writing can resume.
 */
import { close, fsync, ftruncate, openSync, statfs, write } from 'node:fs';
import { promisify } from 'node:util';
import { PcapngWriter } from './pcapng.ts';

/** The file operations a capture needs; tests substitute failures (a full disk) here. */
export interface CaptureFs {
  /** Create a new file (never overwrite: EEXIST), synchronously: rotation must not wait. */
  create(path: string): number;
  write(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number>;
  fsync(fd: number): Promise<void>;
  ftruncate(fd: number, len: number): Promise<void>;
  close(fd: number): Promise<void>;
  /** Bytes available to us on the file system of `path`. */
  freeBytes(path: string): Promise<number>;
}

const pwrite = (fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> =>
  new Promise((resolve, reject) => write(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
const pfsync = promisify(fsync);
const pftruncate = promisify(ftruncate);
const pclose = promisify(close);
const pstatfs = promisify(statfs);

export const nodeCaptureFs: CaptureFs = {
  // 0600: a capture holds other pods' traffic
  create: (path) => openSync(path, 'wx', 0o600),
  write: (fd, buf, off, len, pos) => pwrite(fd, buf, off, len, pos),
  fsync: (fd) => pfsync(fd),
  ftruncate: (fd, len) => pftruncate(fd, len),
  close: (fd) => pclose(fd),
  freeBytes: async (path) => {
    const s = await pstatfs(path);
    return s.bavail * s.bsize;
  },
};

export interface CaptureFileOptions {
  fs?: CaptureFs;
  batchSize?: number;
  /** told once, when a write fails */
  onError?: (err: Error, file: CaptureFile) => void;
  /** told of every change of the bytes waiting for the disk */
  onQueued?: (delta: number) => void;
}

export class CaptureFile {
  readonly path: string;
  readonly writer: PcapngWriter;
  readonly #fs: CaptureFs;
  readonly #fd: number;
  readonly #onError: ((err: Error, file: CaptureFile) => void) | undefined;
  readonly #onQueued: ((delta: number) => void) | undefined;
  #chain: Promise<void> = Promise.resolve();
  #queued = 0;
  /** bytes of whole blocks on disk */
  #size = 0;
  #packetsWritten = 0;
  #packetsLost = 0;
  #error: Error | undefined;
  #closed: Promise<void> | undefined;

  private constructor(path: string, fd: number, opts: CaptureFileOptions) {
    this.path = path;
    this.#fd = fd;
    this.#fs = opts.fs ?? nodeCaptureFs;
    this.#onError = opts.onError;
    this.#onQueued = opts.onQueued;
    this.writer = new PcapngWriter((chunk, packets) => this.#enqueue(chunk, packets), opts.batchSize === undefined ? {} : { batchSize: opts.batchSize });
  }

  /** Creates the file; throws (EEXIST, ENOSPC, …) when it cannot. */
  static create(path: string, opts: CaptureFileOptions = {}): CaptureFile {
    const fd = (opts.fs ?? nodeCaptureFs).create(path);
    return new CaptureFile(path, fd, opts);
  }

  /** Bytes of whole blocks on disk (what a reader may read). */
  get size(): number {
    return this.#size;
  }

  /** Bytes handed over and not yet on disk. */
  get queued(): number {
    return this.#queued;
  }

  /** Packets on disk. */
  get packetsWritten(): number {
    return this.#packetsWritten;
  }

  /** Packets of batches that could not be written. */
  get packetsLost(): number {
    return this.#packetsLost;
  }

  get error(): Error | undefined {
    return this.#error;
  }

  #enqueue(chunk: Buffer, packets: number): void {
    this.#queued += chunk.length;
    this.#onQueued?.(chunk.length);
    this.#chain = this.#chain.then(async () => {
      try {
        if (this.#error) {
          this.#packetsLost += packets;
          return;
        }
        let done = 0;
        try {
          while (done < chunk.length) done += await this.#fs.write(this.#fd, chunk, done, chunk.length - done, this.#size + done);
        } catch (err) {
          this.#packetsLost += packets;
          this.#error = new Error('writing the capture file failed', { cause: err });
          // a short write leaves part of a block: cut back to the last whole one
          if (done > 0) await this.#fs.ftruncate(this.#fd, this.#size).catch(() => undefined);
          this.#onError?.(this.#error, this);
          return;
        }
        this.#size += done;
        this.#packetsWritten += packets;
      } finally {
        this.#queued -= chunk.length;
        this.#onQueued?.(-chunk.length);
      }
    });
  }

  /** Hands the buffered blocks to the disk (they are written in the background). */
  flush(): void {
    this.writer.flush();
  }

  /** Resolves when every block handed to the disk so far is written (or has failed). */
  settled(): Promise<void> {
    return this.#chain;
  }

  /** Writes what is buffered, waits for the disk, fsyncs and closes. Idempotent; never throws. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.writer.flush();
      await this.#chain;
      if (!this.#error) await this.#fs.fsync(this.#fd).catch(() => undefined);
      await this.#fs.close(this.#fd).catch(() => undefined);
    })();
    return this.#closed;
  }
}
