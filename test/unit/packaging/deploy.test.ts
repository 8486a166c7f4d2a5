/**
 * deploy/ is the chart rendered with its default values as a kustomize base:
 * it must not drift from the chart, and `kubectl apply -k` of it must work.
 */
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevCluster, type DevCluster } from './lib/cluster.ts';
import { policyViolations } from './lib/policy.ts';
import { ROOT, parseObjects, renderKustomize, type K8sObject } from './lib/render.ts';

const DEPLOY = join(ROOT, 'deploy');
const REGENERATE = 'GO111MODULE=off GOPATH=/usr/share/gocode go run ./tools/helm-render -kustomize deploy charts/podtap';

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(relative(dir, join(e.parentPath, e.name)));
  }
  return out.filter((f) => f !== 'collector-tokens.env').sort();
}

let fresh: string;
let cluster: DevCluster | undefined;
beforeAll(async () => {
  fresh = await mkdtemp(join(tmpdir(), 'podtap-deploy-'));
  await renderKustomize(fresh);
}, 60_000);
afterAll(async () => {
  await rm(fresh, { recursive: true, force: true });
  await cluster?.close();
});

describe('deploy/ (kustomize base)', () => {
  it('is what the chart renders with its default values (regenerate it when this fails)', async () => {
    expect(await files(DEPLOY), `deploy/ has other files than a fresh render: ${REGENERATE}`).toEqual(await files(fresh));
    for (const f of await files(fresh)) {
      const want = await readFile(join(fresh, f), 'utf8');
      const have = await readFile(join(DEPLOY, f), 'utf8');
      if (f.endsWith('.yaml')) {
        // in substance: the same objects, whatever the formatting and comments
        expect(parseObjects(have), `deploy/${f} differs from the chart: ${REGENERATE}`).toEqual(parseObjects(want));
      } else {
        expect(have, `deploy/${f}: ${REGENERATE}`).toBe(want);
      }
    }
  });

  it('holds no Helm hook and keeps the security rules', async () => {
    const objects = parseObjects(await readFile(join(DEPLOY, 'podtap.yaml'), 'utf8'));
    expect(objects.filter((o) => o.metadata.annotations?.['helm.sh/hook'])).toEqual([]);
    expect(objects.filter((o) => o.kind === 'Secret')).toEqual([]);
    expect(policyViolations(objects)).toEqual([]);
  });

  it('builds with kubectl kustomize once the tokens file exists, and applies to the API', async () => {
    const work = await mkdtemp(join(tmpdir(), 'podtap-kustomize-'));
    try {
      await cp(DEPLOY, work, { recursive: true });
      // without the tokens file kustomize refuses, naming it
      const missing = await execa('kubectl', ['kustomize', work], { reject: false });
      expect(missing.exitCode).not.toBe(0);
      expect(missing.stderr).toContain('collector-tokens.env');
      await writeFile(join(work, 'collector-tokens.env'), 'token=tunnel-token-0123456789\napi-token=api-token-0123456789\n');
      const built = await execa('kubectl', ['kustomize', work], { reject: false });
      expect(built.exitCode, built.stderr).toBe(0);
      const objects = parseObjects(built.stdout);
      const secret = objects.find((o) => o.kind === 'Secret')!;
      expect(secret.metadata.name).toMatch(/^podtap-collector-token-[a-z0-9]{10}$/);
      expect(Object.keys(secret.data as object).sort()).toEqual(['api-token', 'token']);
      // kustomize points every reference at the generated name
      const text = built.stdout;
      expect(text).not.toMatch(/secretName: podtap-collector-token\s*$/m);
      expect(text.match(new RegExp(secret.metadata.name, 'g'))!.length).toBeGreaterThanOrEqual(4);
      expect(objects.map((o) => o.kind)).toEqual(expect.arrayContaining(['Namespace', 'CustomResourceDefinition', 'DaemonSet', 'Deployment']));

      cluster = await startDevCluster();
      const byKind = (pred: (o: K8sObject) => boolean) => objects.filter(pred);
      const first = await cluster.apply(byKind((o) => o.kind === 'Namespace' || o.kind === 'CustomResourceDefinition'), { real: true });
      expect(first.exitCode, first.stderr).toBe(0);
      const rest = byKind((o) => o.kind !== 'Namespace' && o.kind !== 'CustomResourceDefinition');
      const r = await cluster.apply(rest);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout.split('\n').filter((l) => l.endsWith('created (server dry run)'))).toHaveLength(rest.length);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});
