/**
 * `podtap crds`: the CRDs this version of podtap serves (generated from
 * src/api, as `npm run gen` writes them into the chart), printed or applied.
 * Helm installs a chart's crds/ only on install, never on upgrade; the
 * chart's pre-upgrade hook runs `podtap crds apply` from the new image, so the
 * CRDs always match the code that is about to run (docs/install.md#upgrade).
 */
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { buildCrds, CRD_HEADER } from '../api/crd.ts';
import { KubeClient, isNotFound, loadKubeConfig, type KubeObject, type ResourceRef } from '../k8s/index.ts';
import { ExitCode, UserError } from '../util/errors.ts';

const HELP = `Usage: podtap crds print | apply [--kubeconfig FILE]

The CustomResourceDefinitions of this podtap version (SniffPolicy,
SniffAssignment).

  print     write them as YAML to standard output (kubectl apply -f -)
  apply     update them in the cluster: each must exist (helm install or
            kubectl apply made it); its spec becomes this version's, its
            labels and annotations are kept. The chart's pre-upgrade hook runs
            this. Needs get and update on customresourcedefinitions.

Options:
  --kubeconfig FILE   default: $KUBECONFIG, in-cluster, ~/.kube/config
  --help`;

export const CRD_RESOURCE: ResourceRef = { group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions', kind: 'CustomResourceDefinition', namespaced: false };

type Crd = KubeObject & { spec: unknown };

/** Does @have hold everything @want says? (The API server adds defaults, and orders keys its own way.) */
export function contains(have: unknown, want: unknown): boolean {
  if (Array.isArray(want)) return Array.isArray(have) && have.length === want.length && want.every((w, i) => contains(have[i], w));
  if (want !== null && typeof want === 'object') {
    if (have === null || typeof have !== 'object' || Array.isArray(have)) return false;
    return Object.entries(want).every(([k, w]) => contains((have as Record<string, unknown>)[k], w));
  }
  return have === want;
}

/** Bring each CRD of this version into the cluster; returns one line per CRD for the log. */
export async function applyCrds(client: KubeClient): Promise<string[]> {
  const lines: string[] = [];
  for (const want of buildCrds() as Crd[]) {
    const name = want.metadata.name!;
    let have: Crd;
    try {
      have = await client.get<Crd>(CRD_RESOURCE, undefined, name);
    } catch (err) {
      if (isNotFound(err)) {
        throw new UserError(`CustomResourceDefinition ${name} does not exist: install it first (kubectl apply -f charts/podtap/crds/, or podtap crds print | kubectl apply -f -)`, {
          exitCode: ExitCode.failure,
          cause: err,
        });
      }
      throw new UserError(`reading CustomResourceDefinition ${name}`, { exitCode: ExitCode.unreachable, cause: err });
    }
    if (contains(have.spec, want.spec)) {
      lines.push(`${name}: unchanged`);
      continue;
    }
    const next: Crd = {
      ...want,
      metadata: {
        ...have.metadata,
        labels: { ...have.metadata.labels, ...want.metadata.labels },
        annotations: { ...have.metadata.annotations, ...want.metadata.annotations },
      },
    };
    try {
      await client.replace(CRD_RESOURCE, next);
    } catch (err) {
      throw new UserError(`updating CustomResourceDefinition ${name}`, { exitCode: ExitCode.failure, cause: err });
    }
    lines.push(`${name}: updated`);
  }
  return lines;
}

export async function crdsCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { kubeconfig: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  } catch (err) {
    throw new UserError(err instanceof Error ? err.message : String(err), { exitCode: ExitCode.usage, hint: 'see podtap crds --help' });
  }
  const { values, positionals } = parsed;
  const [action, ...rest] = positionals;
  if (values.help) {
    console.log(HELP);
    return ExitCode.ok;
  }
  if (rest.length > 0 || (action !== 'print' && action !== 'apply')) {
    console.error(HELP);
    return ExitCode.usage;
  }
  if (action === 'print') {
    process.stdout.write(buildCrds().map((c) => `${CRD_HEADER.join('\n')}\n${stringify(c, { lineWidth: 0 })}`).join('---\n'));
    return ExitCode.ok;
  }
  const client = new KubeClient(loadKubeConfig(values.kubeconfig), { userAgent: 'podtap-crds' });
  for (const line of await applyCrds(client)) console.log(line);
  return ExitCode.ok;
}
