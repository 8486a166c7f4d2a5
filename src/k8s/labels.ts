/**
 * Label selectors (apimachinery semantics), once: matching cached objects,
 * writing the list-call syntax, and reading that syntax as kubectl's -l takes it.
 */
export const SELECTOR_OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const;
export type SelectorOperator = (typeof SELECTOR_OPERATORS)[number];

/** A LabelSelector as objects carry it (an unknown operator matches nothing). */
export interface LabelSelector<Operator extends string = string> {
  matchLabels?: Record<string, string> | undefined;
  matchExpressions?: { key: string; operator: Operator; values?: string[] | undefined }[] | undefined;
}

/** true when @labels satisfy @selector; an empty selector selects everything. */
export function matchesSelector(selector: LabelSelector | undefined, labels: Record<string, string> | undefined): boolean {
  if (!selector) return true;
  const l = labels ?? {};
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (l[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(l, e.key);
    const values = e.values ?? [];
    switch (e.operator) {
      case 'In':
        if (!has || !values.includes(l[e.key]!)) return false;
        break;
      case 'NotIn':
        if (has && values.includes(l[e.key]!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

/** The selector as a list-call labelSelector string. */
export function selectorString(selector: LabelSelector | undefined): string {
  if (!selector) return '';
  const parts = Object.entries(selector.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of selector.matchExpressions ?? []) {
    const vals = (e.values ?? []).join(',');
    if (e.operator === 'In') parts.push(`${e.key} in (${vals})`);
    else if (e.operator === 'NotIn') parts.push(`${e.key} notin (${vals})`);
    else if (e.operator === 'Exists') parts.push(e.key);
    else if (e.operator === 'DoesNotExist') parts.push(`!${e.key}`);
  }
  return parts.join(',');
}

const KEY = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;

/** A selector string that is not one; `why` says what is wrong. */
export class LabelSelectorSyntaxError extends Error {
  readonly why: string;
  constructor(selector: string, why: string) {
    super(`cannot read the selector "${selector}": ${why}`);
    this.name = 'LabelSelectorSyntaxError';
    this.why = why;
  }
}

/** Splits on commas outside parentheses. */
function terms(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (depth < 0) throw new LabelSelectorSyntaxError(s, 'unbalanced parentheses');
    if (ch === ',' && depth === 0) {
      out.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  if (depth !== 0) throw new LabelSelectorSyntaxError(s, 'unbalanced parentheses');
  out.push(cur.trim());
  return out;
}

/**
 * The label selector string syntax (what selectorString writes, what kubectl
 * -l takes) as a LabelSelector:
 *
 *   app=web  app==web  app!=web  app in (a,b)  app notin (a,b)  app  !app
 *
 * joined by commas. `!=` has no matchLabels form: it becomes NotIn.
 */
export function parseLabelSelector(s: string): LabelSelector<SelectorOperator> {
  const matchLabels: Record<string, string> = {};
  const matchExpressions: NonNullable<LabelSelector<SelectorOperator>['matchExpressions']> = [];
  const bad = (why: string) => new LabelSelectorSyntaxError(s, why);
  const key = (k: string): string => {
    if (!KEY.test(k) || k.length > 317) throw bad(`"${k}" is not a label key`);
    return k;
  };
  const value = (v: string): string => {
    if (!VALUE.test(v) || v.length > 63) throw bad(`"${v}" is not a label value`);
    return v;
  };
  if (s.trim() === '') throw bad('it is empty');
  for (const t of terms(s)) {
    let m: RegExpExecArray | null;
    if (t === '') throw bad('an empty term');
    if ((m = /^(\S+?)\s*(==|=|!=)\s*(\S*)$/.exec(t))) {
      const k = key(m[1]!);
      const v = value(m[3]!);
      if (m[2] === '!=') matchExpressions.push({ key: k, operator: 'NotIn', values: [v] });
      else if (k in matchLabels && matchLabels[k] !== v) throw bad(`"${k}" cannot equal two values`);
      else matchLabels[k] = v;
    } else if ((m = /^(\S+)\s+(in|notin)\s*\(([^)]*)\)$/.exec(t))) {
      const values = m[3]!.split(',').map((v) => value(v.trim()));
      if (values.length === 0 || values.some((v) => v === '')) throw bad(`"${t}" lists no values`);
      matchExpressions.push({ key: key(m[1]!), operator: m[2] === 'in' ? 'In' : 'NotIn', values });
    } else if ((m = /^!\s*(\S+)$/.exec(t))) {
      matchExpressions.push({ key: key(m[1]!), operator: 'DoesNotExist' });
    } else if (KEY.test(t)) {
      matchExpressions.push({ key: t, operator: 'Exists' });
    } else {
      throw bad(`"${t}" is not a requirement`);
    }
  }
  return {
    ...(Object.keys(matchLabels).length ? { matchLabels } : {}),
    ...(matchExpressions.length ? { matchExpressions } : {}),
  };
}
