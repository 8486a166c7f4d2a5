/**
 * docs/troubleshooting.md has a section for every condition reason the code
 * can set: the reasons of src/api/conditions.ts, and every reason literal the
 * controller and the agent write (which must be among them).
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ReasonHints } from '../../../src/api/conditions.ts';
import { ROOT } from './lib/render.ts';

/** Reason names written in the sources: `reason: 'X'`, `reason = 'X'`, `ConditionReason.X`, ['X', 'Failed'] pairs and FAILURE_ORDER-like lists. */
async function reasonsInCode(): Promise<Set<string>> {
  const found = new Set<string>();
  for (const dir of ['src/controller', 'src/agent', 'src/api']) {
    for (const f of (await readdir(join(ROOT, dir))).filter((n) => n.endsWith('.ts'))) {
      const text = await readFile(join(ROOT, dir, f), 'utf8');
      for (const re of [
        /\breason\s*[:=]\s*'([A-Z][A-Za-z]+)'/g,
        /ConditionReason\.([A-Z][A-Za-z]+)/g,
        /\['([A-Z][A-Za-z]+)', '(?:Failed|Degraded)'\]/g,
        /\bknownReason\([^,]+,\s*'([A-Z][A-Za-z]+)'\)/g,
      ]) for (const m of text.matchAll(re)) found.add(m[1]!);
      for (const m of text.matchAll(/ConditionReason\[\]\s*=\s*\[([^\]]*)\]/g)) for (const r of m[1]!.matchAll(/'([A-Z][A-Za-z]+)'/g)) found.add(r[1]!);
    }
  }
  return found;
}

describe('docs/troubleshooting.md', () => {
  it('every reason the code writes is a known reason', async () => {
    const found = await reasonsInCode();
    expect(found.size).toBeGreaterThan(8);
    expect([...found].filter((r) => !(r in ReasonHints))).toEqual([]);
  });

  it('has a section for every reason', async () => {
    const doc = await readFile(join(ROOT, 'docs/troubleshooting.md'), 'utf8');
    const byReason = doc.slice(doc.indexOf('## Conditions by reason'), doc.indexOf('\n## ', doc.indexOf('## Conditions by reason') + 1));
    const sections = new Set([...byReason.matchAll(/^### (\w+)$/gm)].map((m) => m[1]!));
    expect(Object.keys(ReasonHints).filter((r) => !sections.has(r))).toEqual([]);
  });

  it('says why a Ready policy may capture nothing', async () => {
    const doc = await readFile(join(ROOT, 'docs/troubleshooting.md'), 'utf8');
    for (const topic of ['A CNI program that runs first', 'hostNetwork pods', 'A NetworkPolicy blocks the tunnel', 'No BTF', 'No BPF filesystem']) expect(doc).toContain(`### ${topic}`);
  });
});
