/**
 * Reconcile one SniffPolicy (`namespace/name`), level-triggered: read the
 * cached world, compute the assignments that should exist (one per node with
 * selected pods), create/replace/delete to converge, and write the status.
 * Idempotent: a second run over the same world writes nothing.
 *
 * planPolicy is pure (world in, writes and status out) and is what the unit
 * tables exercise; Reconciler executes a plan against the API.
 *
 * Outcomes: success; requeue (a deadline or a staleness check is due later);
 * terminal (the spec is invalid: Ready=False InvalidSpec, no retry — the next
 * edit of the policy triggers a new reconcile); or a thrown error (API
 * errors, 409s from a lagging cache): the caller retries with backoff.
 */
import {
  API_VERSION,
  ASSIGNMENT_KIND,
  ConditionType,
  SniffPolicySpecSchema,
  SniffPolicyStatusSchema,
  assignmentLabels,
  assignmentName,
  captureConfig,
  describeIssues,
  findCondition,
  rfc3339,
  type AssignmentLimits,
  type CaptureConfig,
  type RateLimit,
  type SniffAssignment,
  type SniffAssignmentSpec,
  type SniffPolicySpec,
  type SniffPolicyStatus,
} from '../api/index.ts';
import { isNotFound, type Limiter } from '../k8s/index.ts';
import { jsonEqual, replacingMergePatch } from '../util/json.ts';
import type { Logger } from '../util/log.ts';
import { excludeDestinations, resolveCollector, type CollectorResolution } from './collector.ts';
import { destinationRefusal, type DestinationAllowList } from './destinations.ts';
import { evaluateLimits, nodeCap } from './limits.ts';
import { slimPolicy, type PolicyObject } from './objects.ts';
import type { RecentPolicyWrites } from './recent.ts';
import { selectPods, type Selection } from './selection.ts';
import { aggregateStatus, collectorSummary, eventType, readyCondition, statusEqual, type NodeInput } from './status.ts';
import type { World } from './world.ts';
import { byCodePoint } from '../util/compare.ts';

/** At most this many pods per assignment (the CRD's bound). */
const MAX_PODS_PER_NODE = 1024;

export interface PlanInput {
  world: World;
  namespace: string;
  name: string;
  now: Date;
  staleMs: number;
  /** The install namespace, where assignments are written. */
  assignmentNamespace: string;
  /** Where policies may send copies (the admin's list). */
  destinations: DestinationAllowList;
  /** The admin's ceiling on each policy's per-node rates, and their default (0 = none). */
  rateCeiling?: RateLimit | undefined;
}

/**
 * Each rate of @config at most @ceiling's (0 = no ceiling): a policy that
 * sets none, or more, gets the admin's. N policies on one pod make N copies;
 * this bounds what each can cost the node.
 */
export function capRate(config: CaptureConfig, ceiling: RateLimit | undefined): CaptureConfig {
  if (!ceiling) return config;
  const cap = (own: number, max: number) => (max === 0 ? own : own === 0 ? max : Math.min(own, max));
  return {
    ...config,
    rateLimit: {
      packetsPerSecond: cap(config.rateLimit.packetsPerSecond, ceiling.packetsPerSecond),
      bytesPerSecond: cap(config.rateLimit.bytesPerSecond, ceiling.bytesPerSecond),
    },
  };
}

export interface Plan {
  /** The policy, when it exists. */
  policy?: PolicyObject;
  creates: SniffAssignment[];
  /** Whole objects to PUT (with the resourceVersion they were read at). */
  updates: SniffAssignment[];
  deletes: SniffAssignment[];
  /** The status to write (when it differs from the current one); undefined: leave it. */
  status?: SniffPolicyStatus;
  outcome: 'success' | 'terminal';
  /** Reconcile again after this long (a limit's deadline, a node turning stale). */
  requeueAfterMs?: number;
}

/** The existing assignment's copy of what this controller owns, for comparison. */
function needsUpdate(existing: SniffAssignment, desired: SniffAssignment): { spec: boolean; meta: boolean } {
  const spec = !jsonEqual(existing.spec, desired.spec);
  const labels = existing.metadata.labels ?? {};
  const meta = Object.entries(desired.metadata.labels ?? {}).some(([k, v]) => labels[k] !== v);
  return { spec, meta };
}

/** What to PUT: the existing object with our labels and the desired spec. */
function updated(existing: SniffAssignment, desired: SniffAssignment): SniffAssignment {
  const { status: _status, ...rest } = existing;
  return {
    ...rest,
    metadata: { ...existing.metadata, labels: { ...existing.metadata.labels, ...desired.metadata.labels } },
    spec: desired.spec,
  };
}

function previousStatus(policy: PolicyObject): SniffPolicyStatus | undefined {
  if (!policy.status) return undefined;
  const r = SniffPolicyStatusSchema.safeParse(policy.status);
  return r.success ? r.data : undefined;
}

function totals(assignments: readonly SniffAssignment[]): { packets: number; bytes: number } {
  let packets = 0;
  let bytes = 0;
  for (const a of assignments) {
    packets += a.status?.counters?.mirrored ?? 0;
    bytes += a.status?.counters?.bytes ?? 0;
  }
  return { packets, bytes };
}

function nodeInput(a: SniffAssignment, specChanged = false): NodeInput {
  return {
    node: a.spec.nodeName,
    pods: a.spec.pods?.length ?? 0,
    assignment: { generation: a.metadata.generation, creationTimestamp: a.metadata.creationTimestamp, status: a.status, specChanged },
  };
}

export function planPolicy(input: PlanInput): Plan {
  const { world, namespace, name, now, staleMs } = input;
  const existing = world.assignmentsOf(namespace, name);
  const policy = world.policy(namespace, name);
  // Gone or going: its assignments go too. Only the controller removes them:
  // they live in the install namespace, where no owner reference can reach.
  if (!policy || policy.metadata.deletionTimestamp) {
    return { ...(policy ? { policy } : {}), creates: [], updates: [], deletes: [...existing], outcome: 'success' };
  }
  const generation = policy.metadata.generation ?? 0;
  const previous = previousStatus(policy);
  const base = { policy, creates: [] as SniffAssignment[], updates: [] as SniffAssignment[], deletes: [] as SniffAssignment[] };

  // A policy that must not run at all: Ready=False with the reason, every
  // assignment deleted, no retry (the next edit triggers a reconcile).
  const refuse = (reason: 'InvalidSpec' | 'DestinationNotAllowed', message: string): Plan => {
    const { status } = aggregateStatus({ generation, previous, now, staleMs, nodes: [], namespace, blocker: { reason, message }, startTime: previous?.startTime });
    return { ...base, deletes: [...existing], status, outcome: 'terminal' };
  };
  const parsed = SniffPolicySpecSchema.safeParse(policy.spec);
  // Capture what the policy says or nothing: a spec we cannot read is not run on a stale copy.
  if (!parsed.success) {
    return refuse('InvalidSpec', describeIssues(parsed.error).map((l) => (l.startsWith('(root)') ? `spec${l.slice(6)}` : `spec.${l}`)).join('; '));
  }
  const spec = parsed.data;
  // Not the admin's destination: nothing is mirrored there, running assignments included.
  const refusal = destinationRefusal(spec, namespace, input.destinations);
  if (refusal) return refuse('DestinationNotAllowed', refusal);
  const current = existing[0]?.spec?.config?.collector?.address;
  const collector = resolveCollector(spec, namespace, world, current);

  if (!collector.ok) {
    // Leave running assignments alone: a collector Service whose endpoints are
    // briefly unready (a rolling restart) should not detach every node.
    const { status } = aggregateStatus({
      generation,
      previous,
      now,
      staleMs,
      nodes: existing.map((a) => nodeInput(a)),
      namespace,
      blocker: { reason: collector.reason, message: collector.message },
      startTime: previous?.startTime,
      collector: collectorSummary(spec, namespace, undefined),
    });
    return { ...base, status, outcome: 'success' };
  }

  const selection = selectPods({
    podSelector: spec.podSelector,
    podNames: spec.podNames,
    nodeSelector: spec.nodeSelector,
    pods: world.podsInNamespace(namespace),
    node: (n) => world.node(n),
    // every podtap destination, not only this policy's: no loops between policies
    exclude: excludeDestinations(collector.exclude, input.destinations.services, world),
  });
  return planAssignments({ ...input, policy, previous, generation, spec, collector, selection, existing });
}

interface AssignmentPlanInput extends PlanInput {
  policy: PolicyObject;
  previous: SniffPolicyStatus | undefined;
  generation: number;
  spec: SniffPolicySpec;
  collector: Extract<CollectorResolution, { ok: true }>;
  selection: Selection;
  existing: readonly SniffAssignment[];
}

function planAssignments(p: AssignmentPlanInput): Plan {
  const { policy, previous, generation, spec, collector, selection, existing, namespace, name, now } = p;
  const plan: Plan = { policy, creates: [], updates: [], deletes: [], outcome: 'success' };
  const nowStr = rfc3339(now);
  // The duration runs from the first reconcile that has something to capture,
  // not from the policy's creation: a policy waiting for its pods keeps its time.
  const startTime = previous?.startTime ?? (selection.selected > 0 ? nowStr : undefined);
  const sums = totals(existing);
  const limits = evaluateLimits(spec.limits, startTime, now, sums);
  // Completed sticks for a generation: counters can only drop (an assignment
  // deleted with its pods), which must not restart a finished capture. An
  // edit of the spec (say, a raised limit) is a new generation and resumes it.
  const prevDone = findCondition(previous?.conditions, ConditionType.Completed);
  const completed =
    prevDone?.status === 'True' && prevDone.observedGeneration === generation
      ? { message: prevDone.message, completionTime: previous?.completionTime ?? nowStr }
      : limits.reached
        ? { message: limits.reached, completionTime: nowStr }
        : undefined;

  const existingByName = new Map(existing.map((a) => [a.metadata.name!, a]));
  const nodes: NodeInput[] = [];
  const desired: SniffAssignment[] = [];
  if (completed) {
    // Stop every node and keep the assignments, so their final counters stay visible.
    for (const { status: _status, ...a } of existing) desired.push({ ...a, spec: { ...a.spec, stopped: true } });
  } else {
    const config = capRate(captureConfig(spec, { address: collector.address, port: collector.port }), p.rateCeiling);
    const created = policy.metadata.creationTimestamp;
    const policyRef = { namespace, name, uid: policy.metadata.uid ?? '', generation, ...(created ? { creationTimestamp: created } : {}) };
    for (const [nodeName, pods] of [...selection.byNode].sort(([a], [b]) => byCodePoint(a, b))) {
      const aName = assignmentName(namespace, name, nodeName);
      const prior = existingByName.get(aName);
      const counters = prior?.status?.counters;
      const aLimits: AssignmentLimits = {
        maxPackets: nodeCap(limits.leftPackets, counters?.mirrored ?? 0, prior?.spec?.limits?.maxPackets),
        maxBytes: nodeCap(limits.leftBytes, counters?.bytes ?? 0, prior?.spec?.limits?.maxBytes),
      };
      if (limits.deadline) aLimits.deadline = limits.deadline;
      const aSpec: SniffAssignmentSpec = {
        nodeName,
        policy: policyRef,
        config,
        pods: pods.slice(0, MAX_PODS_PER_NODE),
        limits: aLimits,
        stopped: false,
      };
      desired.push({
        apiVersion: API_VERSION,
        kind: ASSIGNMENT_KIND,
        metadata: { name: aName, namespace: p.assignmentNamespace, labels: assignmentLabels(namespace, name, nodeName) },
        spec: aSpec,
      });
    }
  }

  // A policy whose namespace is going away starts nothing new: its pods go too.
  const nsInfo = p.world.namespace(namespace);
  const terminating = nsInfo?.metadata.deletionTimestamp !== undefined || nsInfo?.status.phase === 'Terminating';
  const wanted = new Set<string>();
  for (const d of desired) {
    const dName = d.metadata.name!;
    wanted.add(dName);
    const e = existingByName.get(dName);
    if (!e) {
      if (terminating) continue;
      plan.creates.push(d);
      nodes.push({ node: d.spec.nodeName, pods: d.spec.pods.length });
      continue;
    }
    const diff = completed ? { spec: !jsonEqual(e.spec, d.spec), meta: false } : needsUpdate(e, d);
    if (diff.spec || diff.meta) plan.updates.push(completed ? d : updated(e, d));
    nodes.push({ ...nodeInput(e, diff.spec && !completed), pods: d.spec.pods.length });
  }
  for (const e of existing) if (!wanted.has(e.metadata.name!)) plan.deletes.push(e);

  const { status, nextCheckMs } = aggregateStatus({
    generation,
    previous,
    now,
    staleMs: p.staleMs,
    nodes,
    selection,
    namespace,
    startTime,
    completed,
    collector: collectorSummary(spec, namespace, collector),
  });
  plan.status = status;
  const due = [nextCheckMs, completed ? undefined : limits.deadlineMs].filter((t): t is number => t !== undefined).map((t) => t - now.getTime());
  if (due.length > 0) plan.requeueAfterMs = Math.max(0, Math.min(...due));
  return plan;
}

/** The API calls a reconcile makes. */
export interface ReconcileApi {
  /** A JSON merge patch of the policy's status subresource. */
  patchPolicyStatus(namespace: string, name: string, patch: { status: Record<string, unknown> }): Promise<PolicyObject>;
}

/** Where a reconcile's assignments go: the node writer (nodes.ts), which folds them into each node's objects. */
export interface AssignmentSink {
  submit(nodeName: string, policy: { namespace: string; name: string }, change: SniffAssignmentSpec | null): void;
}

export type EventSink = (policy: PolicyObject, type: 'Normal' | 'Warning', reason: string, message: string) => void;

export interface ReconcileResult {
  result: 'success' | 'requeue' | 'terminal';
  requeueAfterMs?: number;
  writes: number;
}

/** A reconcile that failed in a way retrying will not fix. */
export class TerminalError extends Error {
  constructor(message: string, opts?: { cause?: unknown }) {
    super(message, opts);
    this.name = 'TerminalError';
  }
}

export interface ReconcilerOptions {
  world: World;
  api: ReconcileApi;
  /** The assignments' writer: node by node, on its own queue. */
  assignments: AssignmentSink;
  limiter: Limiter;
  staleMs: number;
  events?: EventSink | undefined;
  now?: (() => Date) | undefined;
  /** Where writes are remembered until the caches show them (`world` should read through it: withRecentWrites). */
  recent?: RecentPolicyWrites | undefined;
  /** The install namespace, where assignments are written. */
  assignmentNamespace: string;
  /** Where policies may send copies (the admin's list). */
  destinations: DestinationAllowList;
  /** The admin's ceiling on each policy's per-node rates (capRate). */
  rateCeiling?: RateLimit | undefined;
}

/** The merge patch of the status subresource that makes it `next` (nulls for what went away). */
export function statusPatch(previous: Record<string, unknown> | undefined, next: SniffPolicyStatus): { status: Record<string, unknown> } {
  return { status: replacingMergePatch(previous ?? {}, next) as Record<string, unknown> };
}

export class Reconciler {
  private readonly opts: ReconcilerOptions;

  constructor(opts: ReconcilerOptions) {
    this.opts = opts;
  }

  async reconcile(key: string, log: Logger): Promise<ReconcileResult> {
    const i = key.indexOf('/');
    const namespace = key.slice(0, i);
    const name = key.slice(i + 1);
    const now = this.opts.now?.() ?? new Date();
    const plan = planPolicy({ world: this.opts.world, namespace, name, now, staleMs: this.opts.staleMs, assignmentNamespace: this.opts.assignmentNamespace, destinations: this.opts.destinations, rateCeiling: this.opts.rateCeiling });
    const { api, limiter, recent } = this.opts;
    const failures: unknown[] = [];
    const group = `${namespace}/${name}`;
    // The assignments go to the node writer, which writes every policy's
    // changes to a node in one go; their results come back through the
    // assignments' informer, which reconciles this policy again.
    const policyRef = { namespace, name };
    for (const a of [...plan.creates, ...plan.updates]) this.opts.assignments.submit(a.spec.nodeName, policyRef, a.spec);
    for (const a of plan.deletes) this.opts.assignments.submit(a.spec.nodeName, policyRef, null);
    const writes = plan.creates.length + plan.updates.length + plan.deletes.length;
    if (writes > 0) log.info({ created: plan.creates.length, updated: plan.updates.length, deleted: plan.deletes.length }, 'assignments handed to the nodes');

    let statusWritten = false;
    if (plan.policy && plan.status) {
      const before = plan.policy.status as SniffPolicyStatus | undefined;
      if (!statusEqual(before, plan.status)) {
        try {
          const updated = await limiter.run(() => api.patchPolicyStatus(namespace, name, statusPatch(plan.policy!.status, plan.status!)));
          recent?.policies.record(group, slimPolicy(updated), plan.policy.metadata.resourceVersion);
          statusWritten = true;
        } catch (err) {
          if (!isNotFound(err)) failures.push(err); // a policy deleted meanwhile has no status to write
        }
      }
      if (statusWritten) this.announce(plan.policy, before, plan.status, log);
    }

    if (failures.length > 0) throw new Error('writing the status failed', { cause: failures[0] });
    const total = writes + (statusWritten ? 1 : 0);
    if (plan.outcome === 'terminal') return { result: 'terminal', writes: total };
    if (plan.requeueAfterMs !== undefined) return { result: 'requeue', requeueAfterMs: plan.requeueAfterMs, writes: total };
    return { result: 'success', writes: total };
  }

  /** An Event when Ready changes status or reason (what `kubectl describe` shows). */
  private announce(policy: PolicyObject, before: SniffPolicyStatus | undefined, after: SniffPolicyStatus, log: Logger): void {
    const was = readyCondition(before);
    const now = readyCondition(after);
    if (!now || (was && was.status === now.status && was.reason === now.reason)) return;
    log.info({ ready: now.status, reason: now.reason }, 'ready condition changed');
    this.opts.events?.(policy, eventType(now.reason), now.reason, now.message);
  }
}
