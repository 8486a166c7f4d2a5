/**
 * Checks rendered objects against the official Kubernetes OpenAPI schemas, as
 * packaged by kubernetes-models: its validators (types, formats, required
 * fields, enums) and — because those let unknown fields through, which a real
 * API server with strict field validation refuses — its TypeScript types,
 * whose excess-property check names every field Kubernetes does not have.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import type { K8sObject } from './render.ts';
import { ROOT } from './render.ts';

/** kubernetes-models module of an apiVersion: "apps/v1" -> "apps/v1", "v1" -> "v1". */
function modulePath(apiVersion: string): string {
  return apiVersion;
}

interface Model {
  validate(): void;
}
type ModelClass = new (data: unknown) => Model;

/** Run kubernetes-models' validator; returns the error text or undefined. */
export async function schemaErrors(obj: K8sObject): Promise<string | undefined> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(`kubernetes-models/${modulePath(obj.apiVersion)}/${obj.kind}`)) as Record<string, unknown>;
  } catch {
    return `no OpenAPI schema for ${obj.apiVersion} ${obj.kind}`;
  }
  const Cls = mod[obj.kind] as ModelClass | undefined;
  if (!Cls) return `no model for ${obj.kind}`;
  try {
    new Cls(obj).validate();
    return undefined;
  } catch (err) {
    return String(err);
  }
}

const CHECK_DIR = join(ROOT, 'node_modules/.cache/podtap-k8s-check');

/**
 * Type-check every object as a literal of its kubernetes-models interface.
 * Returns tsc's diagnostics, each naming the object (kind/name) it is about.
 */
export async function unknownFieldErrors(objects: { label: string; obj: K8sObject }[]): Promise<string[]> {
  await mkdir(CHECK_DIR, { recursive: true });
  const lines: string[] = [];
  const labels: string[] = [];
  objects.forEach(({ label, obj }, i) => {
    const type = `I${obj.kind}`;
    lines.push(`import type { ${type} as T${i} } from 'kubernetes-models/${modulePath(obj.apiVersion)}/${obj.kind}';`);
    labels.push(label);
  });
  objects.forEach(({ obj }, i) => {
    lines.push(`export const o${i}: T${i} = ${JSON.stringify(obj, null, 1)};`);
  });
  const file = join(CHECK_DIR, 'objects.ts');
  await writeFile(file, `${lines.join('\n')}\n`);
  await writeFile(
    join(CHECK_DIR, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', strict: true, noEmit: true, skipLibCheck: true, types: [] },
      files: ['objects.ts'],
    }),
  );
  const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
  const r = await execa(join(ROOT, 'node_modules/.bin/node'), [tsc, '-p', CHECK_DIR], { reject: false, all: true });
  if (r.exitCode === 0) return [];
  // Map each diagnostic's line back to the object it is in.
  const text = String(r.all);
  const starts: number[] = [];
  const src = lines.join('\n').split('\n');
  src.forEach((l, n) => {
    const m = /^export const o(\d+):/.exec(l);
    if (m) starts[Number(m[1])] = n + 1;
  });
  return text
    .split('\n')
    .filter((l) => /error TS/.test(l))
    .map((l) => {
      const line = Number(/objects\.ts\((\d+),/.exec(l)?.[1] ?? 0);
      let idx = 0;
      starts.forEach((s, i) => {
        if (s <= line) idx = i;
      });
      return `${labels[idx]}: ${l.replace(/^.*error TS\d+: /, '')}`;
    });
}
