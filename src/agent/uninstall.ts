/**
 * Is this agent going away for good? On uninstall Kubernetes deletes the
 * agent's DaemonSet, then its pods: the DaemonSet is gone or has a
 * deletionTimestamp when a pod gets SIGTERM. A rolling update or a node drain
 * leaves it in place — then capture must keep running for the next agent.
 */
import { hostname } from 'node:os';
import { httpStatus, isNotFound, type KubeClient } from '../k8s/index.ts';
import type { Logger } from '../util/log.ts';

interface OwnerRef {
  kind: string;
  name: string;
}

export async function uninstalling(client: KubeClient, namespace: string | undefined, log: Logger): Promise<boolean> {
  const podName = process.env.POD_NAME ?? hostname();
  if (!namespace) return false;
  try {
    const pod = await client.get<{ metadata: { ownerReferences?: OwnerRef[] } }>(
      { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true }, namespace, podName);
    const owner = pod.metadata.ownerReferences?.find((o) => o.kind === 'DaemonSet');
    if (!owner) return false;
    try {
      const ds = await client.get<{ metadata: { deletionTimestamp?: string } }>(
        { group: 'apps', version: 'v1', plural: 'daemonsets', kind: 'DaemonSet', namespaced: true }, namespace, owner.name);
      return Boolean(ds.metadata.deletionTimestamp);
    } catch (err) {
      return isNotFound(err);
    }
  } catch (err) {
    // 401/403: our service account or its RBAC is gone already — an uninstall
    // that skipped the chart's pre-delete hook
    const code = httpStatus(err);
    if (code === 401 || code === 403) return true;
    log.warn({ err }, 'could not tell an uninstall from a restart; keeping capture attached');
    return false;
  }
}
