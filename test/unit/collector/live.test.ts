/**
 * Sequence gaps on live streams: told to the readers whose filter they
 * concern, in the comment of the next packet they get.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { LiveHub, lossMatches, type StreamFilter } from '../../../src/collector/live.ts';
import { Direction } from '../../../src/collector/pcapng.ts';
import { captureKey, type Iface, type Ref, type TransitLoss } from '../../../src/collector/router.ts';
import { pattern } from '../wire/frames.ts';
import { blocks, options } from './helpers.ts';

const WEB: Ref = { namespace: 'shop', name: 'web-debug' };
const web1: Iface = { uid: 1, name: 'shop/web-1', description: '', snaplen: 0, pod: { namespace: 'shop', name: 'web-1' }, policy: WEB, capture: captureKey(WEB) };

function loss(iface: Iface | undefined): TransitLoss {
  return { count: 3, capture: captureKey(WEB), policy: WEB, iface, node: 'node-a', address: '198.18.0.1', instance: 7, cpu: 1, first: 40, last: 42 };
}

describe('which live readers hear of a gap', () => {
  it.each([
    { description: 'no filter, one interface', input: { filter: {}, iface: web1 }, expected: true },
    { description: 'its pod', input: { filter: { pod: 'web-1' }, iface: web1 }, expected: true },
    { description: 'another pod', input: { filter: { pod: 'web-2' }, iface: web1 }, expected: false },
    { description: 'its policy, interface unknown', input: { filter: { policy: 'web-debug' }, iface: undefined }, expected: true },
    { description: 'its namespace, interface unknown', input: { filter: { namespace: 'shop' }, iface: undefined }, expected: true },
    { description: 'another namespace', input: { filter: { namespace: 'other' }, iface: undefined }, expected: false },
    { description: 'a pod filter, interface unknown: cannot tell', input: { filter: { pod: 'web-1' }, iface: undefined }, expected: false },
  ] as { description: string; input: { filter: StreamFilter; iface: Iface | undefined }; expected: boolean }[])('$description', ({ input, expected }) => {
    expect(lossMatches(input.filter, loss(input.iface))).toBe(expected);
  });
});

describe('a live stream', () => {
  it('carries the gap in the comment of the next packet, once', () => {
    const chunks: Buffer[] = [];
    const out = new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(Buffer.from(c)), cb()) });
    const hub = new LiveHub();
    hub.add(out, { namespace: 'shop' });
    const other = hub.add(new Writable({ write: (_c, _e, cb) => cb() }), { namespace: 'elsewhere' });
    const send = (): void => hub.packet(web1, 0, 1, pattern(60), 0, 60, 60, Direction.inbound);
    send();
    hub.lost(loss(web1));
    send();
    send();
    hub.flush();
    const epbs = blocks(Buffer.concat(chunks)).filter((b) => b.type === 6);
    const comments = epbs.map((e) => options(e.body, 20 + 60).find(([code]) => code === 1)?.[1].toString());
    expect(comments).toEqual([undefined, 'podtap: 3 frame(s) never arrived from node node-a (data plane 7, CPU 1, numbers 40..42)', undefined]);
    expect(other.notes.pending).toBe(false);
  });
});
