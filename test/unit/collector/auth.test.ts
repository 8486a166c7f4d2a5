/**
 * No reusable secret on the wire (issue 9), end to end on real sockets: the
 * agent's announcer signs with its node key and the collector admits it; a
 * tenant who points a policy at their own pod receives the announcements
 * and finds nothing they can reuse: no secret, no key, and every replay
 * refused (from their own address: wrong-source; with the node's address
 * forged: not-assigned, as their policy was not assigned to this collector;
 * to the collector that already saw it: replayed).
 */
import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { Announcer } from '../../../src/capture/announcer.ts';
import { AssignmentSet } from '../../../src/collector/admission.ts';
import { deriveNodeKey, installSecretKeySource } from '../../../src/wire/auth.ts';
import { FrameSource, sendAll, startRunning, until, type Running } from './running.ts';

const SECRET = 'the-install-secret-0123456789abcdefghijklmnopqrst';
const NODE = 'node-a';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function bound(address: string): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, address, () => r()));
  cleanups.push(() => {
    s.close();
  });
  return s;
}

/** The agent's announcer for `policy`, sending to `to`. */
async function agent(to: { address: string; port: number }, policy: string): Promise<Announcer> {
  const a = new Announcer({
    collector: to, node: NODE, sender: 'agent', tunnel: 'Geneve', key: installSecretKeySource(SECRET, NODE), instance: () => 1,
    policy: { namespace: 'shop', name: policy, uid: 'u' }, intervalMs: 60_000,
    interfaces: async () => [{ ifindex: 11, name: 'veth11', pod: { namespace: 'shop', name: 'web-1' }, directions: ['Ingress', 'Egress'] }],
  });
  await a.start();
  cleanups.push(() => a.stop());
  return a;
}

async function collector(opts: Parameters<typeof startRunning>[0] = {}): Promise<Running> {
  const r = await startRunning({ ...opts, ingest: { secret: SECRET, ...opts.ingest } });
  cleanups.push(() => r.stop());
  return r;
}

describe('announcements signed with the node key', () => {
  it("the agent's announcer is admitted and its stream's data taken", async () => {
    const r = await collector();
    await agent({ address: '127.0.0.1', port: r.c.address.port }, 'web-debug');
    await until(() => r.c.stats().grants === 1, 'the announcement admitted');
    await r.send(new FrameSource().frames(3, { ifindex: 11 }));
    await until(() => r.c.stats().written === 3, 'its frames on disk');
    expect(r.c.stats().malformed).toBe(0);
  });

  it("a tenant's own destination receives nothing it can reuse", async () => {
    // the tenant's pod, where a policy of theirs sends copies and announcements
    const tenant = await bound('127.0.0.3');
    const heard: Buffer[] = [];
    tenant.on('message', (m) => heard.push(m));
    const announcer = await agent({ address: '127.0.0.3', port: tenant.address().port }, 'tenant-tap');
    await announcer.announceNow();
    await until(() => heard.length >= 2, 'the announcements at the tenant');

    // nothing secret in what they heard
    const all = Buffer.concat(heard);
    const key = deriveNodeKey(SECRET, NODE);
    for (const s of [Buffer.from(SECRET), key, Buffer.from(key.toString('hex')), Buffer.from(key.toString('base64'))]) expect(all.includes(s)).toBe(false);

    // replayed to the real collector from the tenant's own address
    const assigned = new AssignmentSet([{ namespace: 'shop', policy: 'web-debug', node: NODE }]);
    const r = await collector({ admission: { allow: assigned } });
    await sendAll(tenant, r.c.address.port, heard);
    await sendAll(tenant, r.c.address.port, new FrameSource().frames(2, { ifindex: 11 }));
    await until(() => r.c.stats().received === heard.length + 2, 'the replays');
    expect(r.c.stats().malformedByReason).toMatchObject({ 'wrong-source': heard.length, unannounced: 2 });

    // replayed with the node's address forged (here: a socket on it): their policy is not assigned to this collector
    const forger = await bound('127.0.0.1');
    await sendAll(forger, r.c.address.port, heard);
    await until(() => r.c.stats().received === 2 * heard.length + 2, 'the forged replays');
    expect(r.c.stats().malformedByReason['not-assigned']).toBe(heard.length);
    expect(r.c.stats()).toMatchObject({ announcements: 0, grants: 0, written: 0 });
  });

  it('an announcement the collector admitted, replayed, is refused', async () => {
    const r = await collector();
    const listener = await bound('127.0.0.1');
    const heard: Buffer[] = [];
    // a listener on the path copies what the agent sends (here: the agent sends to it, and it forwards)
    listener.on('message', (m) => {
      heard.push(m);
      listener.send(m, r.c.address.port, '127.0.0.1');
    });
    await agent({ address: '127.0.0.1', port: listener.address().port }, 'web-debug');
    await until(() => r.c.stats().announcements === 1, 'the forwarded announcement admitted');
    await sendAll(listener, r.c.address.port, heard);
    await until(() => r.c.stats().malformedByReason.replayed === 1, 'the replay refused');
    expect(r.c.stats().announcements).toBe(1);
  });
});
