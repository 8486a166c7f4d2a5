/**
 * CustomResourceDefinitions: the CRD kind itself (validated and defaulted as
 * apiextensions-apiserver does for what podtap and kubectl rely on) and the
 * translation of an established CRD into served resource definitions — one
 * per served version, all sharing the storage version's store, each with
 * its compiled structural schema, CEL rules, printer columns and
 * selectable fields. Conversion between versions is strategy None: only
 * apiVersion changes.
 */
import type { FieldError } from './errors.ts';
import type { Printer, ResourceDef, ScalePaths } from './registry.ts';
import { standardVerbs } from './registry.ts';
import { SchemaCompileError, StructuralSchema, type SchemaNode } from './schema.ts';
import { col, customPrinter, nameColumn, type PrinterColumnSpec } from './table.ts';
import { compileJsonPath, evaluateJsonPath, JsonPathError } from './jsonpath.ts';
import { isPlainObject, nowTimestamp, validateDns1123Label, validateDns1123Subdomain, type KubeObject } from './objects.ts';
import { schemaListMeta, type ListMetaLookup } from './patch.ts';

export interface CustomVersion {
  crdName: string;
  schema: StructuralSchema;
  printer: Printer;
  listMeta: ListMetaLookup;
}

export const CRD_STORAGE = 'apiextensions.k8s.io/customresourcedefinitions';
export const CRD_CLEANUP_FINALIZER = 'customresourcecleanup.apiextensions.k8s.io';

interface CrdSpec {
  group: string;
  scope: 'Namespaced' | 'Cluster';
  names: { plural: string; singular?: string; kind: string; listKind?: string; shortNames?: string[]; categories?: string[] };
  versions: CrdVersionSpec[];
  conversion?: { strategy: string };
}

interface CrdVersionSpec {
  name: string;
  served: boolean;
  storage: boolean;
  deprecated?: boolean;
  schema?: { openAPIV3Schema?: SchemaNode };
  subresources?: { status?: object; scale?: ScalePaths };
  additionalPrinterColumns?: PrinterColumnSpec[];
  selectableFields?: { jsonPath: string }[];
}

function specOf(crd: KubeObject): CrdSpec {
  return crd.spec as CrdSpec;
}

function fe(type: FieldError['type'], field: string, detail: string, value?: unknown): FieldError {
  return value === undefined ? { type, field, detail } : { type, field, detail, value, hasValue: true };
}

function defaultCrd(o: KubeObject): void {
  const spec = (o.spec ??= {}) as Partial<CrdSpec>;
  if (isPlainObject(spec.names) && typeof spec.names.kind === 'string') {
    spec.names.singular ??= spec.names.kind.toLowerCase();
    spec.names.listKind ??= `${spec.names.kind}List`;
  }
  spec.conversion ??= { strategy: 'None' };
}

/** Field errors of a CRD; compiling its schemas (CEL, patterns, JSONPaths) is part of it. */
export function validateCrd(crd: KubeObject, old: KubeObject | undefined): FieldError[] {
  const errs: FieldError[] = [];
  const spec = crd.spec as Partial<CrdSpec> | undefined;
  if (!isPlainObject(spec)) return [fe('FieldValueRequired', 'spec', '')];
  const group = spec.group;
  if (typeof group !== 'string' || group === '') errs.push(fe('FieldValueRequired', 'spec.group', ''));
  else {
    if (!group.includes('.')) errs.push(fe('FieldValueInvalid', 'spec.group', 'should be a domain with at least one dot', group));
    for (const m of validateDns1123Subdomain(group)) errs.push(fe('FieldValueInvalid', 'spec.group', m, group));
  }
  const names = spec.names;
  if (!isPlainObject(names)) errs.push(fe('FieldValueRequired', 'spec.names', ''));
  else {
    if (!names.plural) errs.push(fe('FieldValueRequired', 'spec.names.plural', ''));
    else for (const m of validateDns1123Label(names.plural)) errs.push(fe('FieldValueInvalid', 'spec.names.plural', m, names.plural));
    if (!names.kind) errs.push(fe('FieldValueRequired', 'spec.names.kind', ''));
    if (names.plural && group && crd.metadata.name !== `${names.plural}.${group}`) {
      errs.push(fe('FieldValueInvalid', 'metadata.name', 'must be spec.names.plural+"."+spec.group', crd.metadata.name));
    }
  }
  if (spec.scope !== 'Namespaced' && spec.scope !== 'Cluster') {
    errs.push({ type: 'FieldValueNotSupported', field: 'spec.scope', value: spec.scope ?? '', hasValue: true, detail: 'supported values: "Cluster", "Namespaced"' });
  }
  const versions = Array.isArray(spec.versions) ? spec.versions : [];
  if (versions.length === 0) errs.push(fe('FieldValueInvalid', 'spec.versions', 'must have exactly one version marked as storage version', []));
  else if (versions.filter((v) => v?.storage === true).length !== 1) {
    errs.push(fe('FieldValueInvalid', 'spec.versions', 'must have exactly one version marked as storage version', versions.map((v) => v?.name)));
  }
  versions.forEach((v, i) => {
    const base = `spec.versions[${i}]`;
    if (!v?.name) errs.push(fe('FieldValueRequired', `${base}.name`, ''));
    const schema = v?.schema?.openAPIV3Schema;
    if (!isPlainObject(schema)) {
      errs.push(fe('FieldValueRequired', `${base}.schema.openAPIV3Schema`, 'schemas are required'));
      return;
    }
    if (schema.type !== 'object') errs.push(fe('FieldValueRequired', `${base}.schema.openAPIV3Schema.type`, 'must not be empty at the root'));
    try {
      new StructuralSchema(schema, `${base}.schema.openAPIV3Schema`);
    } catch (err) {
      if (!(err instanceof SchemaCompileError)) throw err;
      errs.push(fe('FieldValueInvalid', err.field, err.message.replace(/^Invalid value: /, ''), 'rule'));
    }
    (v.additionalPrinterColumns ?? []).forEach((c, j) => {
      try {
        compileJsonPath(c.jsonPath);
      } catch (err) {
        if (!(err instanceof JsonPathError)) throw err;
        errs.push(fe('FieldValueInvalid', `${base}.additionalPrinterColumns[${j}].jsonPath`, err.message, c.jsonPath));
      }
    });
    (v.selectableFields ?? []).forEach((f, j) => {
      if (!selectableFieldType(schema, f.jsonPath)) {
        errs.push(fe('FieldValueInvalid', `${base}.selectableFields[${j}].jsonPath`, 'must point to a field of type string, boolean or integer', f.jsonPath));
      }
    });
  });
  if (old) {
    const os = old.spec as CrdSpec;
    if (os.group !== spec.group) errs.push(fe('FieldValueInvalid', 'spec.group', 'field is immutable', spec.group));
    if (os.scope !== spec.scope) errs.push(fe('FieldValueInvalid', 'spec.scope', 'field is immutable', spec.scope));
  }
  return errs;
}

function schemaAt(root: SchemaNode, jsonPath: string): SchemaNode | undefined {
  const parts = jsonPath.replace(/^\./, '').split('.');
  let node: SchemaNode | undefined = root;
  for (const p of parts) node = node?.properties?.[p];
  return node;
}

function selectableFieldType(root: SchemaNode, jsonPath: string): boolean {
  const t = schemaAt(root, jsonPath)?.type;
  return t === 'string' || t === 'boolean' || t === 'integer';
}

/** The resource definitions an accepted CRD serves. */
export function defsFromCrd(crd: KubeObject): ResourceDef[] {
  const spec = specOf(crd);
  const storageVersion = spec.versions.find((v) => v.storage)?.name ?? spec.versions[0]!.name;
  const names = spec.names;
  return spec.versions
    .filter((v) => v.served !== false)
    .map((v) => {
      const schema = new StructuralSchema(v.schema!.openAPIV3Schema!);
      const fields: ResourceDef['fields'] = {};
      for (const f of v.selectableFields ?? []) {
        const path = compileJsonPath(f.jsonPath);
        fields[f.jsonPath.replace(/^\./, '')] = (o) => {
          const found = evaluateJsonPath(path, o)[0];
          return found === undefined || found === null ? undefined : String(found);
        };
      }
      const def: ResourceDef = {
        group: spec.group,
        version: v.name,
        resource: names.plural,
        kind: names.kind,
        listKind: names.listKind ?? `${names.kind}List`,
        singular: names.singular ?? names.kind.toLowerCase(),
        namespaced: spec.scope === 'Namespaced',
        shortNames: names.shortNames ?? [],
        categories: names.categories ?? [],
        verbs: standardVerbs,
        status: v.subresources?.status !== undefined,
        storage: `${spec.group}/${names.plural}`,
        generation: true,
        statusOnCreate: 'reset',
        nameRule: 'subdomain',
        fields,
        strategicMerge: false,
        returnDeletedObject: true,
        isStorageVersion: v.name === storageVersion,
        custom: {
          crdName: crd.metadata.name ?? '',
          schema,
          printer: customPrinter(v.additionalPrinterColumns),
          listMeta: schemaListMeta(v.schema!.openAPIV3Schema),
        },
      };
      if (v.subresources?.scale) def.scale = v.subresources.scale;
      return def;
    });
}

export function storageVersionOf(crd: KubeObject): string {
  const spec = specOf(crd);
  return spec.versions.find((v) => v.storage)?.name ?? spec.versions[0]!.name;
}

/** Status the apiextensions controllers would converge to for an accepted CRD. */
export function establishedStatus(crd: KubeObject, terminating: boolean): Record<string, unknown> {
  const spec = specOf(crd);
  const prev = (crd.status ?? {}) as { conditions?: { type: string; status: string; lastTransitionTime?: string }[]; storedVersions?: string[] };
  const now = nowTimestamp();
  const keep = (type: string, status: string) => {
    const c = prev.conditions?.find((x) => x.type === type);
    return c && c.status === status && c.lastTransitionTime ? c.lastTransitionTime : now;
  };
  const conditions: Record<string, unknown>[] = [
    { type: 'NamesAccepted', status: 'True', lastTransitionTime: keep('NamesAccepted', 'True'), reason: 'NoConflicts', message: 'no conflicts found' },
    { type: 'Established', status: 'True', lastTransitionTime: keep('Established', 'True'), reason: 'InitialNamesAccepted', message: 'the initial names have been accepted' },
  ];
  if (terminating) {
    conditions.push({ type: 'Terminating', status: 'True', lastTransitionTime: keep('Terminating', 'True'), reason: 'InstanceDeletionInProgress', message: 'CustomResource deletion is in progress' });
  }
  const stored = new Set(prev.storedVersions ?? []);
  stored.add(storageVersionOf(crd));
  const n = spec.names;
  const acceptedNames: Record<string, unknown> = { plural: n.plural, singular: n.singular ?? n.kind.toLowerCase(), kind: n.kind, listKind: n.listKind ?? `${n.kind}List` };
  if (n.shortNames?.length) acceptedNames.shortNames = n.shortNames;
  if (n.categories?.length) acceptedNames.categories = n.categories;
  return { conditions, acceptedNames, storedVersions: [...stored] };
}

export function crdResourceDef(): ResourceDef {
  return {
    group: 'apiextensions.k8s.io',
    version: 'v1',
    resource: 'customresourcedefinitions',
    kind: 'CustomResourceDefinition',
    listKind: 'CustomResourceDefinitionList',
    singular: 'customresourcedefinition',
    namespaced: false,
    shortNames: ['crd', 'crds'],
    categories: ['api-extensions'],
    verbs: standardVerbs,
    status: true,
    storage: CRD_STORAGE,
    generation: true,
    statusOnCreate: 'reset',
    nameRule: 'subdomain',
    fields: {},
    strategicMerge: true,
    returnDeletedObject: true,
    defaults: defaultCrd,
    validate: validateCrd,
    printer: {
      columns: [nameColumn, col('Created At', 'date', 'CreationTimestamp is a timestamp representing the server time when this object was created.')],
      cells: (o) => [o.metadata.name, o.metadata.creationTimestamp],
    },
  };
}
