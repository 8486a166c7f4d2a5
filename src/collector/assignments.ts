/**
 * The collector's allow-set fed from the assignments the controller writes
 * (issue 9 part 2): an announcement is admitted only for a (policy
 * namespace, policy, node) that an assignment names, so a node's key cannot
 * open a stream for a policy the controller never gave that node, and a
 * policy's streams are revoked as soon as its assignment is stopped or gone.
 *
 * The controller stores them as SniffNodeAssignments in the install
 * namespace, one object per node with an entry per policy; an AssignmentView
 * on that namespace (every node's objects, no label selector) expands them
 * into one assignment per (policy, node) and tells of each assignment added,
 * changed or gone, whatever else its object holds. An entry removed from a
 * node's object revokes its stream while the object's other entries stay.
 * Until the first list arrives the set is untouched and empty: nothing is
 * admitted (fail closed; agents announce again every few seconds). From then
 * on each event adds or removes the one stream it changes, and every relist
 * (the first and any after a lost watch) replaces the whole set.
 *
 * Only assignments towards this collector count when its own addresses are
 * known (`addresses`: the pod's IPs, from the downward API): the controller
 * resolves a policy's collector to one of them. Stopped assignments (the
 * policy completed) do not count. A change that leaves an assignment's stream
 * as it was (its pods, its status) changes nothing here.
 */
import { AssignmentView, type SniffAssignment } from '../api/index.ts';
import { objectKey, type KubeClient } from '../k8s/index.ts';
import type { Logger } from '../util/log.ts';
import type { AssignedStream, AssignmentSet } from './admission.ts';

export interface AssignmentFeedOptions {
  client: KubeClient;
  /** where the SniffNodeAssignments live (the install's namespace) */
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

/** The stream an assignment admits, or undefined when it admits none. */
export function assignedStream(a: Pick<SniffAssignment, 'spec'>, addresses?: readonly string[]): AssignedStream | undefined {
  const s = a.spec;
  if (s.stopped || !s.nodeName || !s.policy?.name || !s.policy.namespace) return undefined;
  if (addresses?.length && !addresses.includes(s.config?.collector?.address ?? '')) return undefined;
  return { namespace: s.policy.namespace, policy: s.policy.name, node: s.nodeName };
}

const streamKey = (s: AssignedStream | undefined): string => (s ? `${s.namespace}/${s.policy}/${s.node}` : '');

export function startAssignmentFeed(opts: AssignmentFeedOptions): AssignmentFeed {
  const log = opts.logger.child({ component: 'assignment-feed', namespace: opts.namespace });
  const streamOf = (a: SniffAssignment): AssignedStream | undefined => assignedStream(a, opts.addresses);
  const view = new AssignmentView({
    client: opts.client,
    namespace: opts.namespace,
    logger: log,
    // (an agent's status report, a pod come or gone: the stream is the same, no event)
    equal: (a, b) => streamKey(streamOf(a)) === streamKey(streamOf(b)),
  });
  /** assignment key → the stream it admits (assignment names are one per (policy namespace, policy, node)) */
  const streams = new Map<string, AssignedStream>();
  const changed = (a: SniffAssignment, now: AssignedStream | undefined): void => {
    const key = objectKey(a);
    const was = streams.get(key);
    if (now) streams.set(key, now);
    else streams.delete(key);
    if (!view.hasSynced()) return; // (the first list is applied whole, by the relist hook)
    if (was && streamKey(was) !== streamKey(now)) opts.set.delete(was);
    if (now) opts.set.add(now);
  };
  view.on({
    add: (a) => changed(a, streamOf(a)),
    update: (_old, a) => changed(a, streamOf(a)),
    delete: (a) => changed(a, undefined),
  });
  view.onRelist(() => {
    opts.set.replace(streams.values());
    log.info({ streams: streams.size }, 'assigned streams');
  });
  view.start();
  return { synced: view.waitForSync(), stop: () => view.stop() };
}
