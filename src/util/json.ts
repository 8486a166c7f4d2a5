/** JSON values, once: structural equality and a replacing merge patch (the controller, the agent, the tests' fake API). */
import { byCodePoint } from './compare.ts';

/**
 * Structural equality of JSON values: key order does not matter, a key whose
 * value is undefined counts as absent (the server never sends one, the code
 * building a desired object may). No stringify: comparing does not allocate.
 */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  let na = 0;
  for (const k in ra) {
    if (ra[k] === undefined) continue;
    na++;
    if (!jsonEqual(ra[k], rb[k])) return false;
  }
  let nb = 0;
  for (const k in rb) if (rb[k] !== undefined) nb++;
  return na === nb;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A JSON merge patch (RFC 7386) that sets `next` in full and removes what
 * `prev` had and `next` has not, at any depth of nested objects (a merge
 * patch merges maps, so a key dropped from a nested map needs its null).
 * Values are sent whole rather than diffed: `prev` comes from a cache that
 * may lag, and sending the value is right whatever the server holds.
 */
export function replacingMergePatch(prev: unknown, next: unknown): unknown {
  if (!isPlainObject(next) || !isPlainObject(prev)) return next;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(next)) if (v !== undefined) out[k] = replacingMergePatch(prev[k], v);
  for (const k of Object.keys(prev)) if (!(k in out)) out[k] = null;
  return out;
}

/**
 * JSON text with every object's keys sorted: the same value gives the same
 * text whoever built it (the API server returns keys sorted, objects built
 * here keep their insertion order).
 */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x !== null && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => byCodePoint(a, b))) : x,
  );
}
