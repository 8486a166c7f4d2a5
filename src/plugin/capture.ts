/**
 * `kubectl podtap capture`: a short-lived SniffPolicy for one pod (or a label
 * selector), its packets streamed live from the collector into a file,
 * stdout or Wireshark, and the policy deleted on the way out.
 *
 * Order matters: the live stream is opened first (filtered by the policy's
 * name, chosen up front), then the policy is created, so the first packet
 * cannot slip by before anyone listens. A single pod is selected exactly by
 * its name (spec.podNames): the pod itself is never touched. The policy
 * carries limits.duration, so a capture whose command was killed (kill -9,
 * a lost laptop) still ends.
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { execa } from 'execa';
import { SniffPolicySchema, describeIssues, type LabelSelector, type PolicyType, type SniffPolicy } from '../api/index.ts';
import { LabelSelectorSyntaxError, parseLabelSelector } from '../k8s/labels.ts';
import { formatSize } from '../util/units.ts';
import { ExitCode, UserError } from '../util/errors.ts';
import { connectCollector, get, type CollectorFlags } from './collector-api.ts';
import { parseFilters } from './filter.ts';
import { Kube } from './kube.ts';
import { parseTarget, type WorkloadKind } from './target.ts';

export interface CaptureOptions {
  namespace: string;
  pod?: string | undefined;
  selector?: string | undefined;
  filters: string[];
  policyTypes: PolicyType[];
  snapLength: number;
  /** the policy's limits.duration (a capture never outlives it) */
  duration: string;
  /** stop the command after this many ms (0 = until Ctrl-C) */
  stopAfterMs: number;
  maxPackets: number;
  write?: string | undefined;
  stdout: boolean;
  wireshark: boolean;
  collector: CollectorFlags;
}

export interface PluginIO {
  stdout: Writable;
  stderr: Writable;
  /** aborted on Ctrl-C (the bin wires SIGINT and SIGTERM to it) */
  signal: AbortSignal;
  env: NodeJS.ProcessEnv;
  stdoutIsTTY: boolean;
  /** a terminal: the status line is rewritten in place every second */
  stderrIsTTY?: boolean;
}

export const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'kubectl-podtap' };

/** Why a live stream stopped when the collector's side stopped it: a capture cut short (exit 7). */
const STREAM_ENDED = 'the collector ended the stream';
const STREAM_BROKE = 'the collector connection broke';

/** The SniffPolicy a capture creates (validated: a bad flag fails before anything is created). */
export function capturePolicy(o: {
  name: string;
  namespace: string;
  selector: LabelSelector;
  /** one pod, by name (spec.podNames) */
  pod?: string | undefined;
  filters: string[];
  policyTypes: PolicyType[];
  snapLength: number;
  duration: string;
  maxPackets: number;
  collector: { namespace: string; service: string };
  target: string;
}): SniffPolicy {
  const filter = parseFilters(o.filters);
  const policy = {
    apiVersion: 'podtap.io/v1alpha1',
    kind: 'SniffPolicy',
    metadata: {
      name: o.name,
      namespace: o.namespace,
      labels: { ...MANAGED_BY },
      annotations: { 'podtap.io/captured-by': `${safeUser()}@${hostname()} (kubectl podtap capture ${o.target})` },
    },
    spec: {
      podSelector: o.selector,
      ...(o.pod ? { podNames: [o.pod] } : {}),
      policyTypes: o.policyTypes,
      ...(filter ? { filter } : {}),
      snapLength: o.snapLength,
      collector: { service: { name: o.collector.service, namespace: o.collector.namespace } },
      limits: { duration: o.duration, ...(o.maxPackets > 0 ? { maxPackets: o.maxPackets } : {}) },
    },
  };
  const r = SniffPolicySchema.safeParse(policy);
  if (!r.success) throw new UserError(`the capture's policy would be invalid: ${describeIssues(r.error).join('; ')}`, { exitCode: ExitCode.usage });
  return r.data;
}

/** -l as kubectl takes it; a bad selector is a usage error saying what is wrong. */
export function selectorFlag(s: string): LabelSelector {
  try {
    return parseLabelSelector(s);
  } catch (err) {
    if (!(err instanceof LabelSelectorSyntaxError)) throw err;
    throw new UserError(`-l: ${err.message}`, { exitCode: ExitCode.usage, hint: 'e.g. -l app=web,tier!=db or -l "env in (prod,staging),!canary"', cause: err });
  }
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}

/**
 * Counts the enhanced packet blocks going by in a pcapng stream (for the
 * status line), and reads the drop notes the collector's live stream puts in
 * a packet's comment when this reader fell behind ("… (N in all)").
 */
export class PacketCounter {
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** bytes needed before the head block can be read */
  #need = 8;
  #lost = false;
  packets = 0;
  bytes = 0;
  /** packets the collector dropped for this stream because it did not keep up */
  streamDropped = 0;

  push(chunk: Buffer): void {
    this.bytes += chunk.length;
    if (this.#lost) return; // not our pcapng: stop counting, keep passing bytes
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    // join the pieces only once the block at the head is whole (no quadratic copying of a 64 KB block)
    if (this.#pendingBytes < this.#need) return;
    let buf = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending);
    let p = 0;
    while (buf.length - p >= 8) {
      const len = buf.readUInt32LE(p + 4);
      if (len < 12 || len % 4 !== 0) {
        this.#lost = true;
        break;
      }
      if (buf.length - p < len) break;
      if (buf.readUInt32LE(p) === 6) this.#packet(buf.subarray(p, p + len));
      p += len;
    }
    buf = buf.subarray(p);
    this.#pending = this.#lost || buf.length === 0 ? [] : [Buffer.from(buf)];
    this.#pendingBytes = this.#pending[0]?.length ?? 0;
    this.#need = buf.length >= 8 ? buf.readUInt32LE(4) : 8;
  }

  #packet(block: Buffer): void {
    this.packets++;
    const capLen = block.readUInt32LE(20);
    // options follow the padded packet data; opt_comment (1) may carry the drop note
    for (let o = 28 + ((capLen + 3) & ~3); o + 4 <= block.length - 4; ) {
      const code = block.readUInt16LE(o);
      const n = block.readUInt16LE(o + 2);
      if (code === 0) break;
      if (code === 1) {
        const m = /\((\d+) in all\)/.exec(block.toString('utf8', o + 4, o + 4 + n));
        if (m) this.streamDropped = Math.max(this.streamDropped, Number(m[1]));
      }
      o += 4 + ((n + 3) & ~3);
    }
  }
}

/** The status line: totals, rates since the last line, the policy's lost count, the stream's drops. */
export function statusLine(now: { packets: number; bytes: number; streamDropped: number }, before: { packets: number; bytes: number }, seconds: number, lost: number | undefined): string {
  const rate = (n: number): string => (seconds > 0 ? `${Math.round(n / seconds)}` : '0');
  return [
    `${now.packets} packets (${rate(now.packets - before.packets)}/s)`,
    `${formatSize(now.bytes)} (${formatSize(Math.round(seconds > 0 ? (now.bytes - before.bytes) / seconds : 0))}/s)`,
    `lost ${lost ?? '?'}`,
    `stream dropped ${now.streamDropped}`,
  ].join(', ');
}

interface Output {
  stream: Writable;
  /** resolves when the reader is gone (Wireshark closed, stdout's pipe closed) */
  gone: Promise<string>;
  describe: string;
  finish(): Promise<void>;
}

async function openOutput(o: CaptureOptions, io: PluginIO): Promise<Output> {
  if (o.wireshark) {
    // a named pipe: Wireshark reads a FIFO given with -i as it reads stdin
    const dir = await mkdtemp(join(tmpdir(), 'kubectl-podtap-'));
    const fifo = join(dir, 'capture.pcapng');
    await execa('mkfifo', ['-m', '600', fifo]);
    const viewer = io.env.PODTAP_WIRESHARK ?? 'wireshark';
    const child = spawn(viewer, ['-k', '-i', fifo], { stdio: ['ignore', 'ignore', 'inherit'] });
    const failed = new Promise<never>((_, reject) =>
      child.once('error', (err) =>
        reject(new UserError(`cannot start ${viewer}: ${err.message}`, { exitCode: ExitCode.missingTool, hint: 'install Wireshark, or use -w FILE / -o - | wireshark -k -i -' })),
      ),
    );
    const stream = createWriteStream(fifo);
    await Promise.race([once(stream, 'open'), failed]);
    const gone = new Promise<string>((resolve) => child.once('exit', () => resolve(`${viewer} closed`)));
    stream.on('error', () => undefined); // (EPIPE once Wireshark is gone: `gone` says so)
    return {
      stream, gone, describe: viewer,
      finish: async () => {
        stream.end();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  if (o.write) {
    const stream = createWriteStream(o.write);
    await new Promise<void>((resolve, reject) => {
      stream.once('open', () => resolve());
      stream.once('error', (err) => reject(new UserError(`-w: cannot write ${o.write}: ${err.message}`, { exitCode: ExitCode.badInput })));
    });
    return { stream, gone: new Promise(() => undefined), describe: o.write, finish: () => new Promise((resolve) => stream.end(resolve)) };
  }
  const stream = io.stdout;
  const gone = new Promise<string>((resolve) => stream.once('error', () => resolve('standard output closed')));
  return { stream, gone, describe: 'standard output', finish: async () => undefined };
}

function conditionLine(p: SniffPolicy): string | undefined {
  const c = p.status?.conditions ?? [];
  const pick = (t: string) => c.find((x) => x.type === t);
  const ready = pick('Ready');
  const degraded = pick('Degraded');
  const completed = pick('Completed');
  if (completed?.status === 'True') return `completed: ${completed.message ?? completed.reason ?? ''}`.trim();
  if (degraded?.status === 'True') return `degraded: ${degraded.message ?? degraded.reason ?? ''}`.trim();
  if (ready) return `${ready.status === 'True' ? 'ready' : 'not ready'}${ready.message ? `: ${ready.message}` : ''}${p.status?.nodeSummary ? ` (nodes ${p.status.nodeSummary})` : ''}`;
  return undefined;
}

export async function capture(kube: Kube, o: CaptureOptions, io: PluginIO): Promise<number> {
  const say = (line: string): void => void io.stderr.write(`kubectl podtap: ${line}\n`);
  if ([o.write !== undefined, o.stdout, o.wireshark].filter(Boolean).length > 1) throw new UserError('choose one of -w FILE, -o - and --wireshark', { exitCode: ExitCode.usage });
  if (!o.write && !o.stdout && !o.wireshark) {
    if (io.stdoutIsTTY) throw new UserError('where to? -w FILE, -o - (a pipe) or --wireshark', { exitCode: ExitCode.usage, hint: 'e.g. kubectl podtap capture -n shop web-1 --wireshark' });
    o.stdout = true;
  }
  if (!o.pod === !o.selector) throw new UserError('name one pod (or deploy/, sts/, ds/ NAME), or a label selector with -l', { exitCode: ExitCode.usage });
  const t = o.pod ? parseTarget(o.pod) : undefined;
  /** one pod, selected by name (spec.podNames); a workload's pods go by its selector */
  const podName = t?.kind === 'Pod' ? t.name : undefined;

  const id = randomBytes(4).toString('hex').slice(0, 6);
  const name = `podtap-capture-${id}`;
  const ns = o.namespace;
  const target = o.pod ? `${ns}/${o.pod}` : `-l ${o.selector} in ${ns}`;

  // validate everything before touching the cluster
  capturePolicy({ ...o, name, selector: { matchLabels: { probe: 'x' } }, pod: podName, collector: o.collector, target });

  let selector: LabelSelector = {};
  if (podName) {
    const pod = await kube.pod(ns, podName);
    if (pod.status?.phase && pod.status.phase !== 'Running') say(`pod ${ns}/${podName} is ${pod.status.phase}: packets flow once it runs`);
  } else if (t) {
    selector = await kube.workloadSelector(ns, t.kind as WorkloadKind, t.name);
  } else {
    selector = selectorFlag(o.selector!);
  }

  const cleanups: (() => Promise<void>)[] = [];
  const cleanup = async (): Promise<void> => {
    for (const f of cleanups.reverse()) {
      try {
        await f();
      } catch (err) {
        say(`cleaning up: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  };

  let counter: PacketCounter | undefined;
  let output: Output | undefined;
  let reason = 'stopped';
  try {
    const policy = capturePolicy({ ...o, name, selector, pod: podName, collector: o.collector, target });
    const ep = await connectCollector(kube, o.collector, io.env);
    cleanups.push(() => ep.close());
    const q = new URLSearchParams({ namespace: ns, policy: name });
    const streamAbort = new AbortController();
    const res = await get(ep, `/stream?${q}`, streamAbort.signal);
    cleanups.push(async () => {
      streamAbort.abort();
      res.destroy();
    });
    output = await openOutput(o, io);
    const out = output;
    await kube.createPolicy(policy);
    cleanups.push(async () => {
      const deleted = await kube.deletePolicy(ns, name);
      say(deleted ? `deleted SniffPolicy ${ns}/${name}` : `SniffPolicy ${ns}/${name} was already gone`);
    });
    say(`capturing ${target} with SniffPolicy ${ns}/${name} via ${ep.via} into ${out.describe}; Ctrl-C stops`);

    counter = new PacketCounter();
    const c = counter;
    res.on('data', (chunk: Buffer) => {
      c.push(chunk);
      if (!out.stream.write(chunk)) {
        res.pause();
        out.stream.once('drain', () => res.resume());
      }
    });
    const ended = new Promise<string>((resolve) => {
      res.once('end', () => resolve(STREAM_ENDED));
      res.once('error', () => resolve(STREAM_BROKE));
      res.once('close', () => resolve(STREAM_BROKE));
    });
    const aborted = new Promise<string>((resolve) => {
      if (io.signal.aborted) resolve('interrupted');
      io.signal.addEventListener('abort', () => resolve('interrupted'), { once: true });
    });
    let timer: NodeJS.Timeout | undefined;
    const timeUp = o.stopAfterMs > 0 ? new Promise<string>((resolve) => (timer = setTimeout(() => resolve('time is up'), o.stopAfterMs))) : new Promise<string>(() => undefined);
    // the policy's conditions, as they change
    let last: string | undefined;
    let lost: number | undefined;
    // the status line: rewritten in place every second on a terminal, else a line every 10 s
    const live = io.stderrIsTTY === true;
    let shown = false;
    const clearLine = (): void => {
      if (shown) io.stderr.write('\r\x1b[K');
      shown = false;
    };
    const tell = (line: string): void => {
      clearLine();
      say(line);
    };
    const watch = setInterval(() => {
      void kube.getPolicy(ns, name).then(
        (p) => {
          const line = p && conditionLine(p);
          if (line && line !== last) tell(`SniffPolicy ${name}: ${line}`);
          last = line ?? last;
          lost = p?.status?.lost ?? lost;
        },
        () => undefined,
      );
    }, 2000);
    let before = { packets: 0, bytes: 0, at: performance.now() };
    const progress = live || o.write || o.wireshark
      ? setInterval(() => {
        const at = performance.now();
        const line = statusLine(c, before, (at - before.at) / 1000, lost);
        before = { packets: c.packets, bytes: c.bytes, at };
        if (live) {
          io.stderr.write(`\r\x1b[Kkubectl podtap: ${line}`);
          shown = true;
        } else say(line);
      }, live ? 1000 : 10_000)
      : undefined;
    reason = await Promise.race([aborted, ended, timeUp, out.gone]);
    clearTimeout(timer);
    clearInterval(watch);
    if (progress) clearInterval(progress);
    clearLine();
  } finally {
    await cleanup();
    await output?.finish();
  }
  if (counter) {
    say(`${reason}: ${counter.packets} packets, ${counter.bytes} bytes${output ? ` into ${output.describe}` : ''}${counter.streamDropped ? `; the collector dropped ${counter.streamDropped} for this stream (it did not keep up)` : ''}`);
  }
  // The stream stopping before the user (Ctrl-C, --for, the reader gone) is
  // a capture cut short: a script must not take it for the whole of what it
  // asked for (the packets so far are written all the same).
  if (reason === STREAM_ENDED || reason === STREAM_BROKE) {
    say('the capture stopped before it was asked to: the collector restarted, or its port-forward or connection was cut');
    return ExitCode.unreachable;
  }
  return ExitCode.ok;
}
