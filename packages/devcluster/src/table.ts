/**
 * Server-side printing: the `meta.k8s.io/v1 Table` that `kubectl get` asks
 * for. Built-ins get the columns kubectl users know (builtins.ts); custom
 * resources get their additionalPrinterColumns, evaluated with JSONPath the
 * way apiextensions-apiserver's table convertor does (first match only).
 */
import type { ColumnDefinition, Printer, ResourceDef } from './registry.ts';
import { isPlainObject, type KubeObject } from './objects.ts';
import { compileJsonPath, evaluateJsonPath, type CompiledPath } from './jsonpath.ts';

/** k8s.io/apimachinery/pkg/util/duration.HumanDuration */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 60 * 2) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) {
    const s = seconds % 60;
    return s === 0 ? `${minutes}m` : `${minutes}m${s}s`;
  }
  if (minutes < 60 * 3) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) {
    const m = minutes % 60;
    return m === 0 ? `${hours}h` : `${hours}h${m}m`;
  }
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) {
    const h = hours % 24;
    const d = Math.floor(hours / 24);
    return h === 0 ? `${d}d` : `${d}d${h}h`;
  }
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  if (hours < 24 * 365 * 8) {
    const dy = Math.floor(hours / 24) % 365;
    const y = Math.floor(hours / 24 / 365);
    return dy === 0 ? `${y}y` : `${y}y${dy}d`;
  }
  return `${Math.floor(hours / 24 / 365)}y`;
}

export function age(timestamp: unknown, now: number): string {
  if (typeof timestamp !== 'string') return '<unknown>';
  const t = Date.parse(timestamp);
  return Number.isNaN(t) ? '<unknown>' : humanDuration(now - t);
}

export function col(name: string, type: string, description: string, priority = 0, format = ''): ColumnDefinition {
  return { name, type, format, description, priority };
}

export const nameColumn = col(
  'Name',
  'string',
  'Name must be unique within a namespace. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names',
  0,
  'name',
);

export const ageColumn = col(
  'Age',
  'string',
  'CreationTimestamp is a timestamp representing the server time when this object was created.',
);

/** What kube-apiserver's default table convertor prints for kinds without a printer. */
export const defaultPrinter: Printer = {
  columns: [
    nameColumn,
    col('Created At', 'date', 'CreationTimestamp is a timestamp representing the server time when this object was created.'),
  ],
  cells: (o) => [o.metadata.name, o.metadata.creationTimestamp],
};

export interface PrinterColumnSpec {
  name: string;
  type: string;
  format?: string;
  description?: string;
  priority?: number;
  jsonPath: string;
}

/** Go's fmt of a JSONPath result for `string` columns: scalars bare, the rest as JSON. */
function printValue(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (v === null) return '<nil>';
  return JSON.stringify(v);
}

function cellFor(type: string, v: unknown, now: number): unknown {
  switch (type) {
    case 'integer':
      return typeof v === 'number' && Number.isInteger(v) ? v : null;
    case 'number':
      return typeof v === 'number' ? v : null;
    case 'boolean':
      return typeof v === 'boolean' ? v : null;
    case 'date':
      // apiextensions prints dates as ages (ConvertToHumanReadableDateType).
      return typeof v === 'string' ? (Number.isNaN(Date.parse(v)) ? '<invalid>' : age(v, now)) : null;
    case 'string':
      return printValue(v);
    default:
      return null;
  }
}

/** The printer of a custom resource version; Name first, Age last when none is declared. */
export function customPrinter(specs: PrinterColumnSpec[] | undefined): Printer {
  if (!specs || specs.length === 0) {
    return {
      columns: [nameColumn, col('Age', 'date', ageColumn.description)],
      cells: (o, now) => [o.metadata.name, cellFor('date', o.metadata.creationTimestamp, now)],
    };
  }
  const compiled: { spec: PrinterColumnSpec; path: CompiledPath }[] = specs.map((spec) => ({
    spec,
    path: compileJsonPath(spec.jsonPath),
  }));
  return {
    columns: [
      nameColumn,
      ...specs.map((s) => col(s.name, s.type, s.description ?? '', s.priority ?? 0, s.format ?? '')),
    ],
    cells: (o, now) => [
      o.metadata.name,
      ...compiled.map(({ spec, path }) => {
        const found = evaluateJsonPath(path, o);
        if (found.length === 0) return null;
        return cellFor(spec.type, found[0], now);
      }),
    ],
  };
}

export type IncludeObject = 'None' | 'Metadata' | 'Object';

export function parseIncludeObject(v: string | null): IncludeObject {
  return v === 'None' || v === 'Object' ? v : 'Metadata';
}

function rowObject(obj: KubeObject, include: IncludeObject): unknown {
  if (include === 'None') return undefined;
  if (include === 'Object') return obj;
  return { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: obj.metadata };
}

export function tableRow(printer: Printer, obj: KubeObject, include: IncludeObject, now: number): unknown {
  const row: Record<string, unknown> = { cells: printer.cells(obj, now) };
  const o = rowObject(obj, include);
  if (o !== undefined) row.object = o;
  return row;
}

export function printerFor(def: ResourceDef): Printer {
  return def.custom?.printer ?? def.printer ?? defaultPrinter;
}

export function buildTable(
  def: ResourceDef,
  items: readonly KubeObject[],
  opts: { include: IncludeObject; resourceVersion?: string; continueToken?: string; remaining?: number; noHeaders?: boolean },
): Record<string, unknown> {
  const printer = printerFor(def);
  const now = Date.now();
  const metadata: Record<string, unknown> = {};
  if (opts.resourceVersion !== undefined) metadata.resourceVersion = opts.resourceVersion;
  if (opts.continueToken) metadata.continue = opts.continueToken;
  if (opts.remaining !== undefined) metadata.remainingItemCount = opts.remaining;
  const table: Record<string, unknown> = { kind: 'Table', apiVersion: 'meta.k8s.io/v1', metadata };
  table.columnDefinitions = opts.noHeaders ? null : printer.columns;
  table.rows = items.map((o) => tableRow(printer, o, opts.include, now));
  return table;
}

/** `a=b,c=d` as kubectl prints selectors, or `<none>`. */
export function mapText(m: unknown): string {
  if (!isPlainObject(m) || Object.keys(m).length === 0) return '<none>';
  return Object.entries(m)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(',');
}
