/**
 * `podtap crds`: the CRDs this version of podtap serves (generated from
 * src/api, as `npm run gen` writes them into the chart), printed, applied, or
 * rid of those of an earlier version. Helm installs a chart's crds/ only on
 * install, never on upgrade; the chart's pre-upgrade hook runs `podtap crds
 * apply` from the new image, so the CRDs always match the code that is about
 * to run, and its post-upgrade hook runs `podtap crds prune`
 * (docs/install.md#upgrade).
 */
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { buildCrds, CRD_HEADER } from '../api/crd.ts';
import { KubeClient, isNotFound, loadKubeConfig, type KubeObject, type ResourceRef } from '../k8s/index.ts';
import { ExitCode, UserError } from '../util/errors.ts';

const HELP = `Usage: podtap crds print | apply | prune [--rolled-out NS/DAEMONSET] [--kubeconfig FILE]

The CustomResourceDefinitions of this podtap version (SniffPolicy,
SniffNodeAssignment).

  print     write them as YAML to standard output (kubectl apply -f -)
  apply     bring them into the cluster: one that exists gets this version's
            spec, its labels and annotations kept; one that does not (a kind
            this version adds) is created, by server-side apply to its name.
            The chart's pre-upgrade hook runs this. Needs get, update, patch
            and create on these customresourcedefinitions.
  prune     delete the CRDs of earlier versions that this one no longer
            serves, and with them every object of theirs:
            sniffassignments.podtap.io (podtap 0.1's work orders, one per
            policy and node; the controller now writes SniffNodeAssignments).
            Needs get and delete on them. The chart's post-upgrade hook runs
            this.

Options:
  --rolled-out NS/DAEMONSET
            with prune: delete nothing unless the DaemonSet (the agents) runs
            its current template on every node. An agent of podtap 0.1
            detaches its captures when its work orders are deleted; the
            agent that replaces it adopts them as they run. Needs get on
            that DaemonSet.
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
        await createCrd(client, want);
        lines.push(`${name}: created`);
        continue;
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

/**
 * Create a CRD by server-side apply to its name rather than by POST: the API
 * server then authorizes the create with the name, so the hook's ClusterRole
 * can grant it for podtap's CRDs only (RBAC cannot limit a POST by name).
 */
async function createCrd(client: KubeClient, want: Crd): Promise<void> {
  const name = want.metadata.name!;
  try {
    await client.patch(CRD_RESOURCE, undefined, name, want, 'apply', { fieldManager: 'podtap-crds' });
  } catch (err) {
    throw new UserError(`creating CustomResourceDefinition ${name}`, { exitCode: ExitCode.failure, cause: err });
  }
}

/** CRDs of earlier podtap versions that this one no longer serves. */
export const OBSOLETE_CRDS = ['sniffassignments.podtap.io'] as const;

const DAEMONSET: ResourceRef = { group: 'apps', version: 'v1', plural: 'daemonsets', kind: 'DaemonSet', namespaced: true };

interface DaemonSet extends KubeObject {
  status?: { observedGeneration?: number; desiredNumberScheduled?: number; updatedNumberScheduled?: number };
}

/** Why @ds does not yet run its current template on every node, or undefined when it does. */
export function rolloutPending(ds: DaemonSet): string | undefined {
  const st = ds.status ?? {};
  const want = st.desiredNumberScheduled ?? 0;
  const updated = st.updatedNumberScheduled ?? 0;
  if ((st.observedGeneration ?? 0) < (ds.metadata.generation ?? 0)) return 'its controller has not seen its current template yet';
  if (updated < want) return `${updated} of its ${want} pods run its current template`;
  return undefined;
}

/**
 * Delete OBSOLETE_CRDS (the API server deletes their objects with them);
 * returns one line per CRD for the log. With @rolledOut, one that exists is
 * kept while that DaemonSet's rollout is under way.
 */
export async function pruneCrds(client: KubeClient, rolledOut?: { namespace: string; name: string }): Promise<string[]> {
  const present: string[] = [];
  const lines: string[] = [];
  for (const name of OBSOLETE_CRDS) {
    try {
      await client.get(CRD_RESOURCE, undefined, name);
      present.push(name);
    } catch (err) {
      if (!isNotFound(err)) throw new UserError(`reading CustomResourceDefinition ${name}`, { exitCode: ExitCode.unreachable, cause: err });
      lines.push(`${name}: absent`);
    }
  }
  if (present.length > 0 && rolledOut) {
    let ds: DaemonSet;
    try {
      ds = await client.get<DaemonSet>(DAEMONSET, rolledOut.namespace, rolledOut.name);
    } catch (err) {
      throw new UserError(`reading DaemonSet ${rolledOut.namespace}/${rolledOut.name}`, { exitCode: isNotFound(err) ? ExitCode.failure : ExitCode.unreachable, cause: err });
    }
    const pending = rolloutPending(ds);
    if (pending) {
      return [
        ...lines,
        ...present.map((name) => `${name}: kept: DaemonSet ${rolledOut.namespace}/${rolledOut.name} is rolling out (${pending}); delete it once it has: kubectl delete crd ${name}`),
      ];
    }
  }
  for (const name of present) {
    try {
      await client.delete(CRD_RESOURCE, undefined, name);
      lines.push(`${name}: deleted`);
    } catch (err) {
      if (!isNotFound(err)) throw new UserError(`deleting CustomResourceDefinition ${name}`, { exitCode: ExitCode.failure, cause: err });
      lines.push(`${name}: absent`);
    }
  }
  return lines;
}

export async function crdsCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { kubeconfig: { type: 'string' }, 'rolled-out': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (err) {
    throw new UserError(err instanceof Error ? err.message : String(err), { exitCode: ExitCode.usage, hint: 'see podtap crds --help' });
  }
  const { values, positionals } = parsed;
  const [action, ...rest] = positionals;
  if (values.help) {
    console.log(HELP);
    return ExitCode.ok;
  }
  if (rest.length > 0 || (action !== 'print' && action !== 'apply' && action !== 'prune')) {
    console.error(HELP);
    return ExitCode.usage;
  }
  let rolledOut: { namespace: string; name: string } | undefined;
  if (values['rolled-out'] !== undefined) {
    const m = /^([a-z0-9][-a-z0-9]*)\/([a-z0-9][-a-z0-9.]*)$/.exec(values['rolled-out']);
    if (action !== 'prune' || !m) throw new UserError(`--rolled-out: ${action !== 'prune' ? 'only with prune' : `"${values['rolled-out']}" is not NAMESPACE/DAEMONSET`}`, { exitCode: ExitCode.usage });
    rolledOut = { namespace: m[1]!, name: m[2]! };
  }
  if (action === 'print') {
    process.stdout.write(buildCrds().map((c) => `${CRD_HEADER.join('\n')}\n${stringify(c, { lineWidth: 0 })}`).join('---\n'));
    return ExitCode.ok;
  }
  const client = new KubeClient(loadKubeConfig(values.kubeconfig), { userAgent: 'podtap-crds' });
  for (const line of action === 'apply' ? await applyCrds(client) : await pruneCrds(client, rolledOut)) console.log(line);
  return ExitCode.ok;
}
