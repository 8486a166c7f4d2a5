/**
 * `podtap sniff --secret-file` against a collector with an install secret
 * (issue 9 part 2): sniff derives its node's key from the secret and signs its
 * announcements, so the collector takes its stream and files the packets under
 * the policy; with another secret, or none, the announcements are refused and
 * no packet is filed. The pings cross a real veth tapped by the real programs.
 */
import { readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { podtap, waitForLine } from '../helpers/capture.ts';
import { policyYaml, tempDir } from '../helpers/harness.ts';
import { createTopology, type Topology } from '../helpers/netns.ts';

const SECRET = 'sniff-secret-test-install-secret';

let topo: Topology | undefined;
afterEach(async () => {
  await topo?.destroy();
  topo = undefined;
});

/** Bytes of pcapng filed under the policy's capture directory (0: none). */
async function filed(dir: string, capture: string): Promise<number> {
  const files = await readdir(join(dir, capture)).catch(() => [] as string[]);
  let bytes = 0;
  for (const f of files) bytes += (await stat(join(dir, capture, f))).size;
  return bytes;
}

describe('podtap sniff --secret-file', () => {
  it.each([
    { description: 'the collector\'s secret: signed with the node key, taken, filed under the policy', input: { secret: SECRET as string | undefined }, expected: true },
    { description: 'another secret: a MAC the collector refuses, nothing filed', input: { secret: 'not-the-install-secret' }, expected: false },
    { description: 'no secret: unsigned, refused by a collector that has one, nothing filed', input: { secret: undefined }, expected: false },
  ])('$description', async ({ input, expected }) => {
    topo = await createTopology({ pods: 2 });
    const [p1, p2] = topo.pods as [Topology['pods'][0], Topology['pods'][0]];
    const dir = await tempDir('podtap-sniff-secret-');
    // (a name of its own: sniff's session, and its pins, are named after the policy)
    const name = `secret-${Math.random().toString(36).slice(2, 8)}`;
    const policy = join(dir, 'p.yaml');
    await writeFile(policy, policyYaml({ collector: { address: topo.collector.ip4 }, filter: { protocols: ['ICMP'] } }, name));
    const args = ['sniff', '--policy', policy, '--iface', p1.hostIf, '--quiet', '--node', 'node-a'];
    if (input.secret !== undefined) {
      await writeFile(join(dir, 'secret'), `${input.secret}\n`, { mode: 0o600 });
      args.push('--secret-file', join(dir, 'secret'));
    }
    const out = join(dir, 'out');
    await execa('mkdir', [out]);
    const collector = podtap(topo.collector.ns, ['collector', '--listen', `${topo.collector.ip4}:6081`, '--out', out, '--workers', '0'], { PODTAP_TOKEN: SECRET });
    try {
      await waitForLine(collector, /listening/i, 15_000);
      const sniff = podtap(topo.node, args);
      await waitForLine(sniff, /podtap: tapping/, 60_000);
      const pings = await execa('nsenter', [`--net=/run/netns/${p1.ns}`, 'ping', '-q', '-c', '100', '-i', '0.01', p2.ip4], { reject: false });
      expect(pings.exitCode, String(pings.stderr)).toBe(0);
      sniff.kill('SIGINT');
      expect((await sniff).exitCode, String((await sniff).all)).toBe(0);
    } finally {
      collector.kill('SIGTERM');
      await collector;
    }
    const bytes = await filed(out, `default_${name}`);
    if (expected) expect(bytes, 'packets filed under the policy').toBeGreaterThan(100 * 98);
    else expect(bytes, 'nothing filed under the policy').toBe(0);
    const summary = /rebuilt (\d+) packets/.exec(String((await collector).stdout));
    expect(Number(summary?.[1] ?? -1) > 0).toBe(expected);
  });
});
