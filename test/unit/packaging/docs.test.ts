/** docs/install.md documents every value of the chart, and the docs name what the chart does. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CAPABILITY_ALLOW_LIST } from './lib/policy.ts';
import { ROOT, render } from './lib/render.ts';

/** Dotted keys of values.yaml down to the level the docs table describes. */
function keys(values: Record<string, unknown>, prefix = ''): string[] {
  const whole = new Set(['resources', 'nodeSelector', 'tolerations', 'affinity', 'podAnnotations', 'podLabels', 'rotation', 'retention', 'commonLabels', 'annotations', 'labels']);
  return Object.entries(values).flatMap(([k, v]) => {
    const key = prefix ? `${prefix}.${k}` : k;
    return v && typeof v === 'object' && !Array.isArray(v) && !whole.has(k) ? keys(v as Record<string, unknown>, key) : [key];
  });
}

describe('docs', () => {
  it('docs/install.md has a row for every chart value', async () => {
    const doc = await readFile(join(ROOT, 'docs/install.md'), 'utf8');
    const missing = keys((await render()).values).filter((k) => {
      const role = /^(controller|agent|collector)\.(\w+)$/.exec(k);
      return !doc.includes(`\`${k}\``) && !(role && doc.includes(`\`<role>.${role[2]}\``));
    });
    expect(missing).toEqual([]);
  });

  it('docs/security.md explains every capability the chart adds', async () => {
    const doc = await readFile(join(ROOT, 'docs/security.md'), 'utf8');
    for (const cap of new Set(Object.values(CAPABILITY_ALLOW_LIST).flat())) expect(doc, cap).toContain(`CAP_${cap}`);
    expect(doc).toContain('aggregate-to-edit');
    expect(doc).toMatch(/kind: Role\b/);
  });
});
