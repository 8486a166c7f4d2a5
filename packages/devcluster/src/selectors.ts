/**
 * Label and field selectors with the grammar and semantics of
 * k8s.io/apimachinery/pkg/labels and pkg/fields: `!=` and `notin` match
 * objects without the label, `in ()` sets, `!key`, numeric `<`/`>`, and
 * escaped field selector values (`\,`, `\=`, `\\`).
 */
import { badRequest } from './errors.ts';
import { validateLabelValue, validateQualifiedName } from './objects.ts';

type LabelOp = 'Exists' | 'DoesNotExist' | 'Equals' | 'NotEquals' | 'In' | 'NotIn' | 'Gt' | 'Lt';

export interface LabelRequirement {
  key: string;
  op: LabelOp;
  values: string[];
}

export type LabelSelector = LabelRequirement[];

type Token =
  | { kind: 'id'; text: string }
  | { kind: 'op'; text: '!' | '=' | '==' | '!=' | '(' | ')' | ',' | '<' | '>' }
  | { kind: 'end' };

const special = new Set(['!', '=', '(', ')', ',', '<', '>']);

function tokenize(s: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === '!' && s[i + 1] === '=') {
      out.push({ kind: 'op', text: '!=' });
      i += 2;
    } else if (c === '=' && s[i + 1] === '=') {
      out.push({ kind: 'op', text: '==' });
      i += 2;
    } else if (special.has(c)) {
      out.push({ kind: 'op', text: c as '!' | '=' | '(' | ')' | ',' | '<' | '>' });
      i++;
    } else {
      let j = i;
      while (j < s.length && !special.has(s[j]!) && !/\s/.test(s[j]!)) j++;
      out.push({ kind: 'id', text: s.slice(i, j) });
      i = j;
    }
  }
  out.push({ kind: 'end' });
  return out;
}

function describe(t: Token): string {
  return t.kind === 'end' ? 'end of string' : `'${t.text}'`;
}

export function parseLabelSelector(input: string | undefined | null): LabelSelector {
  if (!input || input.trim() === '') return [];
  const toks = tokenize(input);
  let pos = 0;
  const peek = () => toks[pos]!;
  const next = () => toks[pos++]!;
  const fail = (msg: string): never => {
    throw badRequest(`unable to parse requirement: ${msg}`);
  };
  const reqs: LabelRequirement[] = [];

  const checkKey = (key: string) => {
    const errs = validateQualifiedName(key);
    if (errs.length) fail(`<nil>: Invalid value: ${JSON.stringify(key)}: ${errs.join('; ')}`);
  };
  const checkValue = (v: string) => {
    const errs = validateLabelValue(v);
    if (errs.length) fail(`values[0]: Invalid value: ${JSON.stringify(v)}: ${errs.join('; ')}`);
  };

  for (;;) {
    let t = next();
    if (t.kind === 'op' && t.text === '!') {
      t = next();
      if (t.kind !== 'id') fail(`found ${describe(t)}, expected: identifier after '!'`);
      const key = (t as { text: string }).text;
      checkKey(key);
      reqs.push({ key, op: 'DoesNotExist', values: [] });
    } else if (t.kind === 'id') {
      const key = t.text;
      checkKey(key);
      const o = peek();
      if (o.kind === 'end' || (o.kind === 'op' && o.text === ',')) {
        reqs.push({ key, op: 'Exists', values: [] });
      } else if (o.kind === 'op' && (o.text === '=' || o.text === '==' || o.text === '!=')) {
        next();
        const v = peek();
        let value = '';
        if (v.kind === 'id') {
          value = v.text;
          next();
        } else if (!(v.kind === 'end' || (v.kind === 'op' && v.text === ','))) {
          fail(`found ${describe(v)}, expected: identifier`);
        }
        checkValue(value);
        reqs.push({ key, op: o.text === '!=' ? 'NotEquals' : 'Equals', values: [value] });
      } else if (o.kind === 'op' && (o.text === '<' || o.text === '>')) {
        next();
        const v = next();
        if (v.kind !== 'id' || !/^-?\d+$/.test(v.text)) {
          fail(`for 'Gt', 'Lt' operators, the value must be an integer`);
        }
        reqs.push({ key, op: o.text === '<' ? 'Lt' : 'Gt', values: [(v as { text: string }).text] });
      } else if (o.kind === 'id' && (o.text === 'in' || o.text === 'notin')) {
        next();
        const open = next();
        if (!(open.kind === 'op' && open.text === '(')) fail(`found ${describe(open)}, expected: '('`);
        const values: string[] = [];
        for (;;) {
          const v = peek();
          if (v.kind === 'id') {
            values.push(v.text);
            next();
          } else if (v.kind === 'op' && (v.text === ',' || v.text === ')')) {
            // an empty value between separators is the empty string
            values.push('');
          } else {
            fail(`found ${describe(v)}, expected: ',', ')' or identifier`);
          }
          const sep = next();
          if (sep.kind === 'op' && sep.text === ')') break;
          if (!(sep.kind === 'op' && sep.text === ',')) fail(`found ${describe(sep)}, expected: ',' or ')'`);
        }
        // `in ()` is written by nobody on purpose; kube treats `()` as one empty value too.
        for (const v of values) checkValue(v);
        reqs.push({ key, op: o.text === 'in' ? 'In' : 'NotIn', values });
      } else {
        fail(`found ${describe(o)}, expected: in, notin, =, ==, !=, gt, lt`);
      }
    } else {
      fail(`found ${describe(t)}, expected: !, identifier, or 'end of string'`);
    }
    const after = next();
    if (after.kind === 'end') break;
    if (!(after.kind === 'op' && after.text === ',')) fail(`found ${describe(after)}, expected: ',' or 'end of string'`);
  }
  return reqs;
}

export function matchLabels(sel: LabelSelector, labels: Readonly<Record<string, string>> | undefined): boolean {
  for (const r of sel) {
    const has = labels !== undefined && Object.hasOwn(labels, r.key);
    const v = has ? labels[r.key]! : undefined;
    switch (r.op) {
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      case 'Equals':
      case 'In':
        if (!has || !r.values.includes(v!)) return false;
        break;
      case 'NotEquals':
      case 'NotIn':
        if (has && r.values.includes(v!)) return false;
        break;
      case 'Gt':
      case 'Lt': {
        if (!has || !/^-?\d+$/.test(v!)) return false;
        const n = BigInt(v!);
        const bound = BigInt(r.values[0]!);
        if (r.op === 'Gt' ? !(n > bound) : !(n < bound)) return false;
        break;
      }
    }
  }
  return true;
}

export interface FieldRequirement {
  field: string;
  op: '=' | '!=';
  value: string;
}

export type FieldSelector = FieldRequirement[];

/** Splits on an unescaped separator; returns the raw (still escaped) pieces. */
function splitUnescaped(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\\' && i + 1 < s.length) {
      cur += c + s[i + 1];
      i++;
    } else if (c === sep) {
      out.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  out.push(cur);
  return out;
}

function unescapeFieldValue(v: string): string {
  let out = '';
  for (let i = 0; i < v.length; i++) {
    const c = v[i]!;
    if (c === '\\') {
      const n = v[i + 1];
      if (n === undefined || !'\\,='.includes(n)) {
        throw badRequest(`invalid field selector: invalid escape sequence: \\${n ?? ''}`);
      }
      out += n;
      i++;
    } else if (c === ',' || c === '=') {
      throw badRequest(`invalid field selector: unescaped ${c} in value`);
    } else {
      out += c;
    }
  }
  return out;
}

export function parseFieldSelector(input: string | undefined | null): FieldSelector {
  if (!input || input.trim() === '') return [];
  const reqs: FieldRequirement[] = [];
  for (const term of splitUnescaped(input, ',')) {
    if (term === '') continue;
    let m: { field: string; op: '=' | '!='; raw: string } | null = null;
    for (const [op, norm] of [
      ['!=', '!='],
      ['==', '='],
      ['=', '='],
    ] as const) {
      const idx = term.indexOf(op);
      if (idx > 0 && term[idx - 1] !== '\\') {
        m = { field: term.slice(0, idx).trim(), op: norm, raw: term.slice(idx + op.length) };
        break;
      }
    }
    if (!m) throw badRequest(`invalid selector: '${input}'; can't understand '${term}'`);
    reqs.push({ field: m.field, op: m.op, value: unescapeFieldValue(m.raw) });
  }
  return reqs;
}

export function matchFields(sel: FieldSelector, fields: Readonly<Record<string, string>>): boolean {
  for (const r of sel) {
    const v = fields[r.field] ?? '';
    if (r.op === '=' ? v !== r.value : v === r.value) return false;
  }
  return true;
}
