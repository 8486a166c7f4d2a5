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
import { SniffPolicySchema, describeIssues, type Direction, type LabelSelector, type SniffPolicy } from '../api/index.ts';
import { LabelSelectorSyntaxError, parseLabelSelector } from '../k8s/labels.ts';
import { ExitCode, UserError } from '../util/errors.ts';
import { connectCollector, get, type CollectorFlags } from './collector-api.ts';
import { parseFilters } from './filter.ts';
import { Kube } from './kube.ts';

export interface CaptureOptions {
  namespace: string;
  pod?: string | undefined;
  selector?: string | undefined;
  filters: string[];
  direction: Direction;
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
}

export const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'kubectl-podtap' };

/** The SniffPolicy a capture creates (validated: a bad flag fails before anything is created). */
export function capturePolicy(o: {
  name: string;
  namespace: string;
  selector: LabelSelector;
  /** one pod, by name (spec.podNames) */
  pod?: string | undefined;
  filters: string[];
  direction: Direction;
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
      direction: o.direction,
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

/** Counts the enhanced packet blocks going by in a pcapng stream (for the progress line). */
export class PacketCounter {
  #head = Buffer.alloc(0);
  #skip = 0;
  #lost = false;
  packets = 0;
  bytes = 0;

  push(chunk: Buffer): void {
    this.bytes += chunk.length;
    for (let p = 0; p < chunk.length && !this.#lost; ) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - p);
        this.#skip -= n;
        p += n;
        continue;
      }
      const take = chunk.subarray(p, p + 8 - this.#head.length);
      this.#head = Buffer.concat([this.#head, take]);
      p += take.length;
      if (this.#head.length < 8) break;
      const len = this.#head.readUInt32LE(4);
      if (len < 12 || len % 4 !== 0) this.#lost = true; // not our pcapng: stop counting, keep passing bytes
      else if (this.#head.readUInt32LE(0) === 6) this.packets++;
      this.#skip = len - 8;
      this.#head = Buffer.alloc(0);
    }
  }
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
  if (!o.pod === !o.selector) throw new UserError('name one pod, or a label selector with -l', { exitCode: ExitCode.usage });

  const id = randomBytes(4).toString('hex').slice(0, 6);
  const name = `podtap-capture-${id}`;
  const ns = o.namespace;
  const target = o.pod ? `${ns}/${o.pod}` : `-l ${o.selector} in ${ns}`;

  // validate everything before touching the cluster
  capturePolicy({ ...o, name, selector: { matchLabels: { probe: 'x' } }, collector: o.collector, target });

  let selector: LabelSelector = {};
  if (o.pod) {
    const pod = await kube.pod(ns, o.pod);
    if (pod.status?.phase && pod.status.phase !== 'Running') say(`pod ${ns}/${o.pod} is ${pod.status.phase}: packets flow once it runs`);
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
    const policy = capturePolicy({ ...o, name, selector, pod: o.pod, collector: o.collector, target });
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
      res.once('end', () => resolve('the collector ended the stream'));
      res.once('error', () => resolve('the collector connection broke'));
    });
    const aborted = new Promise<string>((resolve) => {
      if (io.signal.aborted) resolve('interrupted');
      io.signal.addEventListener('abort', () => resolve('interrupted'), { once: true });
    });
    let timer: NodeJS.Timeout | undefined;
    const timeUp = o.stopAfterMs > 0 ? new Promise<string>((resolve) => (timer = setTimeout(() => resolve('time is up'), o.stopAfterMs))) : new Promise<string>(() => undefined);
    // the policy's conditions, as they change
    let last: string | undefined;
    const watch = setInterval(() => {
      void kube.getPolicy(ns, name).then(
        (p) => {
          const line = p && conditionLine(p);
          if (line && line !== last) say(`SniffPolicy ${name}: ${line}`);
          last = line ?? last;
        },
        () => undefined,
      );
    }, 2000);
    const progress = io.stdoutIsTTY || o.write || o.wireshark ? setInterval(() => say(`${c.packets} packets, ${c.bytes} bytes`), 10_000) : undefined;
    reason = await Promise.race([aborted, ended, timeUp, out.gone]);
    clearTimeout(timer);
    clearInterval(watch);
    if (progress) clearInterval(progress);
  } finally {
    await cleanup();
    await output?.finish();
  }
  if (counter) say(`${reason}: ${counter.packets} packets, ${counter.bytes} bytes${output ? ` into ${output.describe}` : ''}`);
  return ExitCode.ok;
}
