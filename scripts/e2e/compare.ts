/**
 * The e2e's verdict on a capture: every frame tcpdump saw on a pod's host
 * veth is in podtap's pcapng, byte for byte (tshark reads both files; frames
 * are compared by length and MD5 of their bytes, as a multiset).
 *
 *   node scripts/e2e/compare.ts GROUND_TRUTH.pcap PODTAP.pcapng INTERFACE_NAME
 *
 * Exit 0 when nothing is missing; 1 with examples otherwise. Prints counts.
 */
import { diffMultiset, digestCounts, readFrames } from '../../test/helpers/capture.ts';

const [truth, captured, iface] = process.argv.slice(2);
if (!truth || !captured || !iface) {
  console.error('usage: compare.ts GROUND_TRUTH.pcap PODTAP.pcapng INTERFACE_NAME');
  process.exit(2);
}
const want = await readFrames(truth);
const got = (await readFrames(captured)).filter((f) => f.iface === iface);
const d = diffMultiset(digestCounts(want), digestCounts(got));
const big = want.filter((f) => f.len > 1514).length;
console.log(`compare: tcpdump saw ${want.length} frames (${big} larger than 1514 bytes, up to ${Math.max(0, ...want.map((f) => f.len))}); podtap's ${iface}: ${got.length}; missing ${d.missing}`);
if (want.length === 0) {
  console.error('compare: tcpdump saw nothing: the traffic did not cross this veth');
  process.exit(1);
}
if (d.missing > 0) {
  console.error(`compare: ${d.missing} frame(s) tcpdump saw are not in the capture, e.g.:\n  ${d.examples.filter((e) => e.startsWith('missing')).join('\n  ')}`);
  process.exit(1);
}
