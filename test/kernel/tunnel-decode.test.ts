/**
 * The tunnel as a standard receiver sees it: a raw capture at the collector's
 * interface decodes as Geneve (and as VXLAN in that mode), and tshark
 * reassembles the inner fragments of a 65535-byte packet into the original.
 */
import { createHash } from 'node:crypto';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTcpdump } from '../helpers/capture.ts';
import { startCapture } from '../helpers/harness.ts';
import { createTopology, inNs, type Topology } from '../helpers/netns.ts';
import { ping } from '../helpers/traffic.ts';

async function tsharkFields(file: string, filter: string, fields: string[], prefs: string[] = []): Promise<string[][]> {
  // first occurrence of each field: the outer header's, in a tunnel
  const args = ['-r', file, ...prefs.flatMap((p) => ['-o', p]), '-Y', filter, '-T', 'fields', '-E', 'separator=\t', '-E', 'occurrence=f', ...fields.flatMap((f) => ['-e', f])];
  const r = await execa('tshark', args, { maxBuffer: 1 << 30 });
  return r.stdout.split('\n').filter(Boolean).map((l) => l.split('\t'));
}

const md5 = (hex: string) => createHash('md5').update(Buffer.from(hex.replace(/:/g, ''), 'hex')).digest('hex');

for (const tunnel of ['Geneve', 'VXLAN'] as const) {
  describe(`a ${tunnel} tunnel, read by tshark`, () => {
    let topo: Topology;
    let dir = '';

    beforeAll(async () => {
      topo = await createTopology({ pods: 2, podMtu: 65535 });
      const port = tunnel === 'Geneve' ? 6081 : 4789;
      const run = await startCapture(
        topo,
        { collector: { address: topo.collector.ip4, port }, tunnel: { protocol: tunnel, vni: 4242 }, filter: { protocols: ['ICMP'] } },
        [topo.pods[0]!.hostIf],
        { tunnel: tunnel === 'Geneve' ? 'geneve' : 'vxlan', name: topo.prefix },
      );
      dir = run.dir;
      const raw = await startTcpdump(topo.collector.ns, 'eth0', `${dir}/tunnel.pcap`, ['udp', 'port', String(port)]);
      const truth = await startTcpdump(topo.node, topo.pods[0]!.hostIf, `${dir}/veth.pcap`, ['-Q', 'in', 'icmp']);
      expect(await ping(topo.pods[0]!.ns, topo.pods[1]!.ip4, { size: 65507, count: 2, interval: 0.3 })).toEqual({ sent: 2, received: 2 });
      await new Promise((r) => setTimeout(r, 300));
      await raw.stop();
      await truth.stop();
      await run.stop();
    }, 120_000);
    afterAll(() => topo?.destroy());

    it(`decodes as ${tunnel} with VNI 4242`, async () => {
      const proto = tunnel === 'Geneve' ? 'geneve' : 'vxlan';
      const rows = await tsharkFields(`${dir}/tunnel.pcap`, proto, [`${proto}.vni`]);
      expect(rows.length).toBeGreaterThan(90); // two echo requests of 47 pieces each
      expect(new Set(rows.map((r) => Number(r[0])))).toEqual(new Set([4242]));
      if (tunnel === 'Geneve') {
        const opts = await tsharkFields(`${dir}/tunnel.pcap`, 'geneve', ['geneve.option.class', 'geneve.option.type']);
        expect(opts.every(([cls, type]) => Number(cls) === 0xff70 && Number(type) === 1)).toBe(true);
      }
    });

    it('every outer packet fits the 1500-byte MTU with DF set and is never fragmented', async () => {
      const rows = await tsharkFields(`${dir}/tunnel.pcap`, 'udp', ['ip.len', 'ip.flags.df', 'ip.flags.mf', 'ip.frag_offset']);
      for (const [len, df, mf, off] of rows) {
        expect(Number(len)).toBeLessThanOrEqual(1500);
        expect([df, mf, off]).toEqual(['1', '0', '0']);
      }
    });

    it('reassembles the inner fragments of a 65535-byte packet into the original', async () => {
      const original = await tsharkFields(`${dir}/veth.pcap`, 'icmp.type == 8', ['ip.len', 'ip.src', 'ip.dst', 'icmp.seq', 'icmp']);
      expect(original).toHaveLength(2);
      expect(original.every((r) => r[0] === '65535')).toBe(true);
      const rebuilt = (await tsharkFields(`${dir}/tunnel.pcap`, 'icmp.type == 8', ['ip.reassembled.length', 'icmp.seq', 'ip.reassembled.data'], ['ip.defragment:TRUE'])).map(
        ([len, seq, data]) => [len, '', '', seq, data],
      );
      expect(rebuilt).toHaveLength(2);
      // the inner packet's IP payload, rebuilt by tshark, equals the original's
      const originalPayloads = await tsharkFields(`${dir}/veth.pcap`, 'icmp.type == 8', ['icmp.seq', 'data.data']);
      for (const r of rebuilt) {
        expect(r[0]).toBe('65515');
        const seq = r[3];
        const orig = originalPayloads.find((o) => o[0] === seq);
        expect(orig, `echo request seq ${seq} on the veth`).toBeTruthy();
        // ip.reassembled.data = ICMP header (8 bytes) + ping's 8-byte timestamp
        // + data; tshark's data.data of the original is that data
        const rebuiltData = r[4]!.replace(/:/g, '').slice(32);
        expect(md5(rebuiltData)).toBe(md5(orig![1]!));
      }
    });
  });
}

describe('TCP super-packets, segmented by the kernel, read by tshark', () => {
  let topo: Topology;
  let dir = '';

  beforeAll(async () => {
    topo = await createTopology({ pods: 2 });
    const [p1, p2] = topo.pods as [Topology['pods'][0], Topology['pods'][0]];
    const run = await startCapture(topo, { collector: { address: topo.collector.ip4 }, policyTypes: ['Egress'], filter: { protocols: ['TCP'] } }, [p1.hostIf], { name: topo.prefix });
    dir = run.dir;
    // a veth passes UDP-tunnel GSO packets on whole (as a NIC with
    // UDP-tunnel segmentation does, cutting them on the wire): without that
    // offload the kernel cuts them before they leave, and tcpdump sees what
    // a NIC puts on the wire
    await inNs(topo.node, 'ethtool', ['-K', 'up0', 'tx-udp_tnl-segmentation', 'off', 'tx-udp_tnl-csum-segmentation', 'off']);
    const raw = await startTcpdump(topo.collector.ns, 'eth0', `${dir}/tunnel.pcap`, ['udp', 'port', '6081']);
    const truth = await startTcpdump(topo.node, p1.hostIf, `${dir}/veth.pcap`, ['-Q', 'in', 'tcp']);
    const server = execa('nsenter', [`--net=/run/netns/${p2.ns}`, 'iperf3', '-s', '-1', '-p', '5306'], { reject: false });
    await new Promise((r) => setTimeout(r, 300));
    await execa('nsenter', [`--net=/run/netns/${p1.ns}`, 'iperf3', '-c', p2.ip4, '-p', '5306', '-t', '1', '-b', '50M']);
    await server;
    await new Promise((r) => setTimeout(r, 300));
    expect((await raw.stop()).dropped).toBe(0);
    expect((await truth.stop()).dropped).toBe(0);
    const s = await run.stop();
    expect(s.sniffOutput).toMatch(/lost 0/);
    expect(s.sniffOutput).toMatch(/segmented [1-9]/);
  }, 120_000);
  afterAll(() => topo?.destroy());

  it('every tunnel packet is a TCP segment that fits the MTU, with DF and the podtap option', async () => {
    const rows = await tsharkFields(`${dir}/tunnel.pcap`, 'geneve && tcp.len > 0', ['ip.len', 'ip.flags.df', 'geneve.option.class']);
    const supers = await tsharkFields(`${dir}/veth.pcap`, 'tcp.len > 1500', ['tcp.len']);
    expect(supers.length, 'super-packets on the veth').toBeGreaterThan(10);
    expect(rows.length).toBeGreaterThan(supers.length);
    for (const [len, df, cls] of rows) expect([Number(len) <= 1500, df, Number(cls)]).toEqual([true, '1', 0xff70]);
  });

  it('the segments carry the stream the veth carried, byte count for byte count', async () => {
    const inner = await tsharkFields(`${dir}/tunnel.pcap`, 'geneve && tcp.len > 0', ['tcp.seq_raw', 'tcp.len']);
    const veth = await tsharkFields(`${dir}/veth.pcap`, 'tcp.len > 0', ['tcp.seq_raw', 'tcp.len']);
    // the byte ranges [seq, seq + len) of the stream (from the first
    // super-packet's number, modulo 2^32), joined
    const base = Number(veth[0]![0]);
    const covered = (rows: string[][]) => {
      const r = rows.map(([seq, len]) => {
        const a = (Number(seq) - base) >>> 0;
        return [a, a + Number(len)] as const;
      }).sort((x, y) => x[0] - y[0]);
      const out: [number, number][] = [];
      for (const [a, b] of r) {
        const last = out.at(-1);
        if (last && a <= last[1]) last[1] = Math.max(last[1], b);
        else out.push([a, b]);
      }
      return out;
    };
    expect(covered(inner)).toEqual(covered(veth));
  });
});
