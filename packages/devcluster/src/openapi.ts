/**
 * OpenAPI v3, as far as kubectl 1.32 needs it. kubectl decides per kind
 * whether the server does field validation by looking, in
 * /openapi/v3/<group-version>, for the PATCH operation carrying that kind's
 * `x-kubernetes-group-version-kind` and a `fieldValidation` query
 * parameter; when it finds one it sends `fieldValidation=Strict` and leaves
 * validation to the server instead of downloading /openapi/v2 (which this
 * server does not serve). So every resource gets its paths here, and
 * custom resources also get their schemas as components, which makes
 * `kubectl explain` work for them. Built-in kinds get paths but no
 * component schemas: kubectl then computes strategic merge patches from its
 * compiled-in types, which is what the server's merge keys follow.
 */
import { createHash } from 'node:crypto';
import type { Registry, ResourceDef } from './registry.ts';
import type { SchemaNode } from './schema.ts';

function gvPath(group: string, version: string): string {
  return group ? `apis/${group}/${version}` : `api/${version}`;
}

const q = (name: string, description: string, type = 'string') => ({ name, in: 'query', description, schema: { type, uniqueItems: true } });

const writeParams = [
  q('dryRun', 'When present, indicates that modifications should not be persisted.'),
  q('fieldManager', 'fieldManager is a name associated with the actor or entity that is making these changes.'),
  q('fieldValidation', 'fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields: Ignore, Warn (default) or Strict.'),
];

const listParams = [
  q('labelSelector', 'A selector to restrict the list of returned objects by their labels.'),
  q('fieldSelector', 'A selector to restrict the list of returned objects by their fields.'),
  q('limit', 'limit is a maximum number of responses to return for a list call.', 'integer'),
  q('continue', 'The continue option should be set when retrieving more results from the server.'),
  q('resourceVersion', 'resourceVersion sets a constraint on what resource versions a request may be served from.'),
  q('resourceVersionMatch', 'resourceVersionMatch determines how resourceVersion is applied to list calls.'),
  q('watch', 'Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.', 'boolean'),
  q('allowWatchBookmarks', 'allowWatchBookmarks requests watch events with type "BOOKMARK".', 'boolean'),
  q('timeoutSeconds', 'Timeout for the list/watch call.', 'integer'),
];

function schemaName(d: { group: string; version: string; kind: string }): string {
  const g = d.group ? d.group.split('.').reverse().join('.') : 'io.k8s.api.core';
  return `${g}.${d.version}.${d.kind}`;
}

const objectMeta = 'io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta';
const listMeta = 'io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta';

const metaSchemas: Record<string, unknown> = {
  [objectMeta]: {
    description: 'ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.',
    type: 'object',
    properties: {
      name: { type: 'string', description: 'Name must be unique within a namespace.' },
      generateName: { type: 'string', description: 'GenerateName is an optional prefix, used by the server, to generate a unique name ONLY IF the Name field has not been provided.' },
      namespace: { type: 'string', description: 'Namespace defines the space within which each name must be unique.' },
      uid: { type: 'string', description: 'UID is the unique in time and space value for this object.' },
      resourceVersion: { type: 'string', description: 'An opaque value that represents the internal version of this object.' },
      generation: { type: 'integer', format: 'int64', description: 'A sequence number representing a specific generation of the desired state.' },
      creationTimestamp: { type: 'string', format: 'date-time', description: 'CreationTimestamp is a timestamp representing the server time when this object was created.' },
      deletionTimestamp: { type: 'string', format: 'date-time', description: 'DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted.' },
      labels: { type: 'object', additionalProperties: { type: 'string', default: '' }, description: 'Map of string keys and values that can be used to organize and categorize objects.' },
      annotations: { type: 'object', additionalProperties: { type: 'string', default: '' }, description: 'Annotations is an unstructured key value map stored with a resource.' },
      finalizers: { type: 'array', items: { type: 'string', default: '' }, 'x-kubernetes-list-type': 'set', 'x-kubernetes-patch-strategy': 'merge' },
      ownerReferences: { type: 'array', items: { type: 'object' }, 'x-kubernetes-list-map-keys': ['uid'], 'x-kubernetes-list-type': 'map', 'x-kubernetes-patch-merge-key': 'uid', 'x-kubernetes-patch-strategy': 'merge' },
    },
  },
  [listMeta]: {
    description: 'ListMeta describes metadata that synthetic resources must have.',
    type: 'object',
    properties: { resourceVersion: { type: 'string' }, continue: { type: 'string' }, remainingItemCount: { type: 'integer', format: 'int64' } },
  },
};

function customSchema(d: ResourceDef, root: SchemaNode): Record<string, unknown> {
  const props = { ...(root.properties ?? {}) } as Record<string, unknown>;
  props.apiVersion = { type: 'string', description: 'APIVersion defines the versioned schema of this representation of an object.' };
  props.kind = { type: 'string', description: 'Kind is a string value representing the REST resource this object represents.' };
  props.metadata = { allOf: [{ $ref: `#/components/schemas/${objectMeta}` }], default: {}, description: 'Standard object metadata.' };
  return {
    ...root,
    type: 'object',
    properties: props,
    'x-kubernetes-group-version-kind': [{ group: d.group, kind: d.kind, version: d.version }],
  };
}

function pathsFor(d: ResourceDef, schemaRef: string | undefined): Record<string, unknown> {
  const base = d.group ? `/apis/${d.group}/${d.version}` : `/api/${d.version}`;
  const scope = d.namespaced ? `${base}/namespaces/{namespace}/${d.resource}` : `${base}/${d.resource}`;
  const gvk = { group: d.group, version: d.version, kind: d.kind };
  const tag = d.group ? `${d.group.split('.')[0]}_${d.version}` : `core_${d.version}`;
  const nsParam = d.namespaced ? [{ name: 'namespace', in: 'path', required: true, schema: { type: 'string', uniqueItems: true } }] : [];
  const nameParam = [{ name: 'name', in: 'path', required: true, schema: { type: 'string', uniqueItems: true } }];
  const ok = schemaRef
    ? { '200': { description: 'OK', content: { 'application/json': { schema: { $ref: schemaRef } } } } }
    : { '200': { description: 'OK' } };
  const op = (action: string, extra: Record<string, unknown> = {}) => ({
    tags: [tag],
    operationId: `${action}${d.kind}`,
    responses: ok,
    'x-kubernetes-action': action,
    'x-kubernetes-group-version-kind': gvk,
    ...extra,
  });
  const patch = op('patch', {
    parameters: [...writeParams, q('force', 'Force is going to "force" Apply requests.', 'boolean')],
    requestBody: {
      content: Object.fromEntries(
        ['application/apply-patch+yaml', 'application/json-patch+json', 'application/merge-patch+json', ...(d.strategicMerge ? ['application/strategic-merge-patch+json'] : [])].map((t) => [
          t,
          { schema: { $ref: '#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch' } },
        ]),
      ),
      required: true,
    },
  });
  const body = schemaRef ? { requestBody: { content: { '*/*': { schema: { $ref: schemaRef } } }, required: true } } : {};
  const paths: Record<string, unknown> = {
    [scope]: {
      get: op('list', { parameters: listParams }),
      post: op('post', { parameters: writeParams, ...body }),
      delete: op('deletecollection', { parameters: listParams }),
      parameters: nsParam,
    },
    [`${scope}/{name}`]: {
      get: op('get'),
      put: op('put', { parameters: writeParams, ...body }),
      patch,
      delete: op('delete', { parameters: [q('dryRun', 'dry run'), q('propagationPolicy', 'Whether and how garbage collection will be performed.')] }),
      parameters: [...nameParam, ...nsParam],
    },
  };
  if (d.status) {
    paths[`${scope}/{name}/status`] = {
      get: op('get'),
      put: op('put', { parameters: writeParams, ...body }),
      patch,
      parameters: [...nameParam, ...nsParam],
    };
  }
  return paths;
}

export interface OpenApiDocs {
  index: unknown;
  docs: Map<string, { hash: string; body: string }>;
}

export function buildOpenApi(registry: Registry, gitVersion: string): OpenApiDocs {
  const byGv = new Map<string, ResourceDef[]>();
  for (const d of registry.all()) {
    const k = gvPath(d.group, d.version);
    byGv.set(k, [...(byGv.get(k) ?? []), d]);
  }
  const docs = new Map<string, { hash: string; body: string }>();
  const index: Record<string, { serverRelativeURL: string }> = {};
  for (const [gv, defs] of [...byGv].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const schemas: Record<string, unknown> = { ...metaSchemas, 'io.k8s.apimachinery.pkg.apis.meta.v1.Patch': { type: 'object', description: 'Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.' } };
    let paths: Record<string, unknown> = {};
    for (const d of defs.sort((a, b) => (a.resource < b.resource ? -1 : 1))) {
      let ref: string | undefined;
      if (d.custom) {
        const name = schemaName(d);
        schemas[name] = customSchema(d, d.custom.schema.root);
        schemas[`${name}List`] = {
          type: 'object',
          required: ['items'],
          properties: {
            apiVersion: { type: 'string' },
            kind: { type: 'string' },
            metadata: { allOf: [{ $ref: `#/components/schemas/${listMeta}` }], default: {} },
            items: { type: 'array', items: { $ref: `#/components/schemas/${name}` } },
          },
          'x-kubernetes-group-version-kind': [{ group: d.group, kind: d.listKind, version: d.version }],
        };
        ref = `#/components/schemas/${name}`;
      }
      paths = { ...paths, ...pathsFor(d, ref) };
    }
    const doc = { openapi: '3.0.0', info: { title: 'Kubernetes', version: gitVersion }, paths, components: { schemas } };
    const body = JSON.stringify(doc);
    const hash = createHash('sha512').update(body).digest('hex').toUpperCase();
    docs.set(gv, { hash, body });
    index[gv] = { serverRelativeURL: `/openapi/v3/${gv}?hash=${hash}` };
  }
  return { index: { paths: index }, docs };
}
