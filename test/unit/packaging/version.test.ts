/** One version for the npm package, the chart (version and appVersion, so the image tag) and both commands. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { CHART, ROOT } from './lib/render.ts';

describe('version', () => {
  it('package.json, Chart.yaml version and appVersion, podtap --version and kubectl-podtap --version agree', async () => {
    const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const chart = parse(await readFile(join(CHART, 'Chart.yaml'), 'utf8')) as { version: string; appVersion: string };
    expect([chart.version, chart.appVersion]).toEqual([version, version]);
    const node = join(ROOT, 'node_modules/.bin/node');
    const podtap = await execa(node, [join(ROOT, 'src/cli/main.ts'), '--version']);
    const plugin = await execa(node, [join(ROOT, 'src/cli/kubectl-podtap.ts'), '--version']);
    expect([podtap.stdout, plugin.stdout]).toEqual([`podtap ${version}`, `kubectl-podtap ${version}`]);
  });
});
