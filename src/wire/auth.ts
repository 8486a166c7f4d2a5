/**
 * How a sender proves to the collector which node it speaks for, without
 * putting anything reusable on the wire (docs/security.md, "Announcements").
 *
 * Every node has its own key, derived from the install's secret:
 *
 *   node key = HMAC-SHA256(install secret, "podtap node key v1" 0x00 node name)
 *
 * The collector holds the install secret and derives any node's key when an
 * announcement names it; a sender holds only its own node's key (how it gets
 * it is a NodeKeySource). Each announcement carries the node name as key id,
 * the sender's wall-clock time and a fresh 16-byte nonce, and ends with
 *
 *   MAC = HMAC-SHA256(node key, "podtap announcement v2" 0x00 every byte before the MAC)
 *
 * A listener learns neither key; a message it replays is refused by its nonce
 * (seen) or its time (outside the window).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** Bytes of a MAC, of a nonce, and of a node key. */
export const MAC_LEN = 32;
export const NONCE_LEN = 16;
export const NODE_KEY_LEN = 32;

/** How an announcement is authenticated (envelope byte 0). */
export const AuthScheme = {
  /** nothing: accepted only by a collector without an install secret */
  none: 0,
  /** HMAC-SHA256 with the node key of the key id */
  hmacSha256: 1,
} as const;
export type AuthSchemeValue = (typeof AuthScheme)[keyof typeof AuthScheme];

const NODE_KEY_CONTEXT = Buffer.from('podtap node key v1\0');
const MAC_CONTEXT = Buffer.from('podtap announcement v2\0');

/** A node's key and the id (the node name) announcements name it by. */
export interface NodeKey {
  id: string;
  key: Buffer;
}

/**
 * Where a sender's node key comes from. In a cluster, the agent asks for its
 * own node's key (docs/security.md: a TokenReview of its projected service
 * account token); without one, it derives it from the install secret.
 */
export interface NodeKeySource {
  /** The key to sign with now (may change: rotation). */
  current(): Promise<NodeKey>;
}

/** The key of `node` under `secret`. */
export function deriveNodeKey(secret: string | Buffer, node: string): Buffer {
  return createHmac('sha256', secret).update(NODE_KEY_CONTEXT).update(node, 'utf8').digest();
}

/** A sender that holds the install secret derives its node's key (and keeps only that). */
export function installSecretKeySource(secret: string | Buffer, node: string): NodeKeySource {
  const key: NodeKey = { id: node, key: deriveNodeKey(secret, node) };
  return { current: async () => key };
}

/** A sender given its node key directly (a key service's answer, a file). */
export function staticKeySource(key: NodeKey): NodeKeySource {
  if (key.key.length < 16) throw new RangeError('a node key has at least 16 bytes');
  return { current: async () => key };
}

/** The collector's side: the key of any node, derived from the install secret. */
export interface NodeKeyring {
  keyFor(id: string): Buffer | undefined;
}

export function derivedKeyring(secret: string | Buffer): NodeKeyring {
  return { keyFor: (id) => deriveNodeKey(secret, id) };
}

export function newNonce(): Buffer {
  return randomBytes(NONCE_LEN);
}

/** HMAC-SHA256 of `signed` under `key`, bound to announcements. */
export function announcementMac(key: Buffer, signed: Buffer): Buffer {
  return createHmac('sha256', key).update(MAC_CONTEXT).update(signed).digest();
}

/** Whether `mac` is the MAC of `signed` under `key`, in constant time. */
export function verifyAnnouncementMac(key: Buffer, signed: Buffer, mac: Buffer): boolean {
  return mac.length === MAC_LEN && timingSafeEqual(announcementMac(key, signed), mac);
}
