/**
 * scripts/e2e-kind.sh needs Docker and a cluster and cannot run here: it is
 * at least parsed by bash, linted by shellcheck, and kept in step with the
 * chart's names.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { ROOT, render } from './lib/render.ts';

const SCRIPT = join(ROOT, 'scripts/e2e-kind.sh');

describe('scripts/e2e-kind.sh', () => {
  it('parses (bash -n)', async () => {
    const r = await execa('bash', ['-n', SCRIPT], { reject: false, all: true });
    expect(r.exitCode, String(r.all)).toBe(0);
  });

  it('passes shellcheck', async () => {
    const has = await execa('sh', ['-c', 'command -v shellcheck'], { reject: false });
    if (has.exitCode !== 0) throw new Error('shellcheck is not installed: apt-get install shellcheck (scripts/setup.sh)');
    const r = await execa('shellcheck', [SCRIPT], { reject: false, all: true });
    expect(r.exitCode, String(r.all)).toBe(0);
  });

  it('uses the names the chart gives its objects', async () => {
    const text = await readFile(SCRIPT, 'utf8');
    const objects = (await render()).objects;
    const names = new Set(objects.map((o) => `${o.kind}/${o.metadata.name}`));
    for (const n of ['DaemonSet/podtap-agent', 'Deployment/podtap-controller', 'Deployment/podtap-collector', 'Service/podtap-collector', 'Secret/podtap-collector-token']) {
      expect(names.has(n), n).toBe(true);
      expect(text).toContain(n.split('/')[1]);
    }
    const secret = objects.find((o) => o.kind === 'Secret')!;
    expect(Object.keys(secret.data as object)).toContain('api-token');
    expect(text).toContain('{.data.api-token}');
  });
});
