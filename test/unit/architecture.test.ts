/**
 * The layering of src/ (docs/architecture.md): every import of every file
 * under src/ follows an arrow the document's table allows, the data plane is
 * entered through its public face, and the product imports nothing of the
 * harness nor any package it does not depend on. The table is read from the
 * document, so the rule and its description cannot drift apart.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');
const SRC = join(ROOT, 'src');
const DOC = 'docs/architecture.md';

/** layer → the layers it may import, from the document's "Allowed arrows" table. */
function allowedArrows(markdown: string): Map<string, Set<string>> {
  const section = markdown.split(/^## /m).find((s) => s.startsWith('Allowed arrows'));
  if (!section) throw new Error(`${DOC} has no "## Allowed arrows" section`);
  const table = new Map<string, Set<string>>();
  for (const line of section.split('\n')) {
    const m = /^\| `([a-z0-9-]+)` \| ([^|]*) \|/.exec(line);
    if (!m) continue;
    const targets = m[2]!.trim() === '—' ? [] : m[2]!.split(',').map((t) => /^`([a-z0-9-]+)`$/.exec(t.trim())?.[1]);
    if (targets.some((t) => t === undefined)) throw new Error(`${DOC}: cannot read the row of ${m[1]}: "${m[2]}"`);
    table.set(m[1]!, new Set(targets as string[]));
  }
  return table;
}

/** A cycle among the allowed arrows, if any (the layers must form a DAG). */
function cycle(table: Map<string, Set<string>>): string[] | undefined {
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (n: string, path: string[]): string[] | undefined => {
    if (state.get(n) === 'done') return undefined;
    if (state.get(n) === 'visiting') return [...path.slice(path.indexOf(n)), n];
    state.set(n, 'visiting');
    for (const t of table.get(n) ?? []) {
      const c = visit(t, [...path, n]);
      if (c) return c;
    }
    state.set(n, 'done');
    return undefined;
  };
  for (const n of table.keys()) {
    const c = visit(n, []);
    if (c) return c;
  }
  return undefined;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

interface Import {
  file: string;
  line: number;
  specifier: string;
}

/** Every import of @file: static, re-exports, type-only and dynamic with a literal specifier. */
function importsOf(file: string): Import[] {
  return importsOfText(file, readFileSync(file, 'utf8'));
}

function importsOfText(file: string, text: string): Import[] {
  const info = ts.preProcessFile(text, true, true);
  const lineOf = (pos: number) => text.slice(0, pos).split('\n').length;
  return info.importedFiles.map((f) => ({ file: relative(ROOT, file), line: lineOf(f.pos), specifier: f.fileName }));
}

const layerOf = (abs: string): string | undefined => {
  const rel = relative(SRC, abs);
  return rel.startsWith('..') ? undefined : rel.split(sep)[0];
};

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
const builtins = new Set(builtinModules);
/** The npm package an import names (@scope/name or name), undefined for a Node built-in. */
function packageOf(specifier: string): string | undefined {
  const bare = specifier.replace(/^node:/, '');
  if (specifier.startsWith('node:') || builtins.has(bare.split('/')[0]!)) return undefined;
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

/** What is wrong with one import of @file (a file under src/), as "file:line: why" lines. */
function ruleBreaks(table: Map<string, Set<string>>, file: string, imp: Import): string[] {
  const where = `${imp.file}:${imp.line}`;
  if (!imp.specifier.startsWith('.')) {
    const name = packageOf(imp.specifier);
    return name !== undefined && !(name in pkg.dependencies) ? [`${where}: imports ${imp.specifier}, not a dependency of the product (package.json dependencies)`] : [];
  }
  const target = resolve(dirname(file), imp.specifier);
  const from = layerOf(file)!;
  const to = layerOf(target);
  if (to === undefined) return [`${where}: imports ${relative(ROOT, target)}, outside src/ (the product imports nothing of the harness)`];
  if (to === from) return [];
  if (!table.has(from)) return [`${where}: src/${from} has no row in ${DOC}`];
  const out: string[] = [];
  if (!table.get(from)!.has(to)) out.push(`${where}: ${from} → ${to} is not an allowed arrow (${DOC})`);
  if (to === 'datapath' && relative(SRC, target) !== join('datapath', 'index.ts')) {
    out.push(`${where}: imports ${relative(ROOT, target)}; outside the data plane, import src/datapath/index.ts`);
  }
  return out;
}

/** Every import of the files under src/ that breaks a rule. */
function violations(table: Map<string, Set<string>>): string[] {
  return sourceFiles(SRC).flatMap((file) => importsOf(file).flatMap((imp) => ruleBreaks(table, file, imp)));
}

/** ruleBreaks() for the imports of @text as if it were @file, without writing it under src/. */
function breaksOf(file: string, text: string): string[] {
  return importsOfText(file, text).flatMap((imp) => ruleBreaks(table, file, imp));
}

const table = allowedArrows(readFileSync(join(ROOT, DOC), 'utf8'));

describe('the layers of src/ (docs/architecture.md)', () => {
  it('every folder of src/ has a row, and every row a folder', () => {
    const folders = readdirSync(SRC, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();
    expect([...table.keys()].sort()).toEqual(folders);
    for (const [layer, targets] of table) for (const t of targets) expect(table.has(t), `${layer} → ${t}: no such layer`).toBe(true);
  });

  it('the arrows form no cycle', () => {
    expect(cycle(table)).toBeUndefined();
  });

  it('every import follows an allowed arrow, the data plane through its face, and nothing of the harness', () => {
    expect(violations(table)).toEqual([]);
  });

  // the check itself, on imports that break each rule
  it.each([
    { description: 'an arrow up the layers', input: { layer: 'datapath', text: "import { x } from '../api/index.ts';" }, expected: /datapath → api is not an allowed arrow/ },
    { description: 'a type-only import', input: { layer: 'k8s', text: "import type { X } from '../api/index.ts';" }, expected: /k8s → api is not an allowed arrow/ },
    { description: 'a dynamic import', input: { layer: 'plugin', text: "const m = await import('../collector/units.ts');" }, expected: /plugin → collector is not an allowed arrow/ },
    { description: 'a re-export', input: { layer: 'agent', text: "export { x } from '../controller/queue.ts';" }, expected: /agent → controller is not an allowed arrow/ },
    { description: "a data-plane file past its face", input: { layer: 'agent', text: "import { Session } from '../datapath/session.ts';" }, expected: /import src\/datapath\/index\.ts/ },
    { description: 'the harness', input: { layer: 'cli', text: "import { Lab } from '../../test/lab/cluster.ts';" }, expected: /outside src\/.*harness/ },
    { description: 'a package the product does not depend on', input: { layer: 'api', text: "import { WebSocket } from 'ws';" }, expected: /not a dependency of the product/ },
    { description: 'the embedded API', input: { layer: 'cli', text: "import { startApiServer } from '@podtap/devcluster';" }, expected: /@podtap\/devcluster, not a dependency/ },
  ])('catches $description', ({ input, expected }) => {
    expect(breaksOf(join(SRC, input.layer, 'probe.ts'), input.text).join('\n')).toMatch(expected);
  });

  it('lets a layer import itself, Node built-ins and its dependencies', () => {
    expect(breaksOf(join(SRC, 'agent', 'probe.ts'), "import { a } from './resolve.ts';\nimport { b } from 'node:fs';\nimport { c } from 'zod';\nimport { d } from '../datapath/index.ts';")).toEqual([]);
  });
});
