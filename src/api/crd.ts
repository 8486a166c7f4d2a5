/**
 * The CustomResourceDefinitions, built from the zod schemas. zod's JSON Schema
 * is close to a Kubernetes structural schema but not equal: this module
 * rewrites it (no $schema, const → enum, unions of strings → one string type
 * whose CEL rule says what the union meant, records → additionalProperties,
 * no `additionalProperties: false`, no propertyNames) and refuses anything it
 * does not know, so a new zod construct cannot slip into the CRD unchecked.
 */
import { stringify } from 'yaml';
import { z } from 'zod';
import { NODE_ASSIGNMENT_KIND, SniffNodeAssignmentSpecSchema, SniffNodeAssignmentStatusSchema } from './assignment.ts';
import { X_VALIDATIONS } from './rules.ts';
import { GROUP, SniffPolicySpecSchema, SniffPolicyStatusSchema, VERSION } from './sniffpolicy.ts';

/** A JSON Schema / OpenAPI v3 node, as far as the CRD needs one. */
export type JsonSchema = { [key: string]: unknown };

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  priority?: number;
}

const SAFE = Number.MAX_SAFE_INTEGER;

/** The OpenAPI extensions of apiextensions.k8s.io/v1 a schema may carry. */
export const KUBERNETES_EXTENSIONS = [
  'x-kubernetes-validations',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-map-type',
  'x-kubernetes-int-or-string',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-embedded-resource',
];

// Keywords copied as they are (after their children are converted).
const PLAIN_KEYS = new Set([
  'description',
  'type',
  'format',
  'enum',
  'default',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'minLength',
  'maxLength',
  'pattern',
  'minItems',
  'maxItems',
  'minProperties',
  'maxProperties',
  'required',
  ...KUBERNETES_EXTENSIONS,
]);

/** Rewrite one zod JSON Schema node (and its children) into a structural one. */
export function toStructural(node: JsonSchema, path = ''): JsonSchema {
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(node)) {
    switch (key) {
      case '$schema':
      case 'propertyNames': // not in OpenAPI v3 as Kubernetes has it; zod still checks keys at runtime
        break;
      case 'const':
        out.enum = [value];
        break;
      case 'properties': {
        const props = value as Record<string, JsonSchema>;
        if (Object.keys(props).length > 0) {
          out.properties = Object.fromEntries(Object.entries(props).map(([k, v]) => [k, toStructural(v, `${path}.${k}`)]));
        }
        break;
      }
      case 'additionalProperties':
        if (value === false) break; // pruning drops unknown fields; `false` is not allowed
        if (isEmptySchema(value)) out['x-kubernetes-preserve-unknown-fields'] = true;
        else out.additionalProperties = toStructural(value as JsonSchema, `${path}.*`);
        break;
      case 'items':
        out.items = toStructural(value as JsonSchema, `${path}[*]`);
        break;
      case 'anyOf':
      case 'oneOf':
        Object.assign(out, collapseUnion(value as JsonSchema[], node, path));
        break;
      default:
        if (!PLAIN_KEYS.has(key)) throw new Error(`crd: ${path || '(root)'}: unsupported schema keyword ${key}`);
        out[key] = value;
    }
  }
  if (out.type === 'integer') {
    // zod bounds every integer by the JS safe range; Kubernetes' int64 is wider and the bound is noise.
    if (out.minimum === -SAFE) delete out.minimum;
    if (out.maximum === SAFE) delete out.maximum;
  }
  if (out.type === 'string' && out.format === 'date-time') delete out.pattern; // the format says it
  if (out.type === 'object' && out.properties === undefined && out.additionalProperties === undefined) {
    out['x-kubernetes-preserve-unknown-fields'] = true;
  }
  if (out.type === undefined && out['x-kubernetes-int-or-string'] !== true) {
    throw new Error(`crd: ${path || '(root)'}: schema node has no type`);
  }
  return ordered(out);
}

// A stable, readable key order for the generated YAML: what it is, then its
// bounds, then its children.
const KEY_ORDER = ['description', 'type', 'format', 'enum', 'default', ...PLAIN_KEYS, 'properties', 'additionalProperties', 'items'];

function ordered(node: JsonSchema): JsonSchema {
  const rank = (k: string) => KEY_ORDER.indexOf(k);
  return Object.fromEntries(Object.entries(node).sort(([a], [b]) => rank(a) - rank(b)));
}

/** A union becomes one string type (validated by the node's CEL rule) or int-or-string. */
function collapseUnion(branches: JsonSchema[], node: JsonSchema, path: string): JsonSchema {
  const types = new Set(branches.map((b) => b.type));
  if (types.size === 1 && types.has('string')) {
    if (!Array.isArray(node[X_VALIDATIONS])) {
      throw new Error(`crd: ${path}: a union of strings needs a CEL rule (x-kubernetes-validations) saying what it accepts`);
    }
    return { type: 'string' };
  }
  if (types.size === 2 && types.has('string') && types.has('integer')) return { 'x-kubernetes-int-or-string': true };
  throw new Error(`crd: ${path}: cannot express a union of ${[...types].join(', ')} in a structural schema`);
}

function isEmptySchema(v: unknown): boolean {
  return typeof v === 'object' && v !== null && Object.keys(v).length === 0;
}

/** The structural openAPIV3Schema of a resource from its spec and status schemas. */
export function resourceSchema(kind: string, spec: z.ZodType, status: z.ZodType, description: string): JsonSchema {
  const convert = (s: z.ZodType, name: string) => toStructural(z.toJSONSchema(s, { io: 'input', target: 'draft-2020-12' }) as JsonSchema, name);
  return {
    description,
    type: 'object',
    required: ['spec'],
    properties: {
      apiVersion: { type: 'string', description: `${GROUP}/${VERSION}` },
      kind: { type: 'string', description: kind },
      metadata: { type: 'object' },
      spec: convert(spec, '.spec'),
      status: convert(status, '.status'),
    },
  };
}

export const SNIFFPOLICY_COLUMNS: PrinterColumn[] = [
  { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status', description: 'Capturing on every node with selected pods.' },
  { name: 'Pods', type: 'integer', jsonPath: '.status.selectedPods', description: 'Selected running pods.' },
  { name: 'Nodes', type: 'string', jsonPath: '.status.nodeSummary', description: 'Nodes attached / nodes with selected pods.' },
  { name: 'Packets', type: 'integer', jsonPath: '.status.packets', description: 'Packets mirrored.' },
  { name: 'Lost', type: 'integer', jsonPath: '.status.lost', description: 'Packets matched but not delivered whole.' },
  { name: 'Reason', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].reason', priority: 1, description: 'Reason of the Ready condition.' },
  { name: 'Tunnel', type: 'string', jsonPath: '.spec.tunnel.protocol', priority: 1 },
  { name: 'Types', type: 'string', jsonPath: '.spec.policyTypes', priority: 1, description: 'Ingress (to the pods), Egress (from them).' },
  { name: 'Collector', type: 'string', jsonPath: '.status.collector', priority: 1, description: 'The collector the agents send to (its Service and address).' },
  { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
];

export const SNIFFNODEASSIGNMENT_COLUMNS: PrinterColumn[] = [
  { name: 'Node', type: 'string', jsonPath: '.spec.nodeName' },
  { name: 'Policies', type: 'string', jsonPath: '.spec.entries[*].policy.name', description: 'The policies with pods on the node.' },
  { name: 'States', type: 'string', jsonPath: '.status.entries[*].state', description: "The agent's state of each entry." },
  { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
];

interface CrdInput {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  schema: JsonSchema;
  columns: PrinterColumn[];
  selectableFields?: { jsonPath: string }[];
}

function crd(c: CrdInput): JsonSchema {
  const version: JsonSchema = {
    name: VERSION,
    served: true,
    storage: true,
    subresources: { status: {} },
    additionalPrinterColumns: c.columns,
  };
  if (c.selectableFields) version.selectableFields = c.selectableFields;
  version.schema = { openAPIV3Schema: c.schema };
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${c.plural}.${GROUP}`,
      labels: { 'app.kubernetes.io/name': 'podtap', 'app.kubernetes.io/part-of': 'podtap' },
    },
    spec: {
      group: GROUP,
      scope: 'Namespaced',
      names: {
        plural: c.plural,
        singular: c.singular,
        kind: c.kind,
        listKind: `${c.kind}List`,
        shortNames: c.shortNames,
        categories: ['podtap'],
      },
      versions: [version],
    },
  };
}

/** The CRDs of podtap.io, SniffPolicy first. Pure: the same output on every call. */
export function buildCrds(): object[] {
  return [
    crd({
      kind: 'SniffPolicy',
      plural: 'sniffpolicies',
      singular: 'sniffpolicy',
      shortNames: ['sniff', 'sp'],
      schema: resourceSchema(
        'SniffPolicy',
        SniffPolicySpecSchema,
        SniffPolicyStatusSchema,
        'SniffPolicy mirrors the packets of selected pods of its namespace, whole, through a Geneve or VXLAN tunnel to a collector.',
      ),
      columns: SNIFFPOLICY_COLUMNS,
    }),
    crd({
      kind: NODE_ASSIGNMENT_KIND,
      plural: 'sniffnodeassignments',
      singular: 'sniffnodeassignment',
      shortNames: ['sna'],
      schema: resourceSchema(
        NODE_ASSIGNMENT_KIND,
        SniffNodeAssignmentSpecSchema,
        SniffNodeAssignmentStatusSchema,
        "SniffNodeAssignment is internal: the controller's work orders for one node's agent, an entry per SniffPolicy, in podtap's own namespace.",
      ),
      columns: SNIFFNODEASSIGNMENT_COLUMNS,
      selectableFields: [{ jsonPath: '.spec.nodeName' }],
    }),
  ];
}

export const CRD_HEADER = [
  '# Generated by `npm run gen` (scripts/gen-crds.ts) from the zod schemas in src/api/.',
  '# Do not edit: change the schemas and run `npm run gen`; test/unit/api/crd.test.ts fails on drift.',
];

/**
 * Files the generator writes, relative to the repository root: the chart's
 * CRDs, the one copy in the repository (Helm installs them from there; deploy/
 * is rendered from the chart by tools/helm-render and checked against it).
 */
export function crdFiles(): { path: string; text: string }[] {
  return buildCrds().flatMap((c) => {
    const name = (c as { metadata: { name: string } }).metadata.name;
    const text = `${CRD_HEADER.join('\n')}\n${stringify(c, { lineWidth: 0 })}`;
    return [{ path: `charts/podtap/crds/${name}.yaml`, text }];
  });
}
