/**
 * What `kubectl podtap capture TARGET` names, as kubectl spells it: a pod
 * (NAME, pod/NAME, po/NAME) or a workload whose pods are captured through its
 * own selector (deploy/NAME, sts/NAME, ds/NAME, rs/NAME, and the long forms).
 */
import { ExitCode, UserError } from '../util/errors.ts';

export const WorkloadKinds = ['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet'] as const;
export type WorkloadKind = (typeof WorkloadKinds)[number];
export type Target = { kind: 'Pod'; name: string } | { kind: WorkloadKind; name: string };

const TYPES: Record<string, Target['kind']> = {
  po: 'Pod', pod: 'Pod', pods: 'Pod',
  deploy: 'Deployment', deployment: 'Deployment', deployments: 'Deployment',
  sts: 'StatefulSet', statefulset: 'StatefulSet', statefulsets: 'StatefulSet',
  ds: 'DaemonSet', daemonset: 'DaemonSet', daemonsets: 'DaemonSet',
  rs: 'ReplicaSet', replicaset: 'ReplicaSet', replicasets: 'ReplicaSet',
};

export function parseTarget(arg: string): Target {
  const slash = arg.indexOf('/');
  if (slash < 0) return { kind: 'Pod', name: arg };
  const type = arg.slice(0, slash).toLowerCase().replace(/\.apps$/, '');
  const name = arg.slice(slash + 1);
  const kind = TYPES[type];
  if (!kind) {
    throw new UserError(`"${arg}": capture takes a pod or a deploy/, sts/, ds/ or rs/ NAME, not "${arg.slice(0, slash)}"`, {
      exitCode: ExitCode.usage,
      hint: 'e.g. kubectl podtap capture deploy/web, or -l app=web',
    });
  }
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name)) throw new UserError(`"${arg}": "${name}" is not a Kubernetes name`, { exitCode: ExitCode.usage });
  return { kind, name };
}
