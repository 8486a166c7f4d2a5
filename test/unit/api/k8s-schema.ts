/**
 * Test-side stand-in for what the API server does with a CRD schema: apply
 * defaults, reject unknown fields, check the OpenAPI keywords (ajv), and run
 * the x-kubernetes-validations CEL rules (@bufbuild/cel, with the Kubernetes
 * `isIP`/`isCIDR` functions added). Paths are reported as zod paths are
 * formatted (spec.filter.ports[0].endPort) so the two can be compared.
 */
import { Ajv } from 'ajv';
import { CelScalar, celFunc, isCelError, parse, plan, celEnv } from '@bufbuild/cel';
import { isCIDR, isIPAddress } from '../../../src/api/netaddr.ts';
import { KUBERNETES_EXTENSIONS, type JsonSchema } from '../../../src/api/crd.ts';

type Json = unknown;

export interface CelRule {
  rule: string;
  message: string;
  fieldPath?: string;
}

/** The Kubernetes CEL library functions our rules use, with Kubernetes' semantics. */
export const kubernetesFuncs = [
  celFunc('isIP', [CelScalar.STRING], CelScalar.BOOL, (s) => isIPAddress(s)),
  celFunc('isCIDR', [CelScalar.STRING], CelScalar.BOOL, (s) => isCIDR(s)),
];

const env = celEnv({ funcs: kubernetesFuncs });

/** Functions (and macro expansions) of the CEL subset the embedded API server implements. */
export const ALLOWED_CEL_FUNCTIONS = new Set([
  '_&&_',
  '_||_',
  '!_',
  '_?_:_',
  '_==_',
  '_!=_',
  '_<_',
  '_<=_',
  '_>_',
  '_>=_',
  '@in',
  'size',
  'matches',
  'startsWith',
  'isIP',
  'isCIDR',
  'ip',
  'cidr',
  // Macros: parse() also records the call as written (sourceInfo.macroCalls).
  'has',
  'all',
  'exists',
  '@not_strictly_false', // emitted by the all()/exists() expansion
]);

/** Every function a rule calls (has() is a test-only select, all()/exists() comprehensions). */
export function celFunctions(rule: string): string[] {
  const found = new Set<string>();
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) return v.forEach(visit);
    if (typeof v !== 'object' || v === null) return;
    const o = v as Record<string, unknown>;
    if (o.$typeName === 'cel.expr.Expr.Call' && typeof o.function === 'string') found.add(o.function);
    for (const child of Object.values(o)) visit(child);
  };
  visit(parse(rule));
  return [...found];
}

export function formatJsonPath(segments: readonly (string | number)[]): string {
  let out = '';
  for (const s of segments) out += typeof s === 'number' ? `[${s}]` : out === '' ? s : `.${s}`;
  return out;
}

/** Walk schema and value together; `visit` sees every value with its schema node. */
function walk(schema: JsonSchema, value: Json, path: (string | number)[], visit: (s: JsonSchema, v: Json, p: (string | number)[]) => void): void {
  visit(schema, value, path);
  if (Array.isArray(value) && schema.items) {
    value.forEach((item, i) => walk(schema.items as JsonSchema, item, [...path, i], visit));
  } else if (isObject(value)) {
    const props = (schema.properties ?? {}) as Record<string, JsonSchema>;
    for (const [k, v] of Object.entries(value)) {
      const child = props[k] ?? (isObject(schema.additionalProperties) ? (schema.additionalProperties as JsonSchema) : undefined);
      if (child) walk(child, v, [...path, k], visit);
    }
  }
}

/** Structural defaulting: a missing property with a default gets it, then its own children are defaulted. */
export function applyDefaults(schema: JsonSchema, value: Json): Json {
  if (Array.isArray(value)) return schema.items ? value.map((v) => applyDefaults(schema.items as JsonSchema, v)) : value;
  if (!isObject(value)) return value;
  const props = (schema.properties ?? {}) as Record<string, JsonSchema>;
  const out: Record<string, Json> = { ...value };
  for (const [k, child] of Object.entries(props)) {
    if (out[k] === undefined && child.default !== undefined) out[k] = structuredClone(child.default);
    if (out[k] !== undefined) out[k] = applyDefaults(child, out[k]);
  }
  return out;
}

/** Fields the schema does not know (the API server prunes them; strict field validation refuses them). */
export function unknownFields(schema: JsonSchema, value: Json): string[] {
  const found: string[] = [];
  walk(schema, value, [], (s, v, p) => {
    if (!isObject(v) || s.additionalProperties || s['x-kubernetes-preserve-unknown-fields']) return;
    if (p.length === 1 && p[0] === 'metadata') return; // ObjectMeta has its own validation
    const props = (s.properties ?? {}) as Record<string, JsonSchema>;
    for (const k of Object.keys(v)) if (!(k in props)) found.push(formatJsonPath([...p, k]));
  });
  return found;
}

const ajv = new Ajv({ allErrors: true, strict: true });
ajv.addVocabulary(KUBERNETES_EXTENSIONS);
ajv.addFormat('int64', { type: 'number', validate: (n: number) => Number.isSafeInteger(n) });
ajv.addFormat('date-time', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/);

/** Paths where the OpenAPI keywords (type, enum, bounds, pattern, required) fail. */
export function keywordErrors(schema: JsonSchema, value: Json): string[] {
  const validate = ajv.compile(schema);
  if (validate(value)) return [];
  return (validate.errors ?? []).map((e) => {
    const segs: (string | number)[] = e.instancePath
      .split('/')
      .slice(1)
      .map((s) => (/^\d+$/.test(s) ? Number(s) : s.replace(/~1/g, '/').replace(/~0/g, '~')));
    if (e.keyword === 'required') segs.push(String((e.params as { missingProperty: string }).missingProperty));
    return formatJsonPath(segs);
  });
}

export interface CelViolation {
  path: string;
  message: string;
  rule: string;
}

/** Run every CEL rule on every value it applies to; each failure (or evaluation error) is a violation. */
export function celViolations(schema: JsonSchema, value: Json, onRule?: (rule: string, passed: boolean) => void): CelViolation[] {
  const out: CelViolation[] = [];
  walk(schema, value, [], (s, v, p) => {
    for (const r of (s['x-kubernetes-validations'] ?? []) as CelRule[]) {
      const result = plan(env, parse(r.rule))({ self: toCel(s, v) } as never);
      const passed = result === true;
      onRule?.(r.rule, passed);
      if (passed) continue;
      const field = (r.fieldPath ?? '').split('.').filter(Boolean);
      const message = isCelError(result) ? `evaluation error: ${String(result.message)}` : r.message;
      out.push({ path: formatJsonPath([...p, ...field]), message, rule: r.rule });
    }
  });
  return out;
}

/** JSON to CEL input: integer-typed fields become CEL ints (bigint), as the API server types them. */
export function toCel(schema: JsonSchema, value: Json): Json {
  if (schema.type === 'integer' && Number.isInteger(value)) return BigInt(value as number);
  if (Array.isArray(value)) return value.map((v) => toCel((schema.items ?? {}) as JsonSchema, v));
  if (isObject(value)) {
    const props = (schema.properties ?? {}) as Record<string, JsonSchema>;
    const extra = isObject(schema.additionalProperties) ? (schema.additionalProperties as JsonSchema) : {};
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toCel(props[k] ?? extra, v)]));
  }
  return value;
}

/** Visit every schema node with its path (properties by name, items as [*], map values as .*). */
export function eachSchemaNode(schema: JsonSchema, visit: (node: JsonSchema, path: string) => void, path = ''): void {
  visit(schema, path || '(root)');
  for (const [k, child] of Object.entries((schema.properties ?? {}) as Record<string, JsonSchema>)) eachSchemaNode(child, visit, `${path}.${k}`);
  if (isObject(schema.items)) eachSchemaNode(schema.items as JsonSchema, visit, `${path}[*]`);
  if (isObject(schema.additionalProperties)) eachSchemaNode(schema.additionalProperties as JsonSchema, visit, `${path}.*`);
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
