/**
 * `-l SELECTOR` as kubectl takes it (the label selector string syntax of
 * apimachinery) turned into a LabelSelector object for a SniffPolicy:
 *
 *   app=web  app==web  app!=web  app in (a,b)  app notin (a,b)  app  !app
 *
 * joined by commas. `!=` has no matchLabels form: it becomes NotIn.
 */
import type { LabelSelector } from '../api/index.ts';
import { ExitCode, UserError } from '../util/errors.ts';

const KEY = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;

function bad(s: string, why: string): UserError {
  return new UserError(`-l: cannot read the selector "${s}": ${why}`, {
    exitCode: ExitCode.usage,
    hint: 'e.g. -l app=web,tier!=db or -l "env in (prod,staging),!canary"',
  });
}

/** Splits on commas outside parentheses. */
function terms(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (depth < 0) throw bad(s, 'unbalanced parentheses');
    if (ch === ',' && depth === 0) {
      out.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  if (depth !== 0) throw bad(s, 'unbalanced parentheses');
  out.push(cur.trim());
  return out;
}

export function parseSelector(s: string): LabelSelector {
  const matchLabels: Record<string, string> = {};
  const matchExpressions: NonNullable<LabelSelector['matchExpressions']> = [];
  const key = (k: string): string => {
    if (!KEY.test(k) || k.length > 317) throw bad(s, `"${k}" is not a label key`);
    return k;
  };
  const value = (v: string): string => {
    if (!VALUE.test(v) || v.length > 63) throw bad(s, `"${v}" is not a label value`);
    return v;
  };
  if (s.trim() === '') throw bad(s, 'it is empty');
  for (const t of terms(s)) {
    let m: RegExpExecArray | null;
    if (t === '') throw bad(s, 'an empty term');
    if ((m = /^(\S+?)\s*(==|=|!=)\s*(\S*)$/.exec(t))) {
      const k = key(m[1]!);
      const v = value(m[3]!);
      if (m[2] === '!=') matchExpressions.push({ key: k, operator: 'NotIn', values: [v] });
      else if (k in matchLabels && matchLabels[k] !== v) throw bad(s, `"${k}" cannot equal two values`);
      else matchLabels[k] = v;
    } else if ((m = /^(\S+)\s+(in|notin)\s*\(([^)]*)\)$/.exec(t))) {
      const values = m[3]!.split(',').map((v) => value(v.trim()));
      if (values.length === 0 || values.some((v) => v === '')) throw bad(s, `"${t}" lists no values`);
      matchExpressions.push({ key: key(m[1]!), operator: m[2] === 'in' ? 'In' : 'NotIn', values });
    } else if ((m = /^!\s*(\S+)$/.exec(t))) {
      matchExpressions.push({ key: key(m[1]!), operator: 'DoesNotExist' });
    } else if (KEY.test(t)) {
      matchExpressions.push({ key: t, operator: 'Exists' });
    } else {
      throw bad(s, `"${t}" is not a requirement`);
    }
  }
  return {
    ...(Object.keys(matchLabels).length ? { matchLabels } : {}),
    ...(matchExpressions.length ? { matchExpressions } : {}),
  };
}
