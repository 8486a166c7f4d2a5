/**
 * Renders charts/podtap with tools/helm-render (Helm's template engine: Go's
 * text/template + sprig, built from Debian's Go source packages, offline).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { parseAllDocuments, stringify } from 'yaml';

export const ROOT = new URL('../../../../', import.meta.url).pathname.replace(/\/$/, '');
export const CHART = join(ROOT, 'charts/podtap');
const SOURCE = join(ROOT, 'tools/helm-render/main.go');
const GOPATH = '/usr/share/gocode';
const CACHE = join(ROOT, 'node_modules/.cache/podtap-helm-render');

export const GO_PACKAGES = 'golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev';

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

export interface Rendered {
  /** The manifests as helm-render printed them. */
  text: string;
  objects: K8sObject[];
  /** values.yaml merged with the overrides, as the templates saw them. */
  values: Record<string, unknown>;
}

export function goEnv(): Record<string, string> {
  return {
    GO111MODULE: 'off',
    GOPATH,
    GOFLAGS: '',
    GOENV: 'off',
    GOCACHE: join(CACHE, 'go-build'),
    GOTOOLCHAIN: 'local',
  };
}

let built: Promise<string> | undefined;

/** The renderer binary, built once per source version. Fails with the Debian packages to install. */
export function helmRender(): Promise<string> {
  built ??= (async () => {
    const go = await execa('sh', ['-c', 'command -v go'], { reject: false });
    const sprig = existsSync(join(GOPATH, 'src/github.com/Masterminds/sprig/functions.go'));
    const sigsYaml = existsSync(join(GOPATH, 'src/sigs.k8s.io/yaml/yaml.go'));
    if (go.exitCode !== 0 || !sprig || !sigsYaml) {
      throw new Error(
        `the chart tests render with Go's text/template and sprig, from Debian packages: missing ` +
          `${[go.exitCode !== 0 && 'go', !sprig && 'sprig', !sigsYaml && 'sigs.k8s.io/yaml'].filter(Boolean).join(', ')}; ` +
          `install them with: apt-get install ${GO_PACKAGES} (or run scripts/setup.sh)`,
      );
    }
    const key = createHash('sha256').update(await readFile(SOURCE)).digest('hex').slice(0, 12);
    const bin = join(CACHE, `helm-render-${key}`);
    if (!existsSync(bin)) {
      await mkdir(CACHE, { recursive: true });
      // test files run in parallel workers: each builds to its own name, the rename is atomic
      const tmp = `${bin}.${process.pid}.${process.hrtime.bigint()}.tmp`;
      const r = await execa('go', ['build', '-o', tmp, '.'], { cwd: join(ROOT, 'tools/helm-render'), env: goEnv(), reject: false, all: true });
      if (r.exitCode !== 0) throw new Error(`building tools/helm-render failed:\n${r.all}`);
      await rename(tmp, bin);
    }
    return bin;
  })();
  return built;
}

export function parseObjects(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((d) => {
      if (d.errors.length) throw new Error(`rendered YAML does not parse: ${d.errors[0]!.message}`);
      return d.toJS() as K8sObject | null;
    })
    .filter((o): o is K8sObject => o !== null);
}

export interface RenderOptions {
  values?: Record<string, unknown>;
  apiVersions?: string[];
  includeCrds?: boolean;
  notes?: boolean;
  extraArgs?: string[];
}

/** Render the chart with these overrides; throws with the renderer's message when a template fails. */
export async function render(opts: RenderOptions = {}): Promise<Rendered> {
  const bin = await helmRender();
  const dir = await mkdtemp(join(tmpdir(), 'podtap-render-'));
  try {
    const args: string[] = [];
    if (opts.values) {
      await writeFile(join(dir, 'values.yaml'), stringify(opts.values));
      args.push('-f', join(dir, 'values.yaml'));
    }
    for (const v of opts.apiVersions ?? []) args.push('-api-versions', v);
    if (opts.includeCrds) args.push('-include-crds');
    if (opts.notes) args.push('-notes');
    args.push('-values-out', join(dir, 'merged.json'), ...(opts.extraArgs ?? []), CHART);
    const r = await execa(bin, args, { reject: false });
    if (r.exitCode !== 0) throw new Error(r.stderr.trim());
    const values = JSON.parse(await readFile(join(dir, 'merged.json'), 'utf8')) as Record<string, unknown>;
    return { text: r.stdout, objects: opts.notes ? [] : parseObjects(r.stdout), values };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Write a kustomize base from the chart's defaults (what deploy/ must be). */
export async function renderKustomize(outDir: string): Promise<void> {
  const bin = await helmRender();
  const r = await execa(bin, ['-kustomize', outDir, CHART], { reject: false });
  if (r.exitCode !== 0) throw new Error(r.stderr.trim());
}

// `node test/unit/packaging/lib/render.ts`: build the renderer now (scripts/test.sh
// does, before the suite: a cold Go build on 2 busy cores can outlast a test hook)
if (import.meta.main) {
  console.log(await helmRender());
}
