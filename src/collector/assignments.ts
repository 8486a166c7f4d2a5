/**
 * The collector's allow-set fed from the SniffAssignments the controller
 * writes (issue 9 part 2): an announcement is admitted only for a (policy
 * namespace, policy, node) that an assignment names, so a node's key cannot
 * open a stream for a policy the controller never gave that node, and a
 * policy's streams are revoked as soon as its assignment is stopped or gone.
 *
 * One informer on the namespace the assignments live in (the install's);
 * after every event and every relist the whole set is recomputed from the
 * informer's store and replaces the allow-set (a few hundred entries at most:
 * one per policy and node). Until the first list arrives the set is empty:
 * nothing is admitted (fail closed; agents announce again every few seconds).
 *
 * Only assignments towards this collector count when its own addresses are
 * known (`addresses`: the pod's IPs, from the downward API): the controller
 * resolves a policy's collector to one of them. Stopped assignments (the
 * policy completed) do not count.
 */
import type { SniffAssignment } from '../api/index.ts';
import { Informer, type KubeClient, type KubeObject } from '../k8s/index.ts';
import { PodtapResources } from '../api/resources.ts';
import type { Logger } from '../util/log.ts';
import type { AssignedStream, AssignmentSet } from './admission.ts';

export interface AssignmentFeedOptions {
  client: KubeClient;
  /** where the SniffAssignments live (the install's namespace) */
  namespace: string;
  set: AssignmentSet;
  /** this collector's addresses: only assignments towards them count (none given: every assignment) */
  addresses?: readonly string[] | undefined;
  logger: Logger;
}

export interface AssignmentFeed {
  /** resolves once the first list is in the set */
  synced: Promise<void>;
  stop(): Promise<void>;
}

type Assignment = KubeObject & { spec?: Partial<SniffAssignment['spec']> & { policy?: { name?: string; namespace?: string } } };

/**
 * The stream an assignment admits, or undefined when it admits none. The
 * policy's namespace is `spec.policy.namespace` (assignments in the install's
 * namespace), else the assignment's own (assignments beside their policy).
 */
export function assignedStream(a: Assignment, addresses?: readonly string[]): AssignedStream | undefined {
  const s = a.spec;
  const namespace = s?.policy?.namespace ?? a.metadata.namespace;
  if (!s || s.stopped || !s.nodeName || !s.policy?.name || !namespace) return undefined;
  if (addresses?.length && !addresses.includes(s.config?.collector?.address ?? '')) return undefined;
  return { namespace, policy: s.policy.name, node: s.nodeName };
}

export function startAssignmentFeed(opts: AssignmentFeedOptions): AssignmentFeed {
  const log = opts.logger.child({ component: 'assignment-feed', namespace: opts.namespace });
  const informer = new Informer<Assignment>({ client: opts.client, resource: PodtapResources.sniffAssignments, namespace: opts.namespace, logger: log });
  let last: string | undefined;
  const refresh = (): void => {
    if (!informer.hasSynced()) return;
    const streams = new Map<string, AssignedStream>();
    for (const a of informer.store.list()) {
      const s = assignedStream(a, opts.addresses);
      if (s) streams.set(`${s.namespace}/${s.policy}/${s.node}`, s);
    }
    const key = [...streams.keys()].sort().join(',');
    if (key === last) return; // (an assignment's status changed: the set did not)
    last = key;
    opts.set.replace(streams.values());
    log.info({ streams: streams.size }, 'assigned streams');
  };
  informer.on({ add: refresh, update: refresh, delete: refresh });
  informer.onRelist(refresh);
  informer.start();
  const synced = informer.waitForSync().then(refresh);
  return { synced, stop: () => informer.stop() };
}
