/**
 * Ground truth and verdicts: tcpdump on the tapped veth, tshark reading files.
 */
import { execa, type ResultPromise } from 'execa';
import { NODE_BIN, PODTAP_MAIN } from './netns.ts';

/**
 * Multiplies the helpers' waits: a kernel under qemu's TCG (scripts/kernel-matrix.sh)
 * runs everything ten to forty times slower than this machine does.
 */
export const WAIT_SCALE = Number(process.env.PODTAP_TEST_WAIT_SCALE ?? 1);

export interface Tcpdump {
  file: string;
  stop(): Promise<{ captured: number; dropped: number }>;
}

/** Start `tcpdump -w` in @ns on @dev; resolves once it is listening. */
export async function startTcpdump(ns: string, dev: string, file: string, extra: string[] = []): Promise<Tcpdump> {
  const p = execa('nsenter', [`--net=/run/netns/${ns}`, 'tcpdump', '-i', dev, '-w', file, '-s', '0', '-U', '--immediate-mode', '-B', '131072', ...extra], {
    reject: false,
    buffer: { stdout: false, stderr: true },
  });
  await waitForLine(p, /listening on/, 10_000 * WAIT_SCALE);
  return {
    file,
    async stop() {
      p.kill('SIGINT');
      const r = await p;
      const err = String(r.stderr ?? '');
      const captured = Number(/(\d+) packets? captured/.exec(err)?.[1] ?? -1);
      const dropped = Number(/(\d+) packets? dropped by kernel/.exec(err)?.[1] ?? -1);
      return { captured, dropped };
    },
  };
}

/** Wait until a child prints a line matching @re on stdout or stderr. */
export function waitForLine(p: ResultPromise, re: RegExp, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${re} (saw: ${seen.slice(-500)})`)), timeoutMs);
    const on = (chunk: Buffer) => {
      seen += chunk.toString();
      const m = seen.split('\n').find((l) => re.test(l));
      if (m) {
        clearTimeout(t);
        p.stdout?.off('data', on);
        p.stderr?.off('data', on);
        resolve(m);
      }
    };
    p.stdout?.on('data', on);
    p.stderr?.on('data', on);
    void p.then(
      (r) => {
        clearTimeout(t);
        // a signal names itself (exitCode is undefined then): SIGSEGV is not SIGKILL
        reject(new Error(`process exited (${r.exitCode ?? r.signal}${r.signalDescription ? `: ${r.signalDescription}` : ''}) before ${re}: ${seen.slice(-1000)}`));
      },
      () => undefined,
    );
  });
}

export interface Frame {
  len: number;
  capLen: number;
  md5: string;
  iface: string;
  /** pcapng EPB direction: 1 inbound, 2 outbound, 0 unknown */
  dir: number;
}

/** Every frame of a capture file as tshark reads it. */
export async function readFrames(file: string, displayFilter?: string): Promise<Frame[]> {
  const args = ['-r', file, '-o', 'frame.generate_md5_hash:TRUE', '-T', 'fields', '-E', 'separator=\t',
    '-e', 'frame.len', '-e', 'frame.cap_len', '-e', 'frame.md5_hash', '-e', 'frame.interface_name', '-e', 'frame.packet_flags_direction'];
  if (displayFilter) args.push('-Y', displayFilter);
  const r = await execa('tshark', args, { reject: false, maxBuffer: 1 << 30 });
  if (r.exitCode !== 0) throw new Error(`tshark -r ${file} failed: ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean).map((l) => {
    const [len, capLen, md5, iface, dir] = l.split('\t');
    return { len: Number(len), capLen: Number(capLen), md5: md5 ?? '', iface: iface ?? '', dir: dir ? Number(dir) : 0 };
  });
}

/** Multiset of frame digests; compare two with diffMultiset. */
export function digestCounts(frames: Frame[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const f of frames) m.set(`${f.len}:${f.md5}`, (m.get(`${f.len}:${f.md5}`) ?? 0) + 1);
  return m;
}

export function diffMultiset(expected: Map<string, number>, actual: Map<string, number>): { missing: number; extra: number; examples: string[] } {
  let missing = 0;
  let extra = 0;
  const examples: string[] = [];
  for (const [k, n] of expected) {
    const a = actual.get(k) ?? 0;
    if (a < n) {
      missing += n - a;
      if (examples.length < 5) examples.push(`missing ${k} x${n - a}`);
    }
  }
  for (const [k, n] of actual) {
    const e = expected.get(k) ?? 0;
    if (n > e) {
      extra += n - e;
      if (examples.length < 10) examples.push(`extra ${k} x${n - e}`);
    }
  }
  return { missing, extra, examples };
}

/** Run the podtap CLI inside @ns (or the current namespace) in the background. */
export function podtap(ns: string | undefined, args: string[], env: Record<string, string> = {}): ResultPromise {
  const cmd = [NODE_BIN, PODTAP_MAIN, ...args];
  const [file, argv] = ns ? ['nsenter', [`--net=/run/netns/${ns}`, ...cmd]] : [cmd[0]!, cmd.slice(1)];
  return execa(file, argv, { reject: false, env: { ...process.env, ...env }, buffer: true, all: true });
}

/** Frames the collector wrote for @dev in direction @dir (in: sent by the pod) vs tcpdump's, unicast only
 *  (link-layer multicast, ND/MLD chatter and ARP, comes at any time, also outside both captures' window). */
export async function compareCapture(file: string, truthFile: string, dev: string, dir: 'in' | 'out', extraFilter = '') {
  const unicast = `eth.dst.ig == 0 && !arp${extraFilter ? ` && ${extraFilter}` : ''}`;
  const truth = await readFrames(truthFile, unicast);
  const mine = `frame.interface_name == "${dev}" && frame.packet_flags_direction == ${dir === 'in' ? 2 : 1}`;
  const got = await readFrames(file, `${unicast} && ${mine}`);
  // Missing frames count whatever they are (the silent loss was a Router
  // Solicitation). Extra ones do not count when they are neighbour
  // discovery: the capture starts before tcpdump and ends after it, and the
  // kernel's ND chatter comes at times of its own (a 78-byte Neighbor
  // Advertisement outside tcpdump's window failed robustness.test once).
  const gotNoNd = await readFrames(file, `${unicast} && ${mine} && !(icmpv6.type >= 133 && icmpv6.type <= 137)`);
  const all = diffMultiset(digestCounts(truth), digestCounts(got));
  const noNd = diffMultiset(digestCounts(truth), digestCounts(gotNoNd));
  const diff = {
    missing: all.missing,
    extra: noNd.extra,
    examples: [...all.examples.filter((e) => e.startsWith('missing')), ...noNd.examples.filter((e) => e.startsWith('extra'))],
  };
  return { truth: truth.length, got: got.length, diff, frames: { truth, got } };
}
