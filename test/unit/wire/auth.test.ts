/**
 * Announcement authentication (issue 9): what the collector's ingest decides
 * about one datagram before it parses the JSON, and what a listener on the
 * wire gets to see.
 */
import { describe, expect, it } from 'vitest';
import { encodeAnnouncement, openAnnouncement, readEnvelope, type Announcement, type OpenOptions } from '../../../src/wire/announce.ts';
import { announcementMac, deriveNodeKey, derivedKeyring, installSecretKeySource, type NodeKey } from '../../../src/wire/auth.ts';
import type { MalformedReason } from '../../../src/wire/format.ts';

const SECRET = 'the-install-secret-48-characters-long-0123456789';
const NOW = Date.UTC(2025, 10, 25, 10);
const A: Announcement = {
  v: 2, node: 'node-a', source: '198.18.0.1', sender: 'agent', senderId: 'c0ffee', instance: 7, tunnel: 'Geneve',
  policy: { namespace: 'shop', name: 'web-debug', uid: '1b2c' }, clock: { monoNs: '1', realtimeNs: '2' },
  interfaces: [{ ifindex: 12, name: 'veth1a2b', pod: { namespace: 'shop', name: 'web-1' }, directions: ['Ingress'] }],
};
const keyOf = (node: string, secret = SECRET): NodeKey => ({ id: node, key: deriveNodeKey(secret, node) });
const OPEN: OpenOptions = { keyring: derivedKeyring(SECRET), nowMs: NOW, maxSkewMs: 60_000, source: '198.18.0.1' };

/** Recomputes the MAC of a datagram whose signed bytes were changed. */
function resign(b: Buffer, key: Buffer): Buffer {
  const env = readEnvelope(b, 16)!;
  announcementMac(key, env.signed).copy(b, env.signed.length);
  return b;
}

/** Replaces the key id of a signed datagram (same length) and signs it again with `key`. */
function relabel(b: Buffer, id: string, key: Buffer): Buffer {
  const out = Buffer.from(b);
  out.write(id, 44, 'latin1');
  return resign(out, key);
}

const signed = (a: Announcement = A, o: { key?: NodeKey; timeMs?: number } = {}): Buffer => encodeAnnouncement(a, { key: o.key ?? keyOf(a.node), timeMs: o.timeMs ?? NOW });

const cases: { description: string; input: { datagram: () => Buffer; open?: Partial<OpenOptions> }; expected: { ok: true } | { reason: MalformedReason } }[] = [
  { description: 'signed with its node key, now, from the address it names', input: { datagram: () => signed() }, expected: { ok: true } },
  { description: 'from the same address as a dual-stack socket reports it', input: { datagram: () => signed(), open: { source: '::ffff:198.18.0.1' } }, expected: { ok: true } },
  { description: 'within the window (59 s old)', input: { datagram: () => signed(A, { timeMs: NOW - 59_000 }) }, expected: { ok: true } },
  { description: 'unsigned', input: { datagram: () => encodeAnnouncement(A, { timeMs: NOW }) }, expected: { reason: 'unauthenticated' } },
  { description: 'signed with a key from another install', input: { datagram: () => signed(A, { key: keyOf('node-a', 'another-install') }) }, expected: { reason: 'bad-mac' } },
  { description: "signed with another node's key under this node's name", input: { datagram: () => signed(A, { key: { id: 'node-a', key: deriveNodeKey(SECRET, 'node-b') } }) }, expected: { reason: 'bad-mac' } },
  {
    description: 'one byte of the JSON changed (a pod renamed in flight)',
    input: { datagram: () => { const b = signed(); const i = b.indexOf('web-1'); b[i + 4] = '2'.charCodeAt(0); return b; } },
    expected: { reason: 'bad-mac' },
  },
  { description: 'its time moved (a replay made to look fresh)', input: { datagram: () => { const b = signed(A, { timeMs: NOW - 600_000 }); b.writeBigUInt64BE(BigInt(NOW), 20); return b; } }, expected: { reason: 'bad-mac' } },
  { description: 'its MAC cut off', input: { datagram: () => signed().subarray(0, -32) }, expected: { reason: 'bad-announcement' } },
  { description: 'a byte after the MAC', input: { datagram: () => Buffer.concat([signed(), Buffer.from([0])]) }, expected: { reason: 'bad-announcement' } },
  { description: 'an unknown scheme', input: { datagram: () => { const b = signed(); b[16] = 9; return b; } }, expected: { reason: 'bad-announcement' } },
  { description: 'a key id that is no node name', input: { datagram: () => relabel(signed(), 'NODE-A', keyOf('NODE-A').key) }, expected: { reason: 'bad-announcement' } },
  { description: 'sent 61 s ago (a late replay)', input: { datagram: () => signed(A, { timeMs: NOW - 61_000 }) }, expected: { reason: 'stale' } },
  { description: 'dated 61 s ahead', input: { datagram: () => signed(A, { timeMs: NOW + 61_000 }) }, expected: { reason: 'stale' } },
  {
    description: "a node's valid MAC over another node's announcement (node-b signs what says node-a)",
    input: { datagram: () => relabel(signed(), 'node-b', keyOf('node-b').key) },
    expected: { reason: 'bad-announcement' },
  },
  { description: 'sent from another address than it names (replayed from elsewhere)', input: { datagram: () => signed(), open: { source: '198.18.7.7' } }, expected: { reason: 'wrong-source' } },
];

describe('opening an announcement', () => {
  it.each(cases)('$description', ({ input, expected }) => {
    const r = openAnnouncement(input.datagram(), 16, { ...OPEN, ...input.open });
    if ('ok' in expected) {
      expect(r).toMatchObject({ ok: true, announcement: A, auth: { keyId: 'node-a', timeMs: expect.any(Number) } });
    } else {
      expect(r).toMatchObject({ ok: false, reason: expected.reason });
    }
  });

  it('without a keyring (a collector that authenticates nobody): taken as it comes, no auth', () => {
    for (const d of [encodeAnnouncement(A), signed(), signed(A, { key: keyOf('node-a', 'other') })]) {
      expect(openAnnouncement(d, 16, { ...OPEN, keyring: undefined, source: '198.18.9.9' })).toEqual({ ok: true, announcement: A, auth: undefined });
    }
  });

  it('each announcement carries a fresh nonce', () => {
    const nonces = new Set(Array.from({ length: 100 }, () => readEnvelope(signed(), 16)!.nonce.toString('hex')));
    expect(nonces.size).toBe(100);
  });
});

describe('what a listener sees', () => {
  it('neither the install secret nor the node key, in any datagram', async () => {
    const key = await installSecretKeySource(SECRET, 'node-a').current();
    const seen = Buffer.concat(Array.from({ length: 20 }, () => signed(A, { key })));
    for (const secretBytes of [Buffer.from(SECRET), key.key, Buffer.from(key.key.toString('hex')), Buffer.from(key.key.toString('base64'))]) {
      expect(seen.includes(secretBytes)).toBe(false);
    }
  });

  it('node keys differ per node and per install, and none is the secret', () => {
    const keys = ['node-a', 'node-b'].flatMap((n) => [deriveNodeKey(SECRET, n), deriveNodeKey('other', n)]).map((k) => k.toString('hex'));
    expect(new Set(keys).size).toBe(4);
    expect(keys).not.toContain(Buffer.from(SECRET).toString('hex'));
  });
});
