/**
 * The table of served resources: one entry per group/version/resource, for
 * built-ins (builtins.ts) and for the served versions of every established
 * CustomResourceDefinition (crd.ts). Discovery, OpenAPI, routing and the
 * store all read from here, so a CRD becomes visible everywhere at once.
 */
import type { KubeObject } from './objects.ts';
import type { CustomVersion } from './crd.ts';
import type { FieldError } from './errors.ts';

export interface ColumnDefinition {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

export interface Printer {
  columns: ColumnDefinition[];
  /** One cell per column; `now` in ms so a whole table shares one clock. */
  cells(obj: KubeObject, now: number): unknown[];
}

/** Where the replica count lives, for the scale subresource. */
export interface ScalePaths {
  specReplicasPath: string;
  statusReplicasPath: string;
  labelSelectorPath?: string;
}

export type NameRule = 'subdomain' | 'label' | 'path';

export interface ResourceDef {
  group: string;
  version: string;
  /** Plural, lower case: the URL segment. */
  resource: string;
  kind: string;
  listKind: string;
  singular: string;
  namespaced: boolean;
  shortNames: string[];
  categories: string[];
  verbs: string[];
  /** Has a `/status` subresource: main-resource writes keep the old status. */
  status: boolean;
  scale?: ScalePaths;
  /** Subresources beyond status and scale (pods/binding, namespaces/finalize), for discovery. */
  extraSubresources?: { name: string; kind: string; verbs: string[] }[];
  /**
   * Storage identity. Versions of one group/resource share it; core/v1 and
   * events.k8s.io/v1 Events share one too, as in kube-apiserver.
   */
  storage: string;
  /** metadata.generation is maintained (bumped on spec changes). */
  generation: boolean;
  /** What create does with a posted status when a status subresource exists. */
  statusOnCreate: 'reset' | 'keep';
  initialStatus?: (obj: KubeObject) => unknown;
  /** Built-in defaulting (mutates a fresh copy), as the type's SetDefaults_* would. */
  defaults?: (obj: KubeObject) => void;
  /** Kind-specific validation beyond metadata (the CRD kind itself). */
  validate?: (obj: KubeObject, old: KubeObject | undefined) => FieldError[];
  nameRule: NameRule;
  /** Field selector labels beyond metadata.name / metadata.namespace. */
  fields: Record<string, (obj: KubeObject) => string | undefined>;
  /** Field label aliases, e.g. events.k8s.io `regarding.name` → `involvedObject.name`. */
  fieldAliases?: Record<string, string>;
  printer?: Printer;
  /** Converts between this version's shape and the stored shape. */
  toStorage?: (obj: KubeObject) => KubeObject;
  fromStorage?: (obj: KubeObject) => KubeObject;
  /** Strategic merge patch is accepted (built-ins) or refused with 415 (custom resources). */
  strategicMerge: boolean;
  /** DELETE answers with the deleted object instead of a Status (pods, CRs, ...). */
  returnDeletedObject: boolean;
  /** Present for custom resources. */
  custom?: CustomVersion;
  /** Storage version among several served (custom resources); undefined for built-ins. */
  isStorageVersion?: boolean;
}

export const standardVerbs = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

export function apiVersionOf(def: { group: string; version: string }): string {
  return def.group ? `${def.group}/${def.version}` : def.version;
}

export function parseApiVersion(apiVersion: string): { group: string; version: string } {
  const i = apiVersion.indexOf('/');
  return i < 0 ? { group: '', version: apiVersion } : { group: apiVersion.slice(0, i), version: apiVersion.slice(i + 1) };
}

/** Kubernetes' version ordering: GA > beta > alpha, then by number (v2 > v1, v1beta2 > v1beta1). */
export function compareVersions(a: string, b: string): number {
  const rank = (v: string): [number, number, number] => {
    const m = /^v(\d+)(?:(alpha|beta)(\d+))?$/.exec(v);
    if (!m) return [-1, 0, 0];
    const stage = m[2] === undefined ? 3 : m[2] === 'beta' ? 2 : 1;
    return [stage, Number(m[1]), Number(m[3] ?? 0)];
  };
  const [sa, ma, na] = rank(a);
  const [sb, mb, nb] = rank(b);
  if (sa !== sb) return sb - sa;
  if (ma !== mb) return mb - ma;
  if (na !== nb) return nb - na;
  return a < b ? -1 : a > b ? 1 : 0;
}

export class Registry {
  private readonly defs = new Map<string, ResourceDef>();
  /** Group order as discovery lists it: built-in groups first, in registration order. */
  private readonly groupOrder: string[] = [];
  /** Bumped on every change so discovery and OpenAPI documents can be cached. */
  generation = 0;

  private static key(group: string, version: string, resource: string): string {
    return `${group}/${version}/${resource}`;
  }

  add(def: ResourceDef): void {
    this.defs.set(Registry.key(def.group, def.version, def.resource), def);
    if (!this.groupOrder.includes(def.group)) this.groupOrder.push(def.group);
    this.generation++;
  }

  remove(group: string, version: string, resource: string): void {
    this.defs.delete(Registry.key(group, version, resource));
    if (![...this.defs.values()].some((d) => d.group === group)) {
      const i = this.groupOrder.indexOf(group);
      if (i >= 0) this.groupOrder.splice(i, 1);
    }
    this.generation++;
  }

  get(group: string, version: string, resource: string): ResourceDef | undefined {
    return this.defs.get(Registry.key(group, version, resource));
  }

  all(): ResourceDef[] {
    return [...this.defs.values()];
  }

  groups(): string[] {
    return [...this.groupOrder];
  }

  /** Versions of a group, preferred first. */
  versions(group: string): string[] {
    const vs = new Set<string>();
    for (const d of this.defs.values()) if (d.group === group) vs.add(d.version);
    return [...vs].sort(compareVersions);
  }

  resources(group: string, version: string): ResourceDef[] {
    return [...this.defs.values()].filter((d) => d.group === group && d.version === version);
  }

  hasGroupVersion(group: string, version: string): boolean {
    for (const d of this.defs.values()) if (d.group === group && d.version === version) return true;
    return false;
  }

  byKind(group: string, version: string, kind: string): ResourceDef | undefined {
    for (const d of this.defs.values()) {
      if (d.group === group && d.version === version && d.kind === kind) return d;
    }
    return undefined;
  }

  /** Any served version of a group/kind (owner references may name another version). */
  byGroupKind(group: string, kind: string): ResourceDef | undefined {
    for (const v of this.versions(group)) {
      const d = this.byKind(group, v, kind);
      if (d) return d;
    }
    return undefined;
  }

  byStorage(storage: string): ResourceDef[] {
    return [...this.defs.values()].filter((d) => d.storage === storage);
  }
}
