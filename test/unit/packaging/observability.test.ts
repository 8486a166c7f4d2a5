/**
 * Metrics, alerts and the dashboard against what the code exports: names
 * carry their component's prefix; docs/metrics.md lists exactly the exported
 * families; the chart's alert rules and dashboard name only exported series;
 * Prometheus's own promtool checks the rules and runs their unit tests
 * (alerts.promtool.yaml).
 */
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportedMetrics, type ExportedMetric } from '../../helpers/metric-names.ts';
import { goTool } from './lib/go-tools.ts';
import { CHART, ROOT, render, type K8sObject } from './lib/render.ts';

const MONITORING = ['monitoring.coreos.com/v1'];
let metrics: ExportedMetric[];
/** every series name a query may use: podtap's, and Prometheus's own up */
let series: Set<string>;
let dir: string;

beforeAll(async () => {
  metrics = await exportedMetrics();
  series = new Set(['up', ...metrics.flatMap((m) => m.series)]);
  dir = await mkdtemp(join(tmpdir(), 'podtap-observability-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Metric names a PromQL expression uses (identifiers before { or [ or a space/paren, that look like ours or are `up`). */
function namesIn(expr: string): string[] {
  return [...expr.matchAll(/\b(podtap_[a-z0-9_]+|up)\b(?=\s*[{[)\s,]|$)/g)].map((m) => m[1]!);
}

interface Rule { alert: string; expr: string; for?: string; labels?: Record<string, string>; annotations: Record<string, string> }
async function renderedRules(values: Record<string, unknown> = {}): Promise<{ groups: { name: string; rules: Rule[] }[] }> {
  const r = await render({ values: { metrics: { enabled: true, prometheusRule: { enabled: true } }, ...values }, apiVersions: MONITORING });
  const rule = r.objects.find((o) => o.kind === 'PrometheusRule');
  if (!rule) throw new Error('no PrometheusRule rendered');
  return (rule as K8sObject & { spec: { groups: { name: string; rules: Rule[] }[] } }).spec;
}

describe('metrics', () => {
  it('carry their component prefix, process metrics included', () => {
    for (const m of metrics) expect(m.name, m.component).toMatch(new RegExp(`^podtap_${m.component}_`));
    for (const c of ['controller', 'agent', 'collector']) {
      expect(metrics.some((m) => m.component === c && m.name === `podtap_${c}_process_cpu_seconds_total`), `${c} exports process metrics`).toBe(true);
    }
  });

  it('docs/metrics.md lists every family with its type and labels, and no other', async () => {
    const doc = await readFile(join(ROOT, 'docs/metrics.md'), 'utf8');
    const rows = [...doc.matchAll(/^\| `(podtap_[a-z0-9_]+)` \| (\w+) \| ([a-z_, ]*) \|/gm)].map((m) => `${m[1]} ${m[2]} ${m[3]!.trim()}`);
    const want = metrics.filter((m) => !m.process).map((m) => `${m.name} ${m.type} ${m.labels.join(', ')}`);
    expect(rows.sort()).toEqual(want.sort());
  });
});

describe('alert rules', () => {
  it('are off by default and need the metrics Services', async () => {
    expect((await render({ apiVersions: MONITORING })).objects.filter((o) => o.kind === 'PrometheusRule')).toEqual([]);
    await expect(render({ values: { metrics: { prometheusRule: { enabled: true } } }, apiVersions: MONITORING })).rejects.toThrow(/prometheusRule.enabled needs metrics.enabled/);
  });

  it('name only series the code exports', async () => {
    const { groups } = await renderedRules();
    const used = groups.flatMap((g) => g.rules.flatMap((r) => namesIn(r.expr)));
    expect(used.length).toBeGreaterThan(5);
    expect(used.filter((n) => !series.has(n))).toEqual([]);
    expect(groups.flatMap((g) => g.rules.map((r) => r.alert)).sort()).toEqual(
      ['PodtapAgentNotReporting', 'PodtapCaptureLoss', 'PodtapCollectorDiskFilling', 'PodtapCollectorDiskFull', 'PodtapCollectorKernelDrops', 'PodtapCollectorSequenceGaps', 'PodtapControllerNoLeader'],
    );
  });

  it('pass promtool check rules and promtool test rules', async () => {
    const promtool = await goTool('promtool');
    const { groups } = await renderedRules();
    await writeFile(join(dir, 'rules.yaml'), stringify({ groups }));
    const check = await execa(promtool, ['check', 'rules', join(dir, 'rules.yaml')], { reject: false, all: true });
    expect(check.exitCode, check.all).toBe(0);
    expect(check.all).toMatch(/SUCCESS: 7 rules found/);

    // the unit tests, each expected alert completed with its rule's description (prose)
    const tests = parse(await readFile(join(ROOT, 'test/unit/packaging/alerts.promtool.yaml'), 'utf8')) as {
      tests: { alert_rule_test: { alertname: string; exp_alerts: { exp_annotations: Record<string, string> }[] }[] }[];
    };
    const description = new Map(groups.flatMap((g) => g.rules.map((r) => [r.alert, r.annotations.description!] as const)));
    for (const t of tests.tests) for (const a of t.alert_rule_test) for (const e of a.exp_alerts) e.exp_annotations.description = description.get(a.alertname)!;
    await writeFile(join(dir, 'alerts.test.yaml'), stringify(tests));
    const test = await execa(promtool, ['test', 'rules', join(dir, 'alerts.test.yaml')], { reject: false, all: true });
    expect(test.exitCode, test.all).toBe(0);
    expect(test.all).toMatch(/SUCCESS/);
  });

  it('promtool test rules fails when a rule does not fire as the tests expect', async () => {
    // the unit tests must be able to fail: a threshold ten times higher silences the loss alerts
    const promtool = await goTool('promtool');
    const sub = await mkdtemp(join(dir, 'strict-'));
    const { groups } = await renderedRules({ metrics: { enabled: true, prometheusRule: { enabled: true, lossRatio: 0.5 } } });
    await writeFile(join(sub, 'rules.yaml'), stringify({ groups }));
    await copyFile(join(ROOT, 'test/unit/packaging/alerts.promtool.yaml'), join(sub, 'alerts.test.yaml'));
    const test = await execa(promtool, ['test', 'rules', join(sub, 'alerts.test.yaml')], { reject: false, all: true });
    expect(test.exitCode).not.toBe(0);
    expect(test.all).toMatch(/PodtapCaptureLoss/);
  });
});

describe('dashboard', () => {
  const file = join(CHART, 'dashboards/podtap.json');

  it('queries only series the code exports', async () => {
    const dash = JSON.parse(await readFile(file, 'utf8')) as {
      panels: { type: string; title: string; targets?: { expr: string }[] }[];
      templating: { list: { query?: string | { query: string } }[] };
    };
    const exprs = [
      ...dash.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
      ...dash.templating.list.map((v) => (typeof v.query === 'object' ? v.query.query : '')).filter(Boolean),
    ];
    const used = exprs.flatMap(namesIn);
    expect(used.length).toBeGreaterThan(20);
    expect(used.filter((n) => !series.has(n))).toEqual([]);
    // every panel but the rows has a query
    expect(dash.panels.filter((p) => p.type !== 'row' && !p.targets?.length).map((p) => p.title)).toEqual([]);
  });

  it('is in the chart as a ConfigMap, when enabled, byte for byte', async () => {
    expect((await render()).objects.filter((o) => o.kind === 'ConfigMap')).toEqual([]);
    const r = await render({ values: { metrics: { dashboard: { enabled: true } } } });
    const cm = r.objects.find((o) => o.kind === 'ConfigMap') as K8sObject & { data: Record<string, string> };
    expect(cm.metadata.labels?.grafana_dashboard).toBe('1');
    expect(cm.data['podtap.json']).toBe((await readFile(file, 'utf8')).trimEnd());
  });
});
