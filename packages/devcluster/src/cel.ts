/**
 * x-kubernetes-validations: CEL rules compiled once per CRD version with
 * @bufbuild/cel, plus the parts of the Kubernetes CEL library it lacks —
 * the IP and CIDR functions (`isIP`, `ip`, `isCIDR`, `cidr` and their
 * methods) with the semantics of k8s.io/apiserver/pkg/cel/library: no zones,
 * no IPv4-mapped IPv6, no leading zeros. IP and CIDR values are CEL maps with
 * a private key; they compare equal when their canonical forms do.
 */
import { isIPv4, isIPv6 } from 'node:net';
import {
  celEnv,
  celFunc,
  celMap,
  celMethod,
  CelScalar,
  isCelError,
  listType,
  mapType,
  parse,
  plan,
  type CelFunc,
  type CelMap,
} from '@bufbuild/cel';
import { strings } from '@bufbuild/cel/ext';

// ---- addresses -------------------------------------------------------------

interface Addr {
  family: 4 | 6;
  bytes: number[];
}

function parseIPv4(s: string): number[] | null {
  if (!isIPv4(s)) return null;
  const parts = s.split('.');
  // netip.ParseAddr refuses leading zeros (ambiguous octal).
  if (parts.some((p) => p.length > 1 && p.startsWith('0'))) return null;
  return parts.map(Number);
}

function parseIPv6(s: string): number[] | null {
  if (s.includes('%') || !isIPv6(s)) return null;
  let text = s;
  let tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    const v4 = parseIPv4(text.slice(lastColon + 1));
    if (!v4) return null;
    tail = v4;
    text = text.slice(0, lastColon + 1) + '0:0';
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const groups = (g: string) => (g === '' ? [] : g.split(':').map((x) => parseInt(x, 16)));
  const h = groups(head);
  const r = rest === undefined ? [] : groups(rest);
  const fill = rest === undefined ? [] : new Array<number>(8 - h.length - r.length).fill(0);
  const all = [...h, ...fill, ...r];
  if (all.length !== 8) return null;
  const bytes = all.flatMap((g) => [(g >> 8) & 0xff, g & 0xff]);
  if (tail.length) bytes.splice(12, 4, ...tail);
  return bytes;
}

export function parseAddr(s: string): Addr | null {
  const v4 = parseIPv4(s);
  if (v4) return { family: 4, bytes: v4 };
  const v6 = parseIPv6(s);
  if (!v6) return null;
  const mapped = v6.slice(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff;
  if (mapped) return null;
  return { family: 6, bytes: v6 };
}

export function formatAddr(a: Addr): string {
  if (a.family === 4) return a.bytes.join('.');
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((a.bytes[i]! << 8) | a.bytes[i + 1]!);
  // RFC 5952: compress the longest run (of at least two) of zero groups.
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

interface Prefix {
  addr: Addr;
  bits: number;
}

export function parsePrefix(s: string): Prefix | null {
  const i = s.indexOf('/');
  if (i < 0) return null;
  const addr = parseAddr(s.slice(0, i));
  const bitsText = s.slice(i + 1);
  if (!addr || !/^\d+$/.test(bitsText) || (bitsText.length > 1 && bitsText.startsWith('0'))) return null;
  const bits = Number(bitsText);
  if (bits > (addr.family === 4 ? 32 : 128)) return null;
  return { addr, bits };
}

function masked(p: Prefix): Prefix {
  const bytes = p.addr.bytes.map((b, i) => {
    const keep = Math.max(0, Math.min(8, p.bits - i * 8));
    return b & ((0xff << (8 - keep)) & 0xff);
  });
  return { addr: { family: p.addr.family, bytes }, bits: p.bits };
}

function contains(p: Prefix, a: Addr): boolean {
  if (p.addr.family !== a.family) return false;
  const m = masked(p);
  return deepBytesEqual(masked({ addr: a, bits: p.bits }).addr.bytes, m.addr.bytes);
}

function deepBytesEqual(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// ---- CEL values for ip and cidr -----------------------------------------------

const IP_KEY = '__k8s_ip__';
const CIDR_KEY = '__k8s_cidr__';
const OPAQUE = mapType(CelScalar.STRING, CelScalar.DYN);

function ipValue(a: Addr): CelMap {
  return celMap(new Map([[IP_KEY, formatAddr(a)]]));
}
function cidrValue(p: Prefix): CelMap {
  return celMap(new Map([[CIDR_KEY, `${formatAddr(p.addr)}/${p.bits}`]]));
}
function ipOf(m: CelMap): Addr {
  const s = m.get(IP_KEY);
  const a = typeof s === 'string' ? parseAddr(s) : null;
  if (!a) throw new Error('no such overload: not an IP');
  return a;
}
function cidrOf(m: CelMap): Prefix {
  const s = m.get(CIDR_KEY);
  const p = typeof s === 'string' ? parsePrefix(s) : null;
  if (!p) throw new Error('no such overload: not a CIDR');
  return p;
}

function mustIP(s: string): Addr {
  const a = parseAddr(s);
  if (!a) throw new Error(`IP Address "${s}" parse error during conversion from string: ParseAddr("${s}"): unable to parse IP`);
  return a;
}
function mustCIDR(s: string): Prefix {
  const p = parsePrefix(s);
  if (!p) throw new Error(`network address parse error during conversion from string: netip.ParsePrefix("${s}"): invalid prefix`);
  return p;
}

function isLoopback(a: Addr): boolean {
  return a.family === 4 ? a.bytes[0] === 127 : a.bytes.slice(0, 15).every((b) => b === 0) && a.bytes[15] === 1;
}
function isUnspecified(a: Addr): boolean {
  return a.bytes.every((b) => b === 0);
}
function isLinkLocalUnicast(a: Addr): boolean {
  return a.family === 4 ? a.bytes[0] === 169 && a.bytes[1] === 254 : a.bytes[0] === 0xfe && (a.bytes[1]! & 0xc0) === 0x80;
}
function isLinkLocalMulticast(a: Addr): boolean {
  return a.family === 4
    ? a.bytes[0] === 224 && a.bytes[1] === 0 && a.bytes[2] === 0
    : a.bytes[0] === 0xff && (a.bytes[1]! & 0x0f) === 0x02;
}
function isMulticast(a: Addr): boolean {
  return a.family === 4 ? (a.bytes[0]! & 0xf0) === 0xe0 : a.bytes[0] === 0xff;
}
function isGlobalUnicast(a: Addr): boolean {
  if (a.family === 4 && a.bytes.every((b) => b === 255)) return false;
  return !isUnspecified(a) && !isLoopback(a) && !isMulticast(a) && !isLinkLocalUnicast(a);
}

const S = CelScalar.STRING;
const B = CelScalar.BOOL;
const I = CelScalar.INT;

/** The Kubernetes CEL library functions podtap's rules (and common CRDs) use. */
export const kubernetesFunctions: CelFunc[] = [
  celFunc('isIP', [S], B, (s) => parseAddr(s) !== null),
  celFunc('ip', [S], OPAQUE, (s) => ipValue(mustIP(s))),
  celMethod('family', OPAQUE, [], I, function () {
    return BigInt(ipOf(this).family);
  }),
  celMethod('isUnspecified', OPAQUE, [], B, function () {
    return isUnspecified(ipOf(this));
  }),
  celMethod('isLoopback', OPAQUE, [], B, function () {
    return isLoopback(ipOf(this));
  }),
  celMethod('isLinkLocalMulticast', OPAQUE, [], B, function () {
    return isLinkLocalMulticast(ipOf(this));
  }),
  celMethod('isLinkLocalUnicast', OPAQUE, [], B, function () {
    return isLinkLocalUnicast(ipOf(this));
  }),
  celMethod('isGlobalUnicast', OPAQUE, [], B, function () {
    return isGlobalUnicast(ipOf(this));
  }),
  celFunc('isCIDR', [S], B, (s) => parsePrefix(s) !== null),
  celFunc('cidr', [S], OPAQUE, (s) => cidrValue(mustCIDR(s))),
  celMethod('ip', OPAQUE, [], OPAQUE, function () {
    return ipValue(cidrOf(this).addr);
  }),
  celMethod('prefixLength', OPAQUE, [], I, function () {
    return BigInt(cidrOf(this).bits);
  }),
  celMethod('masked', OPAQUE, [], OPAQUE, function () {
    return cidrValue(masked(cidrOf(this)));
  }),
  celMethod('containsIP', OPAQUE, [S], B, function (s) {
    return contains(cidrOf(this), mustIP(s));
  }),
  celMethod('containsIP', OPAQUE, [OPAQUE], B, function (ip) {
    return contains(cidrOf(this), ipOf(ip));
  }),
  celMethod('containsCIDR', OPAQUE, [S], B, function (s) {
    const inner = mustCIDR(s);
    const outer = cidrOf(this);
    return inner.bits >= outer.bits && contains(outer, inner.addr);
  }),
  celMethod('containsCIDR', OPAQUE, [OPAQUE], B, function (c) {
    const inner = cidrOf(c);
    const outer = cidrOf(this);
    return inner.bits >= outer.bits && contains(outer, inner.addr);
  }),
  // k8s lists library (the commonly used part).
  celMethod('isSorted', listType(CelScalar.DYN), [], B, function () {
    const xs = [...this] as unknown[];
    for (let i = 1; i < xs.length; i++) if ((xs[i - 1] as number) > (xs[i] as number)) return false;
    return true;
  }),
  celMethod('indexOf', listType(CelScalar.DYN), [CelScalar.DYN], I, function (v) {
    return BigInt([...this].findIndex((x) => x === v));
  }),
];

const env = celEnv({ funcs: [...kubernetesFunctions, ...strings] });

export interface CompiledRule {
  rule: string;
  message?: string;
  messageExpression?: string;
  fieldPath?: string;
  reason?: string;
  usesOldSelf: boolean;
  program: (vars: Record<string, unknown>) => unknown;
  messageProgram?: (vars: Record<string, unknown>) => unknown;
}

export class CelCompileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CelCompileError';
  }
}

function compileExpr(text: string): (vars: Record<string, unknown>) => unknown {
  let parsed;
  try {
    parsed = parse(text);
  } catch (err) {
    throw new CelCompileError(`compilation failed: ERROR: ${err instanceof Error ? err.message : String(err)}`);
  }
  const p = plan(env, parsed) as (ctx: Record<string, unknown>) => unknown;
  return (vars) => p(vars);
}

export function compileRule(spec: {
  rule: string;
  message?: string;
  messageExpression?: string;
  fieldPath?: string;
  reason?: string;
}): CompiledRule {
  const compiled: CompiledRule = {
    rule: spec.rule,
    usesOldSelf: /\boldSelf\b/.test(spec.rule),
    program: compileExpr(spec.rule),
  };
  if (spec.message !== undefined) compiled.message = spec.message;
  if (spec.fieldPath !== undefined) compiled.fieldPath = spec.fieldPath;
  if (spec.reason !== undefined) compiled.reason = spec.reason;
  if (spec.messageExpression !== undefined) {
    compiled.messageExpression = spec.messageExpression;
    compiled.messageProgram = compileExpr(spec.messageExpression);
  }
  return compiled;
}

export type RuleOutcome = { ok: true } | { ok: false; message: string };

function ruleErrorString(r: CompiledRule): string {
  return r.message?.trim() ? r.message.trim() : `failed rule: ${r.rule}`;
}

export function evaluateRule(r: CompiledRule, self: unknown, oldSelf: unknown): RuleOutcome {
  const vars: Record<string, unknown> = { self };
  if (r.usesOldSelf) vars.oldSelf = oldSelf;
  let result: unknown;
  try {
    result = r.program(vars);
  } catch (err) {
    return { ok: false, message: `${ruleErrorString(r)}: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (isCelError(result)) return { ok: false, message: `${ruleErrorString(r)}: ${result.message}` };
  if (result === true) return { ok: true };
  if (result !== false) return { ok: false, message: `${ruleErrorString(r)}: rule did not evaluate to a bool` };
  if (r.messageProgram) {
    try {
      const m = r.messageProgram(vars);
      if (typeof m === 'string' && m.trim() !== '' && !m.includes('\n')) return { ok: false, message: m };
    } catch {
      // a failing messageExpression falls back to message, as kube does
    }
  }
  return { ok: false, message: ruleErrorString(r) };
}
