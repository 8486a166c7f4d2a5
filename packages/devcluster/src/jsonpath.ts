/**
 * The subset of Kubernetes JSONPath (k8s.io/client-go/util/jsonpath) that
 * CRD additionalPrinterColumns use: `.a.b`, `['a.b']`, `[0]`, `[-1]`,
 * `[*]`, `[1:3]`, `..name` and filters such as
 * `[?(@.type=="Ready")]`, `[?(@.port > 80)]`, `[?(@.name)]`.
 * Evaluation returns every match, in document order.
 */
import { isPlainObject } from './objects.ts';

type Step =
  | { kind: 'field'; name: string }
  | { kind: 'recursive'; name: string }
  | { kind: 'index'; index: number }
  | { kind: 'slice'; start: number | undefined; end: number | undefined }
  | { kind: 'wildcard' }
  | { kind: 'filter'; path: Step[]; op: FilterOp | 'exists'; literal: unknown };

type FilterOp = '==' | '!=' | '<' | '>' | '<=' | '>=';

export class JsonPathError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JsonPathError';
  }
}

export interface CompiledPath {
  source: string;
  steps: Step[];
}

export function compileJsonPath(source: string): CompiledPath {
  let s = source.trim();
  // `{.a.b}` templates are accepted; printer columns use the bare form.
  if (s.startsWith('{') && s.endsWith('}')) s = s.slice(1, -1);
  if (s.startsWith('$')) s = s.slice(1);
  const p = new Parser(s);
  const steps = p.parseSteps(false);
  if (!p.done()) throw new JsonPathError(`unrecognized character in action: ${s.slice(p.pos)}`);
  return { source, steps };
}

class Parser {
  pos = 0;
  readonly s: string;
  constructor(s: string) {
    this.s = s;
  }
  done(): boolean {
    return this.pos >= this.s.length;
  }
  private peek(n = 0): string {
    return this.s[this.pos + n] ?? '';
  }
  private ident(): string {
    const start = this.pos;
    while (!this.done() && /[A-Za-z0-9_\-\/\\]/.test(this.peek())) {
      if (this.peek() === '\\') this.pos++;
      this.pos++;
    }
    return this.s.slice(start, this.pos).replace(/\\(.)/g, '$1');
  }
  private skipSpace(): void {
    while (this.peek() === ' ') this.pos++;
  }

  /** In a filter, steps stop at an operator or the closing parenthesis. */
  parseSteps(inFilter: boolean): Step[] {
    const steps: Step[] = [];
    while (!this.done()) {
      const c = this.peek();
      if (c === '.' && this.peek(1) === '.') {
        this.pos += 2;
        const name = this.ident();
        if (!name) throw new JsonPathError('expected a field name after ..');
        steps.push({ kind: 'recursive', name });
      } else if (c === '.') {
        this.pos++;
        if (this.peek() === '*') {
          this.pos++;
          steps.push({ kind: 'wildcard' });
          continue;
        }
        const name = this.ident();
        if (!name) {
          if (this.done() && steps.length === 0) return steps; // "." is the whole object
          throw new JsonPathError(`invalid field name at ${this.pos}`);
        }
        steps.push({ kind: 'field', name });
      } else if (c === '[') {
        steps.push(this.bracket());
      } else if (inFilter) {
        break;
      } else {
        throw new JsonPathError(`unrecognized character in action: ${c}`);
      }
    }
    return steps;
  }

  private bracket(): Step {
    this.pos++; // [
    this.skipSpace();
    const c = this.peek();
    let step: Step;
    if (c === '*') {
      this.pos++;
      step = { kind: 'wildcard' };
    } else if (c === "'" || c === '"') {
      step = { kind: 'field', name: this.quoted() };
    } else if (c === '?') {
      this.pos++;
      if (this.peek() !== '(') throw new JsonPathError('expected ( after ?');
      this.pos++;
      step = this.filter();
      if (this.peek() !== ')') throw new JsonPathError('unclosed filter');
      this.pos++;
    } else {
      const m = /^(-?\d*)(?::(-?\d*))?/.exec(this.s.slice(this.pos));
      if (!m || m[0] === '') throw new JsonPathError(`invalid array index at ${this.pos}`);
      this.pos += m[0].length;
      if (m[2] !== undefined) {
        step = {
          kind: 'slice',
          start: m[1] ? Number(m[1]) : undefined,
          end: m[2] ? Number(m[2]) : undefined,
        };
      } else {
        step = { kind: 'index', index: Number(m[1]) };
      }
    }
    this.skipSpace();
    if (this.peek() !== ']') throw new JsonPathError(`unterminated array at ${this.pos}`);
    this.pos++;
    return step;
  }

  private quoted(): string {
    const q = this.peek();
    this.pos++;
    let out = '';
    while (!this.done() && this.peek() !== q) {
      if (this.peek() === '\\') this.pos++;
      out += this.peek();
      this.pos++;
    }
    if (this.done()) throw new JsonPathError('unterminated string');
    this.pos++;
    return out;
  }

  private filter(): Step {
    this.skipSpace();
    if (this.peek() !== '@') throw new JsonPathError('filter must start with @');
    this.pos++;
    const path = this.parseSteps(true);
    this.skipSpace();
    const m = /^(==|!=|<=|>=|<|>)/.exec(this.s.slice(this.pos));
    if (!m) return { kind: 'filter', path, op: 'exists', literal: undefined };
    this.pos += m[0].length;
    this.skipSpace();
    let literal: unknown;
    const c = this.peek();
    if (c === '"' || c === "'") {
      literal = this.quoted();
    } else {
      const lit = /^(-?\d+(\.\d+)?|true|false|null)/.exec(this.s.slice(this.pos));
      if (!lit) throw new JsonPathError(`invalid filter literal at ${this.pos}`);
      this.pos += lit[0].length;
      literal = JSON.parse(lit[0]);
    }
    this.skipSpace();
    return { kind: 'filter', path, op: m[0] as FilterOp, literal };
  }
}

function children(v: unknown): unknown[] {
  if (Array.isArray(v)) return v;
  if (isPlainObject(v)) return Object.values(v);
  return [];
}

function compare(a: unknown, op: FilterOp, b: unknown): boolean {
  switch (op) {
    case '==':
      return a === b;
    case '!=':
      return a !== b;
    default: {
      if (typeof a !== typeof b || (typeof a !== 'number' && typeof a !== 'string')) return false;
      const x = a as number | string;
      const y = b as number | string;
      return op === '<' ? x < y : op === '>' ? x > y : op === '<=' ? x <= y : x >= y;
    }
  }
}

function applyStep(values: unknown[], step: Step): unknown[] {
  const out: unknown[] = [];
  for (const v of values) {
    switch (step.kind) {
      case 'field':
        if (isPlainObject(v) && Object.hasOwn(v, step.name)) out.push(v[step.name]);
        break;
      case 'recursive': {
        const walk = (x: unknown) => {
          if (isPlainObject(x) && Object.hasOwn(x, step.name)) out.push(x[step.name]);
          for (const c of children(x)) walk(c);
        };
        walk(v);
        break;
      }
      case 'index':
        if (Array.isArray(v)) {
          const i = step.index < 0 ? v.length + step.index : step.index;
          if (i >= 0 && i < v.length) out.push(v[i]);
        }
        break;
      case 'slice':
        if (Array.isArray(v)) out.push(...v.slice(step.start, step.end));
        break;
      case 'wildcard':
        out.push(...children(v));
        break;
      case 'filter':
        for (const item of children(v)) {
          const found = evaluateSteps(item, step.path);
          if (step.op === 'exists') {
            if (found.length > 0) out.push(item);
          } else if (found.some((f) => compare(f, step.op as FilterOp, step.literal))) {
            out.push(item);
          }
        }
        break;
    }
  }
  return out;
}

function evaluateSteps(root: unknown, steps: Step[]): unknown[] {
  let cur: unknown[] = [root];
  for (const s of steps) cur = applyStep(cur, s);
  return cur;
}

export function evaluateJsonPath(path: CompiledPath, root: unknown): unknown[] {
  return evaluateSteps(root, path.steps);
}
