/**
 * Structural schema handling of custom resources: pruning, defaulting,
 * OpenAPI keyword validation and CEL rules, with kube-apiserver's field
 * paths and messages.
 */
import { describe, expect, it } from 'vitest';
import { StructuralSchema, SchemaCompileError, type SchemaNode } from '../src/schema.ts';
import { fieldErrorText } from '../src/errors.ts';
import { widgetCrd } from './harness.ts';

const widgetSchema = widgetCrd.spec.versions[0]!.schema.openAPIV3Schema as unknown as SchemaNode;
const schema = new StructuralSchema(widgetSchema);

function admit(spec: unknown, old?: unknown): string[] {
  const obj: Record<string, unknown> = { apiVersion: 'test.podtap.io/v1', kind: 'Widget', metadata: { name: 'w' }, spec };
  schema.prune(obj);
  schema.applyDefaults(obj);
  const oldObj = old === undefined ? undefined : { apiVersion: 'test.podtap.io/v1', kind: 'Widget', metadata: { name: 'w' }, spec: old };
  return schema.validate(obj, oldObj).map(fieldErrorText);
}

describe('validation messages', () => {
  it.each([
    { description: 'a valid object', input: { ports: [{ port: 80 }], cidrs: ['10.0.0.0/8', 'fd00::/8'], collector: { address: '2001:db8::1' } }, expected: [] },
    {
      description: 'maximum',
      input: { ports: [{ port: 65536 }] },
      expected: ['spec.ports[0].port: Invalid value: 65536: spec.ports[0].port in body should be less than or equal to 65535'],
    },
    { description: 'minimum', input: { snapLength: -1 }, expected: ['spec.snapLength: Invalid value: -1: spec.snapLength in body should be greater than or equal to 0'] },
    { description: 'type', input: { snapLength: 'all' }, expected: ['spec.snapLength: Invalid value: "string": spec.snapLength in body must be of type integer: "string"'] },
    { description: 'a float is not an integer', input: { snapLength: 1.5 }, expected: ['spec.snapLength: Invalid value: "number": spec.snapLength in body must be of type integer: "number"'] },
    { description: 'enum', input: { direction: 'Up' }, expected: ['spec.direction: Unsupported value: "Up": supported values: "Ingress", "Egress", "Both"'] },
    { description: 'required', input: { ports: [{ endPort: 5 }] }, expected: ['spec.ports[0].port: Required value'] },
    { description: 'maxLength', input: { nodeName: 'n'.repeat(64) }, expected: ['spec.nodeName: Too long: may not be longer than 63'] },
    { description: 'maxItems', input: { ports: Array.from({ length: 9 }, (_, i) => ({ port: i + 1 })) }, expected: ['spec.ports: Too many: 9: must have at most 8 items'] },
    {
      description: 'CEL with fieldPath',
      input: { ports: [{ port: 80 }, { port: 9000, endPort: 8000 }] },
      expected: ['spec.ports[1].endPort: Invalid value: "object": endPort must be greater than or equal to port'],
    },
    { description: 'CEL on an integer', input: { mtu: 1000 }, expected: ['spec.mtu: Invalid value: "integer": mtu must be 0 or 1280..9216'] },
    { description: 'CEL isCIDR', input: { cidrs: ['10.0.0.0/33'] }, expected: ['spec.cidrs[0]: Invalid value: "string": must be a CIDR such as 10.0.0.0/8'] },
    { description: 'CEL isIP refuses a zone', input: { collector: { address: 'fe80::1%eth0' } }, expected: ['spec.collector.address: Invalid value: "string": must be an IP address'] },
    { description: 'CEL has() != has()', input: { collector: { address: '198.18.0.1', service: { name: 's' } } }, expected: ['spec.collector: Invalid value: "object": set exactly one of address or service'] },
    {
      description: 'CEL ternary with in and size()',
      input: { selector: { operator: 'In' } },
      expected: ['spec.selector.values: Invalid value: "object": values must be set for In and NotIn, and empty for Exists and DoesNotExist'],
    },
    { description: 'CEL ternary, other branch', input: { selector: { operator: 'Exists', values: ['a'] } }, expected: ['spec.selector.values: Invalid value: "object": values must be set for In and NotIn, and empty for Exists and DoesNotExist'] },
    { description: 'CEL ternary, valid', input: { selector: { operator: 'NotIn', values: ['a'] } }, expected: [] },
    {
      description: 'a type error skips the rules of that node',
      input: { ports: [{ port: 'x', endPort: 1 }] },
      expected: ['spec.ports[0].port: Invalid value: "string": spec.ports[0].port in body must be of type integer: "string"'],
    },
  ])('$description', ({ input, expected }) => {
    expect(admit(input)).toEqual(expected);
  });

  it('reports a missing required root field', () => {
    const obj = { apiVersion: 'test.podtap.io/v1', kind: 'Widget', metadata: { name: 'w' } };
    expect(schema.validate(obj).map(fieldErrorText)).toEqual(['spec: Required value']);
  });
});

describe('pruning and defaulting', () => {
  it.each([
    {
      description: 'unknown fields are pruned and reported with their paths',
      input: { bogus: 1, ports: [{ port: 1, extra: true }], collector: { address: '198.18.0.1', x: 1 } },
      expected: { unknown: ['spec.bogus', 'spec.ports[0].extra', 'spec.collector.x'], spec: { ports: [{ port: 1 }], collector: { address: '198.18.0.1' }, direction: 'Both', snapLength: 0, mtu: 0 } },
    },
    {
      description: 'x-kubernetes-preserve-unknown-fields keeps them',
      input: { extra: { anything: { goes: [1, 2] } } },
      expected: { unknown: [], spec: { extra: { anything: { goes: [1, 2] } }, direction: 'Both', snapLength: 0, mtu: 0 } },
    },
    {
      description: 'defaults fill absent fields only, and a null without default is dropped',
      input: { direction: 'Egress', nodeName: null },
      expected: { unknown: [], spec: { direction: 'Egress', snapLength: 0, mtu: 0 } },
    },
    {
      description: 'a null with a default gets the default',
      input: { direction: null },
      expected: { unknown: [], spec: { direction: 'Both', snapLength: 0, mtu: 0 } },
    },
  ])('$description', ({ input, expected }) => {
    const obj: Record<string, unknown> = { apiVersion: 'test.podtap.io/v1', kind: 'Widget', metadata: { name: 'w', whatever: 1 }, spec: structuredClone(input), status: { packets: 1, junk: 2 } };
    const unknown = schema.prune(obj);
    schema.applyDefaults(obj);
    expect(unknown).toEqual([...expected.unknown, 'status.junk']);
    expect(obj.spec).toEqual(expected.spec);
    expect(obj.metadata).toEqual({ name: 'w', whatever: 1 });
  });
});

describe('updates', () => {
  it('ratchets: an unchanged invalid value does not block an update of another field', () => {
    expect(admit({ mtu: 1000, direction: 'Ingress' }, { mtu: 1000, direction: 'Egress' })).toEqual([]);
    expect(admit({ mtu: 1001 }, { mtu: 1000 })).toEqual(['spec.mtu: Invalid value: "integer": mtu must be 0 or 1280..9216']);
  });

  it('runs transition rules (oldSelf) only on updates', () => {
    const s = new StructuralSchema({
      type: 'object',
      properties: { spec: { type: 'object', properties: { id: { type: 'string', 'x-kubernetes-validations': [{ rule: 'self == oldSelf', message: 'id is immutable' }] } } } },
    });
    const mk = (id: string) => ({ metadata: {}, spec: { id } });
    expect(s.validate(mk('a'))).toEqual([]);
    expect(s.validate(mk('b'), mk('a')).map(fieldErrorText)).toEqual(['spec.id: Invalid value: "string": id is immutable']);
  });

  it('honours reason and messageExpression', () => {
    const s = new StructuralSchema({
      type: 'object',
      properties: {
        spec: {
          type: 'object',
          'x-kubernetes-validations': [
            { rule: 'has(self.a)', reason: 'FieldValueRequired', fieldPath: '.a', message: 'a is required' },
            { rule: 'self.n < 10', messageExpression: "'n is ' + string(self.n) + ', want < 10'" },
            { rule: 'self.n != 11', reason: 'FieldValueForbidden', message: 'eleven is forbidden' },
          ],
          properties: { a: { type: 'string' }, n: { type: 'integer' } },
        },
      },
    });
    expect(s.validate({ metadata: {}, spec: { n: 11 } }).map(fieldErrorText)).toEqual([
      'spec.a: Required value: a is required',
      'spec: Invalid value: "object": n is 11, want < 10',
      'spec: Forbidden: eleven is forbidden',
    ]);
  });
});

describe('compilation', () => {
  it.each([
    { description: 'a CEL syntax error', schema: { type: 'object', 'x-kubernetes-validations': [{ rule: 'self.a >' }] }, field: 'openAPIV3Schema.x-kubernetes-validations[0].rule' },
    { description: 'a bad reason', schema: { type: 'object', 'x-kubernetes-validations': [{ rule: 'true', reason: 'Nope' }] }, field: 'openAPIV3Schema.x-kubernetes-validations[0].reason' },
    { description: 'a bad pattern', schema: { type: 'object', properties: { s: { type: 'string', pattern: '(' } } }, field: 'openAPIV3Schema.properties[s].pattern' },
  ])('refuses $description and names the schema path', ({ schema: bad, field }) => {
    let err: unknown;
    try {
      new StructuralSchema(bad as SchemaNode);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SchemaCompileError);
    expect((err as SchemaCompileError).field).toBe(field);
  });
});
