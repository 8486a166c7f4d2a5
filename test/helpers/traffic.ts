/** Traffic between test pods (always inside the test's namespaces). */
import { execa } from 'execa';
import { NODE_BIN } from './netns.ts';

export interface PingResult {
  sent: number;
  received: number;
}

export async function ping(ns: string, dst: string, opts: { size?: number; count?: number; interval?: number; v6?: boolean } = {}): Promise<PingResult> {
  const args = ['-c', String(opts.count ?? 2), '-i', String(opts.interval ?? 0.05), '-W', '2', '-s', String(opts.size ?? 56)];
  if (opts.v6) args.unshift('-6');
  const r = await execa('nsenter', [`--net=/run/netns/${ns}`, 'ping', ...args, dst], { reject: false });
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  if (!m) throw new Error(`ping output not understood: ${r.stdout}\n${r.stderr}`);
  return { sent: Number(m[1]), received: Number(m[2]) };
}

/** Send one UDP datagram of each size from @ns to @dst:@port. */
export function udpSend(ns: string, dst: string, port: number, sizes: number[]): Promise<void> {
  return udpSendMany(ns, port, [{ dst, sizes }]);
}

/** udpSend to several destinations (IPv4 and IPv6 alike) from one process: under qemu's TCG a Node start costs seconds. */
export async function udpSendMany(ns: string, port: number, targets: { dst: string; sizes: number[] }[]): Promise<void> {
  const script = `
    import { createSocket } from 'node:dgram';
    import { isIPv6 } from 'node:net';
    const [port, targets] = [Number(process.argv[1]), JSON.parse(process.argv[2])];
    for (const { dst, sizes } of targets) {
      const s = createSocket(isIPv6(dst) ? 'udp6' : 'udp4');
      // a datagram not sent fails the helper (an error swallowed here once hid that nothing was sent)
      for (const n of sizes) {
        await new Promise((r, j) => s.send(Buffer.alloc(n, n & 0xff), port, dst, (err) => (err ? j(err) : r())));
        await new Promise((r) => setTimeout(r, 20));
      }
      s.close();
    }`;
  await execa('nsenter', [`--net=/run/netns/${ns}`, NODE_BIN, '--input-type=module', '-e', script, String(port), JSON.stringify(targets)]);
}

export interface Iperf {
  /** bits per second received */
  bps: number;
  bytes: number;
}

/** A TCP transfer with iperf3 from @client to @server for @seconds. */
export async function iperf(serverNs: string, serverIp: string, clientNs: string, seconds: number, extra: string[] = []): Promise<Iperf> {
  const port = String(5201 + Math.floor(Math.random() * 500));
  const server = execa('nsenter', [`--net=/run/netns/${serverNs}`, 'iperf3', '-s', '-1', '-p', port], { reject: false });
  await new Promise((r) => setTimeout(r, 300));
  const c = await execa('nsenter', [`--net=/run/netns/${clientNs}`, 'iperf3', '-c', serverIp, '-p', port, '-t', String(seconds), '-J', ...extra], { reject: false });
  await server;
  if (c.exitCode !== 0) throw new Error(`iperf3 failed: ${c.stdout.slice(-500)} ${c.stderr}`);
  const j = JSON.parse(c.stdout) as { end: { sum_received: { bits_per_second: number; bytes: number } } };
  return { bps: j.end.sum_received.bits_per_second, bytes: j.end.sum_received.bytes };
}
