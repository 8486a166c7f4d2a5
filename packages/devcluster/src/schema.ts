/**
 * Structural OpenAPI v3 schemas as apiextensions-apiserver applies them to
 * custom resources, in its order: prune unknown fields (reported for
 * fieldValidation=Strict/Warn), drop non-nullable nulls, default, then
 * validate — OpenAPI keywords first, then x-kubernetes-validations rules —
 * with field paths and messages in kube-openapi's words
 * (`spec.ports[0].port: Invalid value: 70000: spec.ports[0].port in body
 * should be less than or equal to 65535`).
 *
 * One walk of the schema does all of it. ajv was considered: its strict mode
 * refuses the x-kubernetes-* keywords, it cannot prune by structural rules or
 * correlate old values for transition rules and ratcheting, and mapping its
 * error objects to kube's paths and texts takes as much code as the checks.
 */
import { Buffer } from 'node:buffer';
import type { FieldError } from './errors.ts';
import { compileRule, evaluateRule, type CompiledRule } from './cel.ts';
import { parseAddr, parsePrefix } from './cel.ts';
import { clone, deepEqual, isPlainObject } from './objects.ts';

export interface SchemaNode {
  type?: string;
  description?: string;
  properties?: Record<string, SchemaNode>;
  additionalProperties?: SchemaNode | boolean;
  items?: SchemaNode;
  required?: string[];
  enum?: unknown[];
  default?: unknown;
  nullable?: boolean;
  format?: string;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  exclusiveMaximum?: boolean;
  multipleOf?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  uniqueItems?: boolean;
  minProperties?: number;
  maxProperties?: number;
  allOf?: SchemaNode[];
  anyOf?: SchemaNode[];
  oneOf?: SchemaNode[];
  not?: SchemaNode;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-int-or-string'?: boolean;
  'x-kubernetes-embedded-resource'?: boolean;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-map-type'?: 'atomic' | 'granular';
  'x-kubernetes-validations'?: {
    rule: string;
    message?: string;
    messageExpression?: string;
    fieldPath?: string;
    reason?: string;
    optionalOldSelf?: boolean;
  }[];
}

// ---- paths -----------------------------------------------------------------

export function childPath(path: string, key: string): string {
  if (!path) return key;
  return /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) ? `${path}.${key}` : `${path}[${key}]`;
}

export function indexPath(path: string, i: number): string {
  return `${path}[${i}]`;
}

/** CEL fieldPath (`.endPort`, `.a['b.c']`, `.xs[0]`) appended to a node path. */
function joinFieldPath(base: string, fieldPath: string): string {
  let out = base;
  const re = /\.([A-Za-z_][A-Za-z0-9_-]*)|\['([^']*)'\]|\[(\d+)\]/gy;
  let m: RegExpExecArray | null;
  while ((m = re.exec(fieldPath)) !== null) {
    if (m[1] !== undefined) out = out ? `${out}.${m[1]}` : m[1];
    else if (m[2] !== undefined) out = childPath(out, m[2]);
    else out = indexPath(out, Number(m[3]));
  }
  return out;
}

// ---- metadata ----------------------------------------------------------------

const objectMetaFields = new Set([
  'name',
  'generateName',
  'namespace',
  'selfLink',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'labels',
  'annotations',
  'ownerReferences',
  'finalizers',
  'managedFields',
]);

/**
 * ObjectMeta is a Go struct for every kind: fields it does not declare are
 * dropped on decode (and reported under Strict field validation).
 */
export function pruneMetadata(obj: Record<string, unknown>): string[] {
  const meta = obj.metadata;
  if (!isPlainObject(meta)) return [];
  const unknown: string[] = [];
  for (const k of Object.keys(meta)) {
    if (!objectMetaFields.has(k)) {
      unknown.push(`metadata.${k}`);
      delete meta[k];
    }
  }
  return unknown;
}

// ---- the compiled schema ---------------------------------------------------------

interface RuleSite {
  node: SchemaNode;
  rules: CompiledRule[];
}

export class SchemaCompileError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.name = 'SchemaCompileError';
    this.field = field;
  }
}

export class StructuralSchema {
  readonly root: SchemaNode;
  private readonly rules = new Map<SchemaNode, RuleSite>();
  private readonly patterns = new Map<string, RegExp>();

  /** Compiles every CEL rule and regex pattern; throws SchemaCompileError naming the schema path. */
  constructor(root: SchemaNode, schemaPath = 'openAPIV3Schema') {
    this.root = root;
    this.compile(root, schemaPath);
  }

  private compile(node: SchemaNode, path: string): void {
    if (!isPlainObject(node)) return;
    const vs = node['x-kubernetes-validations'];
    if (Array.isArray(vs) && vs.length > 0) {
      const rules = vs.map((v, i) => {
        const p = `${path}.x-kubernetes-validations[${i}]`;
        if (typeof v?.rule !== 'string' || v.rule.trim() === '') throw new SchemaCompileError(`${p}.rule`, 'Required value');
        if (v.reason !== undefined && !['FieldValueInvalid', 'FieldValueForbidden', 'FieldValueRequired', 'FieldValueDuplicate'].includes(v.reason)) {
          throw new SchemaCompileError(`${p}.reason`, `Unsupported value: ${JSON.stringify(v.reason)}: supported values: "FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"`);
        }
        try {
          return compileRule(v);
        } catch (err) {
          throw new SchemaCompileError(`${p}.rule`, `Invalid value: ${JSON.stringify(v.rule)}: ${(err as Error).message}`);
        }
      });
      this.rules.set(node, { node, rules });
    }
    if (typeof node.pattern === 'string') {
      try {
        this.patterns.set(node.pattern, new RegExp(node.pattern, 'u'));
      } catch (err) {
        throw new SchemaCompileError(`${path}.pattern`, `Invalid value: ${JSON.stringify(node.pattern)}: ${(err as Error).message}`);
      }
    }
    for (const [k, child] of Object.entries(node.properties ?? {})) this.compile(child, `${path}.properties[${k}]`);
    if (isPlainObject(node.additionalProperties)) this.compile(node.additionalProperties as SchemaNode, `${path}.additionalProperties`);
    if (node.items) this.compile(node.items, `${path}.items`);
    for (const key of ['allOf', 'anyOf', 'oneOf'] as const) {
      const list: SchemaNode[] = (node as SchemaNode)[key] ?? [];
      list.forEach((c, i) => this.compile(c, `${path}.${key}[${i}]`));
    }
  }

  /** Removes fields the schema does not declare; returns their paths. Mutates `obj`. */
  prune(obj: Record<string, unknown>): string[] {
    const unknown: string[] = [];
    this.pruneNode(obj, this.root, '', unknown, true);
    return unknown;
  }

  private pruneNode(v: unknown, s: SchemaNode | undefined, path: string, out: string[], root: boolean): void {
    if (!s) return;
    if (Array.isArray(v)) {
      v.forEach((item, i) => this.pruneNode(item, s.items, indexPath(path, i), out, false));
      return;
    }
    if (!isPlainObject(v)) return;
    const preserve = s['x-kubernetes-preserve-unknown-fields'] === true;
    const embedded = s['x-kubernetes-embedded-resource'] === true;
    const ap = s.additionalProperties;
    for (const key of Object.keys(v)) {
      const p = childPath(path, key);
      if ((root || embedded) && (key === 'apiVersion' || key === 'kind')) continue;
      if ((root || embedded) && key === 'metadata') continue;
      const prop = s.properties?.[key];
      if (prop) this.pruneNode(v[key], prop, p, out, false);
      else if (isPlainObject(ap)) this.pruneNode(v[key], ap as SchemaNode, p, out, false);
      else if (ap === true || preserve) continue;
      else {
        delete v[key];
        out.push(p);
      }
    }
  }

  /** Applies `default`s and drops nulls of non-nullable fields that have none. Mutates `obj`. */
  applyDefaults(obj: Record<string, unknown>): void {
    this.defaultNode(obj, this.root);
  }

  private defaultNode(v: unknown, s: SchemaNode | undefined): void {
    if (!s) return;
    if (Array.isArray(v)) {
      for (const item of v) this.defaultNode(item, s.items);
      return;
    }
    if (!isPlainObject(v)) return;
    for (const [k, ps] of Object.entries(s.properties ?? {})) {
      const present = Object.hasOwn(v, k);
      if (present && v[k] === null && !ps.nullable) {
        if (ps.default !== undefined) v[k] = clone(ps.default);
        else delete v[k];
      } else if (!present && ps.default !== undefined) {
        v[k] = clone(ps.default);
      }
      if (Object.hasOwn(v, k)) this.defaultNode(v[k], ps);
    }
    if (isPlainObject(s.additionalProperties)) {
      const ap = s.additionalProperties as SchemaNode;
      for (const k of Object.keys(v)) {
        if (s.properties && Object.hasOwn(s.properties, k)) continue;
        if (v[k] === null && !ap.nullable) {
          if (ap.default !== undefined) v[k] = clone(ap.default);
        }
        this.defaultNode(v[k], ap);
      }
    }
  }

  /** OpenAPI keyword errors, then CEL rule errors. `old` enables transition rules and ratcheting. */
  validate(obj: unknown, old?: unknown): FieldError[] {
    const keyword: FieldError[] = [];
    const cel: FieldError[] = [];
    this.validateNode(obj, this.root, '', old, old !== undefined, keyword, cel, true);
    return [...keyword, ...cel];
  }

  private validateNode(
    v: unknown,
    s: SchemaNode | undefined,
    path: string,
    old: unknown,
    hasOld: boolean,
    errs: FieldError[],
    celErrs: FieldError[],
    root = false,
  ): void {
    if (!s) return;
    // Ratcheting (beta, on by default since 1.30): an unchanged subtree is not re-validated.
    if (hasOld && !root && deepEqual(v, old)) return;
    const label = path || '<root>';
    if (v === null) {
      if (!s.nullable && s.type) {
        errs.push({ type: 'FieldValueTypeInvalid', field: label, value: 'null', hasValue: true, detail: `${label} in body must be of type ${s.type}: "null"` });
      }
      return;
    }
    const actual = jsonType(v);
    if (!typeMatches(s, v, actual)) {
      const want = s['x-kubernetes-int-or-string'] ? 'integer,string' : s.type;
      errs.push({ type: 'FieldValueTypeInvalid', field: label, value: actual, hasValue: true, detail: `${label} in body must be of type ${want}: "${actual}"` });
      return;
    }
    const before = errs.length;
    if (Array.isArray(s.enum) && !s.enum.some((e) => deepEqual(e, v))) {
      errs.push({
        type: 'FieldValueNotSupported',
        field: label,
        value: v,
        hasValue: true,
        detail: `supported values: ${s.enum.map((e) => (typeof e === 'string' ? JSON.stringify(e) : JSON.stringify(JSON.stringify(e)))).join(', ')}`,
      });
    }
    if (typeof v === 'string') this.validateString(v, s, label, errs);
    else if (typeof v === 'number') validateNumber(v, s, label, errs);
    else if (Array.isArray(v)) {
      validateArray(v, s, label, errs);
      const oldItems = hasOld ? correlateList(v, old, s) : undefined;
      v.forEach((item, i) => {
        const o = oldItems?.[i];
        this.validateNode(item, s.items, indexPath(path, i), o?.value, o !== undefined && o.found, errs, celErrs);
      });
    } else if (isPlainObject(v)) {
      for (const r of s.required ?? []) {
        if (!Object.hasOwn(v, r)) errs.push({ type: 'FieldValueRequired', field: childPath(path, r), detail: '' });
      }
      const count = Object.keys(v).length;
      if (s.maxProperties !== undefined && count > s.maxProperties) {
        errs.push({ type: 'FieldValueTooMany', field: label, value: count, hasValue: true, detail: `must have at most ${s.maxProperties} items` });
      }
      if (s.minProperties !== undefined && count < s.minProperties) {
        errs.push({ type: 'FieldValueInvalid', field: label, value: count, hasValue: true, detail: `${label} in body should have at least ${s.minProperties} properties` });
      }
      const oldObj = hasOld && isPlainObject(old) ? old : undefined;
      for (const [k, child] of Object.entries(v)) {
        if (root && (k === 'apiVersion' || k === 'kind' || k === 'metadata')) {
          if (k !== 'metadata') this.validateNode(child, s.properties?.[k], childPath(path, k), oldObj?.[k], oldObj !== undefined && Object.hasOwn(oldObj, k), errs, celErrs);
          continue;
        }
        const cs = s.properties?.[k] ?? (isPlainObject(s.additionalProperties) ? (s.additionalProperties as SchemaNode) : undefined);
        this.validateNode(child, cs, childPath(path, k), oldObj?.[k], oldObj !== undefined && Object.hasOwn(oldObj, k), errs, celErrs);
      }
    }
    this.validateCombinators(v, s, label, errs);
    // CEL rules run on well-typed values only: a type error above already names the field.
    if (errs.length === before) this.runRules(v, s, path, old, hasOld, celErrs);
  }

  private validateString(v: string, s: SchemaNode, label: string, errs: FieldError[]): void {
    const len = [...v].length;
    if (s.maxLength !== undefined && len > s.maxLength) {
      errs.push({ type: 'FieldValueTooLong', field: label, value: v, detail: `may not be longer than ${s.maxLength}` });
    }
    if (s.minLength !== undefined && len < s.minLength) {
      errs.push({ type: 'FieldValueInvalid', field: label, value: v, hasValue: true, detail: `${label} in body should be at least ${s.minLength} chars long` });
    }
    if (s.pattern !== undefined) {
      const re = this.patterns.get(s.pattern);
      if (re && !re.test(v)) {
        errs.push({ type: 'FieldValueInvalid', field: label, value: v, hasValue: true, detail: `${label} in body should match '${s.pattern}'` });
      }
    }
    if (s.format && !formatOk(s.format, v)) {
      errs.push({ type: 'FieldValueInvalid', field: label, value: v, hasValue: true, detail: `${label} in body must be of type ${s.format}: ${JSON.stringify(v)}` });
    }
  }

  private validateCombinators(v: unknown, s: SchemaNode, label: string, errs: FieldError[]): void {
    const passes = (sub: SchemaNode) => {
      const e: FieldError[] = [];
      this.validateNode(v, { ...sub, type: sub.type ?? s.type }, label === '<root>' ? '' : label, undefined, false, e, [], false);
      return e;
    };
    for (const sub of s.allOf ?? []) errs.push(...passes(sub));
    if (s.anyOf && s.anyOf.length && !s.anyOf.some((sub) => passes(sub).length === 0)) {
      errs.push({ type: 'FieldValueInvalid', field: label, value: v, hasValue: true, detail: `${label} in body must validate at least one schema (anyOf)` });
    }
    if (s.oneOf && s.oneOf.length && s.oneOf.filter((sub) => passes(sub).length === 0).length !== 1) {
      errs.push({ type: 'FieldValueInvalid', field: label, value: v, hasValue: true, detail: `${label} in body must validate one and only one schema (oneOf)` });
    }
    if (s.not && passes(s.not).length === 0) {
      errs.push({ type: 'FieldValueInvalid', field: label, value: v, hasValue: true, detail: `${label} in body must not validate the schema (not)` });
    }
  }

  private runRules(v: unknown, s: SchemaNode, path: string, old: unknown, hasOld: boolean, out: FieldError[]): void {
    const site = this.rules.get(s);
    if (!site) return;
    const self = toCel(v, s);
    const oldSelf = hasOld ? toCel(old, s) : undefined;
    for (const r of site.rules) {
      // Transition rules only run on updates where the old value correlates.
      if (r.usesOldSelf && !hasOld) continue;
      const res = evaluateRule(r, self, oldSelf);
      if (res.ok) continue;
      const field = r.fieldPath ? joinFieldPath(path, r.fieldPath) : path || '<root>';
      const reason = (r.reason ?? 'FieldValueInvalid') as FieldError['type'];
      out.push({ type: reason, field, value: schemaTypeName(s), hasValue: reason !== 'FieldValueForbidden' && reason !== 'FieldValueRequired', detail: res.message });
    }
  }
}

function schemaTypeName(s: SchemaNode): string {
  if (s['x-kubernetes-int-or-string']) return 'int-or-string';
  return s.type ?? 'object';
}

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  if (typeof v === 'object') return 'object';
  return typeof v;
}

function typeMatches(s: SchemaNode, v: unknown, actual: string): boolean {
  if (s['x-kubernetes-int-or-string']) return actual === 'integer' || actual === 'string';
  switch (s.type) {
    case undefined:
      return true;
    case 'object':
      return actual === 'object';
    case 'array':
      return actual === 'array';
    case 'string':
      return actual === 'string';
    case 'integer':
      return actual === 'integer';
    case 'number':
      return typeof v === 'number';
    case 'boolean':
      return actual === 'boolean';
    default:
      return true;
  }
}

function validateNumber(v: number, s: SchemaNode, label: string, errs: FieldError[]): void {
  if (s.maximum !== undefined) {
    if (s.exclusiveMaximum ? v >= s.maximum : v > s.maximum) {
      errs.push({ type: 'FieldValueInvalid', field: label, value: v, hasValue: true, detail: `${label} in body should be less than ${s.exclusiveMaximum ? '' : 'or equal to '}${s.maximum}` });
    }
  }
  if (s.minimum !== undefined) {
    if (s.exclusiveMinimum ? v <= s.minimum : v < s.minimum) {
      errs.push({ type: 'FieldValueInvalid', field: label, value: v, hasValue: true, detail: `${label} in body should be greater than ${s.exclusiveMinimum ? '' : 'or equal to '}${s.minimum}` });
    }
  }
  if (s.multipleOf !== undefined && s.multipleOf > 0) {
    const q = v / s.multipleOf;
    if (Math.abs(q - Math.round(q)) > 1e-9) {
      errs.push({ type: 'FieldValueInvalid', field: label, value: v, hasValue: true, detail: `${label} in body should be a multiple of ${s.multipleOf}` });
    }
  }
}

function listKey(item: unknown, keys: string[]): string {
  return JSON.stringify(keys.map((k) => (isPlainObject(item) ? (item[k] ?? null) : null)));
}

function validateArray(v: unknown[], s: SchemaNode, label: string, errs: FieldError[]): void {
  if (s.maxItems !== undefined && v.length > s.maxItems) {
    errs.push({ type: 'FieldValueTooMany', field: label, value: v.length, hasValue: true, detail: `must have at most ${s.maxItems} items` });
  }
  if (s.minItems !== undefined && v.length < s.minItems) {
    errs.push({ type: 'FieldValueInvalid', field: label, value: v.length, hasValue: true, detail: `${label} in body should have at least ${s.minItems} items` });
  }
  const lt = s['x-kubernetes-list-type'];
  if (s.uniqueItems || lt === 'set') {
    for (let i = 0; i < v.length; i++) {
      for (let j = 0; j < i; j++) {
        if (deepEqual(v[i], v[j])) {
          errs.push({ type: 'FieldValueDuplicate', field: indexPath(label, i), value: v[i], hasValue: true, detail: '' });
          break;
        }
      }
    }
  }
  if (lt === 'map' && s['x-kubernetes-list-map-keys']) {
    const seen = new Set<string>();
    v.forEach((item, i) => {
      const k = listKey(item, s['x-kubernetes-list-map-keys']!);
      if (seen.has(k)) {
        const keyObj = Object.fromEntries(s['x-kubernetes-list-map-keys']!.map((name) => [name, isPlainObject(item) ? item[name] : undefined]));
        errs.push({ type: 'FieldValueDuplicate', field: indexPath(label, i), value: keyObj, hasValue: true, detail: '' });
      }
      seen.add(k);
    });
  }
}

/** Old values for list items: by key for map lists, none for atomic lists and sets. */
function correlateList(v: unknown[], old: unknown, s: SchemaNode): ({ value: unknown; found: boolean } | undefined)[] | undefined {
  if (!Array.isArray(old)) return undefined;
  const keys = s['x-kubernetes-list-map-keys'];
  if (s['x-kubernetes-list-type'] === 'map' && keys) {
    const byKey = new Map(old.map((o) => [listKey(o, keys), o]));
    return v.map((item) => {
      const k = listKey(item, keys);
      return byKey.has(k) ? { value: byKey.get(k), found: true } : undefined;
    });
  }
  return undefined;
}

const dateTime = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
const uuid = /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/;
const hostname = /^[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*$/;
const mac = /^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$/;
const goDuration = /^([-+]?(\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d|w))+$/;

/** The formats kube-apiserver checks for CRDs that are cheap here; others are accepted as kube ignores unknown ones. */
function formatOk(format: string, v: string): boolean {
  switch (format) {
    case 'date-time':
    case 'datetime':
      return dateTime.test(v) && !Number.isNaN(Date.parse(v.replace(' ', 'T')));
    case 'date':
      return /^\d{4}-\d{2}-\d{2}$/.test(v) && !Number.isNaN(Date.parse(v));
    case 'uuid':
      return uuid.test(v);
    case 'ipv4':
      return parseAddr(v)?.family === 4;
    case 'ipv6':
      return parseAddr(v)?.family === 6;
    case 'cidr':
      return parsePrefix(v) !== null;
    case 'hostname':
      return v.length <= 255 && hostname.test(v);
    case 'mac':
      return mac.test(v);
    case 'byte':
      return /^[A-Za-z0-9+/]*={0,2}$/.test(v) && v.length % 4 === 0 && Buffer.from(v, 'base64').length >= 0;
    case 'duration':
      return goDuration.test(v);
    default:
      return true;
  }
}

/** The CEL view of a JSON value under its schema: integers are CEL ints, objects maps. */
export function toCel(v: unknown, s: SchemaNode | undefined): unknown {
  if (v === null || v === undefined) return null;
  if (typeof v === 'number') {
    if (s?.type === 'number') return v;
    if (s?.type === 'integer' || s?.['x-kubernetes-int-or-string'] || s === undefined || !s.type) {
      return Number.isInteger(v) ? BigInt(v) : v;
    }
    return v;
  }
  if (Array.isArray(v)) return v.map((x) => toCel(x, s?.items));
  if (isPlainObject(v)) {
    const out: Record<string, unknown> = {};
    const ap = isPlainObject(s?.additionalProperties) ? (s!.additionalProperties as SchemaNode) : undefined;
    for (const [k, x] of Object.entries(v)) out[k] = toCel(x, s?.properties?.[k] ?? ap);
    return out;
  }
  return v;
}
