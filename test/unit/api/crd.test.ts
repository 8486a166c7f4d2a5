/**
 * The generated CRDs: committed files equal the generator's output (no
 * drift), the schemas are structural (apiextensions.k8s.io/v1), and the
 * names, columns and CEL rules are what users and the agents rely on.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Ajv } from 'ajv';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition';
import { CRD_HEADER, buildCrds, crdFiles, toStructural, type JsonSchema } from '../../../src/api/crd.ts';
import { ALLOWED_CEL_FUNCTIONS, celFunctions, eachSchemaNode, isObject, type CelRule } from './k8s-schema.ts';

const root = join(import.meta.dirname, '..', '..', '..');

interface Crd {
  metadata: { name: string };
  spec: {
    group: string;
    scope: string;
    names: { plural: string; singular: string; kind: string; listKind: string; shortNames: string[]; categories: string[] };
    versions: {
      name: string;
      served: boolean;
      storage: boolean;
      subresources: { status: object };
      additionalPrinterColumns: { name: string; jsonPath: string; type: string; priority?: number }[];
      selectableFields?: { jsonPath: string }[];
      schema: { openAPIV3Schema: JsonSchema };
    }[];
  };
}
const crds = buildCrds() as Crd[];
const byKind = (kind: string) => crds.find((c) => c.spec.names.kind === kind)!;
const schemaOf = (c: Crd) => c.spec.versions[0]!.schema.openAPIV3Schema;

describe('generated files', () => {
  it.each(crdFiles())('$path matches buildCrds() (run `npm run gen` after changing src/api)', async ({ path, text }) => {
    const onDisk = await readFile(join(root, path), 'utf8').catch(() => '(missing)');
    expect(onDisk, `${path} is stale: run npm run gen`).toBe(text);
  });

  it.each(crdFiles())('$path starts with the do-not-edit header', ({ text }) => {
    expect(text.split('\n').slice(0, CRD_HEADER.length)).toEqual(CRD_HEADER);
    expect(text).toContain('npm run gen');
  });

  it('writes both CRDs into the chart, their one copy (deploy/ is rendered from the chart: deploy.test.ts)', () => {
    expect(crdFiles().map((f) => f.path).sort()).toEqual([
      'charts/podtap/crds/sniffnodeassignments.podtap.io.yaml',
      'charts/podtap/crds/sniffpolicies.podtap.io.yaml',
    ]);
  });

  it('is deterministic', () => {
    expect(JSON.stringify(buildCrds())).toBe(JSON.stringify(buildCrds()));
  });
});

const FORBIDDEN = ['$ref', '$schema', '$defs', 'definitions', 'anyOf', 'oneOf', 'allOf', 'not', 'nullable', 'const', 'propertyNames', 'patternProperties', 'dependencies', 'id', 'uniqueItems'];
const ajv = new Ajv({ strict: false }).addFormat('int64', true).addFormat('date-time', true);

/** Structural-schema rules of apiextensions.k8s.io/v1, one check per node. */
function structuralProblems(schema: JsonSchema): string[] {
  const problems: string[] = [];
  eachSchemaNode(schema, (node, path) => {
    const say = (what: string) => problems.push(`${path}: ${what}`);
    if (node.type === undefined && node['x-kubernetes-int-or-string'] !== true && node['x-kubernetes-preserve-unknown-fields'] !== true) say('no type');
    for (const k of FORBIDDEN) if (k in node) say(`forbidden keyword ${k}`);
    if (node.additionalProperties !== undefined && node.properties !== undefined) say('both properties and additionalProperties');
    if (node.additionalProperties === false) say('additionalProperties: false');
    if (node.type === 'array' && !isObject(node.items)) say('array without items');
    if (node.default !== undefined && !ajv.validate(node, node.default)) say(`default ${JSON.stringify(node.default)} does not validate`);
    if (node['x-kubernetes-list-type'] === 'map') {
      const items = node.items as JsonSchema;
      for (const key of node['x-kubernetes-list-map-keys'] as string[]) {
        if (!((items.required ?? []) as string[]).includes(key)) say(`list-map key ${key} is not required`);
      }
    }
    for (const r of (node['x-kubernetes-validations'] ?? []) as CelRule[]) {
      if (!r.message || r.message.length > 100) say(`rule ${r.rule}: message missing or too long`);
      if (r.fieldPath && !(r.fieldPath.slice(1) in ((node.properties ?? {}) as object))) say(`rule ${r.rule}: fieldPath ${r.fieldPath} is not a property`);
      const outside = celFunctions(r.rule).filter((f) => !ALLOWED_CEL_FUNCTIONS.has(f));
      if (outside.length > 0) say(`rule ${r.rule}: uses ${outside.join(', ')}, outside the supported CEL subset`);
      // The API server estimates each rule's worst-case cost: strings it reads need a maxLength.
      if (node.type === 'string' && node.maxLength === undefined) say(`rule ${r.rule} on a string without maxLength`);
    }
  });
  return problems;
}

describe('structural schemas', () => {
  it.each(crds.map((c) => ({ name: c.metadata.name, schema: schemaOf(c) })))('$name is structural', ({ schema }) => {
    expect(structuralProblems(schema)).toEqual([]);
    expect(schema.properties).toMatchObject({ metadata: { type: 'object' }, spec: { type: 'object' }, status: { type: 'object' } });
    expect(Object.keys((schema.properties as { metadata: object }).metadata)).toEqual(['type']);
  });

  it.each([
    { description: 'an untyped node', input: { type: 'object', properties: { a: { description: 'x' } } }, expected: '.a: no type' },
    { description: 'a $ref', input: { type: 'object', $ref: '#/x' }, expected: '(root): forbidden keyword $ref' },
    { description: 'a oneOf', input: { type: 'string', oneOf: [{ type: 'string' }] }, expected: '(root): forbidden keyword oneOf' },
    { description: 'a bad default', input: { type: 'integer', maximum: 3, default: 4 }, expected: '(root): default 4 does not validate' },
    {
      description: 'a rule outside the CEL subset',
      input: { type: 'string', maxLength: 5, 'x-kubernetes-validations': [{ rule: 'self.lowerAscii() == self', message: 'm' }] },
      expected: '(root): rule self.lowerAscii() == self: uses lowerAscii, outside the supported CEL subset',
    },
    {
      description: 'a rule on an unbounded string',
      input: { type: 'string', 'x-kubernetes-validations': [{ rule: 'isIP(self)', message: 'm' }] },
      expected: '(root): rule isIP(self) on a string without maxLength',
    },
  ])('the checker catches $description', ({ input, expected }) => {
    expect(structuralProblems(input)).toContain(expected);
  });

  it.each([
    { description: 'drops $schema and additionalProperties: false', input: { $schema: 'x', type: 'object', properties: { a: { type: 'string' } }, additionalProperties: false }, expected: { type: 'object', properties: { a: { type: 'string' } } } },
    { description: 'const becomes enum', input: { type: 'string', const: 'v1' }, expected: { type: 'string', enum: ['v1'] } },
    { description: 'an open object preserves unknown fields', input: { type: 'object', properties: {}, additionalProperties: {} }, expected: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
    {
      description: 'a record keeps its value type, not its key names',
      input: { type: 'object', propertyNames: { enum: ['a'] }, additionalProperties: { type: 'integer', minimum: -Number.MAX_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER } },
      expected: { type: 'object', additionalProperties: { type: 'integer' } },
    },
    { description: 'integer or string', input: { anyOf: [{ type: 'integer' }, { type: 'string' }] }, expected: { 'x-kubernetes-int-or-string': true } },
    {
      description: 'a union of strings with its CEL rule',
      input: { anyOf: [{ type: 'string', format: 'ipv4' }, { type: 'string', format: 'ipv6' }], 'x-kubernetes-validations': [{ rule: 'isIP(self)', message: 'm' }] },
      expected: { type: 'string', 'x-kubernetes-validations': [{ rule: 'isIP(self)', message: 'm' }] },
    },
  ])('toStructural $description', ({ input, expected }) => {
    expect(toStructural(input)).toEqual(expected);
  });

  it.each([
    { description: 'a union of strings without a CEL rule', input: { anyOf: [{ type: 'string' }, { type: 'string' }] }, expected: /needs a CEL rule/ },
    { description: 'a union of objects', input: { anyOf: [{ type: 'object' }, { type: 'string' }] }, expected: /cannot express a union/ },
    { description: 'an unknown keyword', input: { type: 'string', contentEncoding: 'base64' }, expected: /unsupported schema keyword contentEncoding/ },
  ])('toStructural refuses $description', ({ input, expected }) => {
    expect(() => toStructural(input)).toThrow(expected);
  });
});

/** A printer column's path must name a field of the schema (catches renames). */
function pathExists(schema: JsonSchema, jsonPath: string): boolean {
  if (jsonPath === '.metadata.creationTimestamp') return true;
  let node: JsonSchema | undefined = schema;
  for (const part of jsonPath.replace(/\[\?\(@\.type=="\w+"\)\]|\[\*\]/g, '[]').split('.').slice(1)) {
    const name = part.replace('[]', '');
    node = (node?.properties as Record<string, JsonSchema> | undefined)?.[name];
    if (part.endsWith('[]')) node = node?.items as JsonSchema | undefined;
  }
  return node !== undefined;
}

describe('CRD metadata', () => {
  it.each(crds.map((c) => ({ name: c.metadata.name, crd: c })))('$name validates as an apiextensions.k8s.io/v1 CRD (kubernetes-models)', ({ crd }) => {
    expect(() => new CustomResourceDefinition(crd as never).validate()).not.toThrow();
  });

  it.each([
    { kind: 'SniffPolicy', expected: { plural: 'sniffpolicies', singular: 'sniffpolicy', kind: 'SniffPolicy', listKind: 'SniffPolicyList', shortNames: ['sniff', 'sp'], categories: ['podtap'] } },
    { kind: 'SniffNodeAssignment', expected: { plural: 'sniffnodeassignments', singular: 'sniffnodeassignment', kind: 'SniffNodeAssignment', listKind: 'SniffNodeAssignmentList', shortNames: ['sna'], categories: ['podtap'] } },
  ])('$kind: names, scope, version, status subresource', ({ kind, expected }) => {
    const c = byKind(kind);
    expect(c.metadata.name).toBe(`${expected.plural}.podtap.io`);
    expect(c.spec.names).toEqual(expected);
    expect(c.spec.scope).toBe('Namespaced');
    expect(c.spec.group).toBe('podtap.io');
    expect(c.spec.versions.map((v) => [v.name, v.served, v.storage])).toEqual([['v1alpha1', true, true]]);
    expect(c.spec.versions[0]!.subresources).toEqual({ status: {} });
  });

  it.each([
    {
      kind: 'SniffPolicy',
      expected: [
        ['Ready', '.status.conditions[?(@.type=="Ready")].status', 0],
        ['Pods', '.status.selectedPods', 0],
        ['Nodes', '.status.nodeSummary', 0],
        ['Packets', '.status.packets', 0],
        ['Lost', '.status.lost', 0],
        ['Reason', '.status.conditions[?(@.type=="Ready")].reason', 1],
        ['Tunnel', '.spec.tunnel.protocol', 1],
        ['Types', '.spec.policyTypes', 1],
        ['Collector', '.status.collector', 1],
        ['Age', '.metadata.creationTimestamp', 0],
      ],
    },
    {
      kind: 'SniffNodeAssignment',
      expected: [
        ['Node', '.spec.nodeName', 0],
        ['Policies', '.spec.entries[*].policy.name', 0],
        ['States', '.status.entries[*].state', 0],
        ['Age', '.metadata.creationTimestamp', 0],
      ],
    },
  ])('$kind: printer columns point at schema fields', ({ kind, expected }) => {
    const c = byKind(kind);
    const cols = c.spec.versions[0]!.additionalPrinterColumns;
    expect(cols.map((col) => [col.name, col.jsonPath, col.priority ?? 0])).toEqual(expected);
    for (const col of cols) expect(pathExists(schemaOf(c), col.jsonPath), col.jsonPath).toBe(true);
  });

  it('SniffNodeAssignment is selectable by node (field selector spec.nodeName)', () => {
    const c = byKind('SniffNodeAssignment');
    expect(c.spec.versions[0]!.selectableFields).toEqual([{ jsonPath: '.spec.nodeName' }]);
    expect(byKind('SniffPolicy').spec.versions[0]!.selectableFields).toBeUndefined();
  });
});
