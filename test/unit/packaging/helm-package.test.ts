/**
 * The chart with the real helm (v4, built from its Go module by
 * scripts/cluster/build.sh): lint, `helm package` (what a release ships),
 * the package rendered by helm itself (the dashboard through .Files.Get, the
 * alert rules as helm-render renders them), and the chart as a subchart
 * whose parent sets global values (refused before values.schema.json
 * accepted global).
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHART, ROOT, render, type K8sObject } from './lib/render.ts';

let helm: string;
let dir: string;
let pkg: string;
const version = (JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

beforeAll(async () => {
  const r = await execa(join(ROOT, 'scripts/cluster/build.sh'), ['helm', '--cached-only'], { reject: false, all: true });
  if (r.exitCode !== 0) throw new Error(`helm is not built: run scripts/cluster/build.sh helm (scripts/test.sh does)\n${r.all}`);
  helm = join(r.stdout.trim().split('\n').at(-1)!, 'helm');
  dir = await mkdtemp(join(tmpdir(), 'podtap-helm-package-'));
  const p = await execa(helm, ['package', CHART, '-d', dir], { reject: false, all: true, env: { HELM_CACHE_HOME: join(dir, 'cache'), HELM_CONFIG_HOME: join(dir, 'config'), HELM_DATA_HOME: join(dir, 'data') } });
  if (p.exitCode !== 0) throw new Error(`helm package failed:\n${p.all}`);
  pkg = join(dir, `podtap-${version}.tgz`);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

function helmRun(args: string[]) {
  return execa(helm, args, { reject: false, all: true, env: { HELM_CACHE_HOME: join(dir, 'cache'), HELM_CONFIG_HOME: join(dir, 'config'), HELM_DATA_HOME: join(dir, 'data') } });
}

function objects(text: string): K8sObject[] {
  return parseAllDocuments(text).map((d) => d.toJS() as K8sObject | null).filter((o): o is K8sObject => o !== null);
}

describe('the chart with helm itself', () => {
  it('lints clean', async () => {
    const r = await helmRun(['lint', CHART, '--set', 'metrics.enabled=true', '--set', 'metrics.prometheusRule.enabled=true', '--set', 'metrics.dashboard.enabled=true']);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.all).not.toMatch(/\[(ERROR|WARNING)\]/);
  });

  it('packages the chart with its CRDs, dashboard and test, and nothing else', async () => {
    const list = (await execa('tar', ['tzf', pkg])).stdout.split('\n');
    for (const f of ['podtap/Chart.yaml', 'podtap/values.schema.json', 'podtap/crds/sniffpolicies.podtap.io.yaml', 'podtap/dashboards/podtap.json', 'podtap/templates/tests/capture-test.yaml', 'podtap/templates/crd-upgrade-hook.yaml']) {
      expect(list, f).toContain(f);
    }
    const chart = parse((await execa('tar', ['xzOf', pkg, 'podtap/Chart.yaml'])).stdout) as { version: string; appVersion: string };
    expect([chart.version, chart.appVersion]).toEqual([version, version]);
  });

  it('renders the package as helm-render renders the chart (the dashboard file, the alert rules)', async () => {
    const set = ['--set', 'metrics.enabled=true', '--set', 'metrics.prometheusRule.enabled=true', '--set', 'metrics.dashboard.enabled=true'];
    const r = await helmRun(['template', 'podtap', pkg, '-n', 'podtap-system', '--api-versions', 'monitoring.coreos.com/v1', ...set]);
    expect(r.exitCode, r.all).toBe(0);
    const byHelm = objects(r.stdout);
    const cm = byHelm.find((o) => o.kind === 'ConfigMap') as K8sObject & { data: Record<string, string> };
    expect(JSON.parse(cm.data['podtap.json']!)).toEqual(JSON.parse(await readFile(join(CHART, 'dashboards/podtap.json'), 'utf8')));
    const ours = await render({ values: { metrics: { enabled: true, prometheusRule: { enabled: true }, dashboard: { enabled: true } } }, apiVersions: ['monitoring.coreos.com/v1'] });
    const rules = (objs: K8sObject[]) => (objs.find((o) => o.kind === 'PrometheusRule') as K8sObject & { spec: unknown }).spec;
    expect(rules(byHelm)).toEqual(rules(ours.objects));
  });

  it('works as a subchart whose parent sets global values', async () => {
    const parent = async (name: string, chartTgz: string) => {
      const p = join(dir, name);
      await mkdir(join(p, 'charts'), { recursive: true });
      await writeFile(join(p, 'Chart.yaml'), stringify({ apiVersion: 'v2', name, version: '0.0.1', dependencies: [{ name: 'podtap', version }] }));
      await writeFile(join(p, 'values.yaml'), stringify({ global: { imageRegistry: 'registry.example.com' }, podtap: { logLevel: 'debug' } }));
      await execa('cp', [chartTgz, join(p, 'charts', `podtap-${version}.tgz`)]);
      return helmRun(['template', 'p', p, '-n', 'tools']);
    };
    const ok = await parent('parent', pkg);
    expect(ok.exitCode, ok.all).toBe(0);
    expect(objects(ok.stdout).some((o) => o.kind === 'DaemonSet')).toBe(true);

    // the control: the same chart whose schema does not name global is refused
    const unpacked = join(dir, 'noglobal');
    await mkdir(unpacked);
    await execa('tar', ['xzf', pkg, '-C', unpacked]);
    const schemaFile = join(unpacked, 'podtap/values.schema.json');
    const schema = JSON.parse(await readFile(schemaFile, 'utf8')) as { properties: Record<string, unknown> };
    delete schema.properties.global;
    await writeFile(schemaFile, JSON.stringify(schema));
    const p2 = await helmRun(['package', join(unpacked, 'podtap'), '-d', join(unpacked, 'out')]);
    expect(p2.exitCode, p2.all).toBe(0);
    const refused = await parent('parent2', join(unpacked, 'out', `podtap-${version}.tgz`));
    expect(refused.exitCode).not.toBe(0);
    expect(refused.all).toMatch(/global/);
  });
});
