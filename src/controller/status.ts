/**
 * SniffPolicy.status from what the agents report on the assignments. Pure.
 *
 * A node is ready when its agent reports Attached for the assignment's
 * current generation, says the collector is reachable, and has reported
 * within the staleness window. Ready is True when every node with selected
 * pods is ready; otherwise it carries the most actionable reason, in this
 * order: what blocks everything (InvalidSpec, CollectorNotFound), a reached
 * limit, nothing to capture (NoPodsSelected, NoNodesMatched), what an agent
 * cannot do (KernelUnsupported, VerifierRejected, CompileFailed, NodeSessionLimit, CollectorUnreachable,
 * InterfaceNotFound, ForeignProgramFirst, other failures as PartiallyAttached), an agent that is
 * silent (AgentNotReporting), and last the normal wait (Attaching).
 */
import {
  ConditionReason,
  ConditionType,
  MAX_STATUS_NODES,
  ReasonHints,
  setCondition,
  type Condition,
  type ConditionStatus,
  type Counters,
  type DropReason,
  type NodeState,
  type NodeStatus,
  type SniffAssignmentStatus,
  type SniffPolicyStatus,
} from '../api/index.ts';
import { jsonEqual } from '../util/json.ts';
import { describeSkipped, type Selection } from './selection.ts';
import { byCodePoint } from '../util/compare.ts';

export interface NodeInput {
  node: string;
  /** Selected pods on the node. */
  pods: number;
  /** The node's assignment, as it stands after this reconcile's writes; absent while being created. */
  assignment?:
    | {
        generation?: number | undefined;
        creationTimestamp?: string | undefined;
        status?: SniffAssignmentStatus | undefined;
        /** This reconcile rewrites its spec: the agent's report describes the previous one. */
        specChanged?: boolean | undefined;
      }
    | undefined;
}

export interface StatusInput {
  generation: number;
  previous: SniffPolicyStatus | undefined;
  now: Date;
  /** A report older than this marks the node AgentNotReporting. */
  staleMs: number;
  nodes: readonly NodeInput[];
  selection?: Pick<Selection, 'selected' | 'matched' | 'skipped' | 'criteria'> | undefined;
  namespace?: string | undefined;
  /** Something that stops the whole policy: InvalidSpec or CollectorNotFound. */
  blocker?: { reason: ConditionReason; message: string } | undefined;
  startTime?: string | undefined;
  /** The capture reached a limit. */
  completed?: { message: string; completionTime: string } | undefined;
  /** Where the agents send, for status.collector (collectorSummary). */
  collector?: string | undefined;
}

export interface StatusResult {
  status: SniffPolicyStatus;
  /** When (epoch ms) a node will turn stale if its agent stays silent: reconcile again then. */
  nextCheckMs?: number;
}

type NodeClass = 'ready' | 'attaching' | 'failed' | 'stale' | 'stopped';

interface Classified {
  input: NodeInput;
  cls: NodeClass;
  state: NodeState;
  reason?: ConditionReason;
  message?: string;
  staleAt?: number;
}

/** Agent failures, most actionable first; anything else an agent says is PartiallyAttached. */
const FAILURE_ORDER: readonly ConditionReason[] = ['KernelUnsupported', 'VerifierRejected', 'CompileFailed', 'NodeSessionLimit', 'CollectorUnreachable', 'InterfaceNotFound', 'ForeignProgramFirst', 'PartiallyAttached', 'AgentNotReporting'];

const MAX_LISTED = 5;

/** Which nodes status.nodes lists first when there are more than MAX_STATUS_NODES. */
const LIST_ORDER: Record<NodeClass, number> = { failed: 0, stale: 0, attaching: 1, stopped: 2, ready: 3 };

function knownReason(r: string | undefined, fallback: ConditionReason): ConditionReason {
  return r !== undefined && Object.hasOwn(ReasonHints, r) ? (r as ConditionReason) : fallback;
}

function classify(n: NodeInput, now: number, staleMs: number): Classified {
  const a = n.assignment;
  if (!a) return { input: n, cls: 'attaching', state: 'Pending' };
  const st = a.status;
  const state: NodeState = st?.state ?? 'Pending';
  const reportedAt = st?.lastReportTime ? Date.parse(st.lastReportTime) : NaN;
  const since = Number.isNaN(reportedAt) ? (a.creationTimestamp ? Date.parse(a.creationTimestamp) : NaN) : reportedAt;
  if (!Number.isNaN(since)) {
    if (now - since > staleMs) {
      const message = Number.isNaN(reportedAt)
        ? `the agent has not picked up the assignment (created ${a.creationTimestamp})`
        : `no report from the agent since ${st!.lastReportTime}`;
      return { input: n, cls: 'stale', state, reason: 'AgentNotReporting', message };
    }
  }
  const staleAt = Number.isNaN(since) ? undefined : since + staleMs + 1;
  const base = { input: n, state, ...(staleAt !== undefined ? { staleAt } : {}) };
  if (a.specChanged || !st?.state || (a.generation !== undefined && st.observedGeneration !== a.generation)) {
    return { ...base, cls: 'attaching' };
  }
  const msg = st.message ? { message: st.message } : {};
  switch (st.state) {
    case 'Attached':
      if (st.collectorReachable === false) return { ...base, ...msg, cls: 'failed', reason: 'CollectorUnreachable' };
      return { ...base, cls: 'ready' };
    case 'Pending':
    case 'Attaching':
      return { ...base, cls: 'attaching' };
    case 'Degraded':
    case 'Failed': {
      const fallback = st.collectorReachable === false ? 'CollectorUnreachable' : 'PartiallyAttached';
      const reason = knownReason(st.reason, fallback);
      return { ...base, ...msg, cls: 'failed', reason: FAILURE_ORDER.includes(reason) ? reason : fallback };
    }
    case 'Completed':
    case 'Detached':
      return { ...base, ...msg, cls: 'stopped', reason: 'LimitReached' };
  }
}

function rank(r: ConditionReason | undefined): number {
  const i = r === undefined ? -1 : FAILURE_ORDER.indexOf(r);
  return i < 0 ? FAILURE_ORDER.length : i;
}

/** "node-a (InterfaceNotFound: veth of web-1 not found), node-b (...)", at most 5 then "and N more". */
function listNodes(nodes: readonly Classified[]): string {
  const shown = nodes.slice(0, MAX_LISTED).map((c) => {
    const detail = [c.reason, c.message].filter(Boolean).join(': ');
    return detail ? `${c.input.node} (${detail})` : c.input.node;
  });
  const more = nodes.length > MAX_LISTED ? `, and ${nodes.length - MAX_LISTED} more` : '';
  return shown.join(', ') + more;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function add(a: number | undefined, b: number | undefined): number {
  return (a ?? 0) + (b ?? 0);
}

export function aggregateStatus(input: StatusInput): StatusResult {
  const now = input.now.getTime();
  const classified = input.nodes.map((n) => classify(n, now, input.staleMs)).sort((a, b) => byCodePoint(a.input.node, b.input.node));

  // Sums and the per-node list.
  let packets = 0;
  let bytes = 0;
  let fragments = 0;
  let lost = 0;
  let interfaces = 0;
  let pods = 0;
  const dropped: Partial<Record<DropReason, number>> = {};
  const entries: { cls: NodeClass; entry: NodeStatus }[] = [];
  let nextCheckMs: number | undefined;
  for (const c of classified) {
    const st = c.input.assignment?.status;
    const k: Counters = st?.counters ?? {};
    packets += k.mirrored ?? 0;
    bytes += k.bytes ?? 0;
    fragments += k.pieces ?? 0;
    lost += k.lost ?? 0;
    for (const [r, v] of Object.entries(k.dropped ?? {}) as [DropReason, number][]) dropped[r] = add(dropped[r], v);
    const ifs = st?.attachedInterfaces ?? st?.interfaces?.length ?? 0;
    interfaces += ifs;
    pods += c.input.pods;
    const entry: NodeStatus = { node: c.input.node, state: c.state, pods: c.input.pods, interfaces: ifs, packets: k.mirrored ?? 0, bytes: k.bytes ?? 0, lost: k.lost ?? 0 };
    const message = c.cls === 'stale' ? c.message : st?.message;
    if (message) entry.message = message;
    if (st?.lastReportTime) entry.lastReportTime = st.lastReportTime;
    entries.push({ cls: c.cls, entry });
    if (c.staleAt !== undefined && c.cls !== 'stale') nextCheckMs = Math.min(nextCheckMs ?? Infinity, c.staleAt);
  }

  // The nodes listed: those that need a look first, then by name (MAX_STATUS_NODES).
  const nodes = entries
    .sort((a, b) => LIST_ORDER[a.cls] - LIST_ORDER[b.cls] || byCodePoint(a.entry.node, b.entry.node))
    .slice(0, MAX_STATUS_NODES)
    .map((e) => e.entry)
    .sort((a, b) => byCodePoint(a.node, b.node));

  const ready = classified.filter((c) => c.cls === 'ready');
  const attaching = classified.filter((c) => c.cls === 'attaching');
  const troubled = classified.filter((c) => c.cls === 'failed' || c.cls === 'stale').sort((a, b) => rank(a.reason) - rank(b.reason));
  const stopped = classified.filter((c) => c.cls === 'stopped');
  const selected = input.selection?.selected ?? pods;
  const skippedText = input.selection ? describeSkipped(input.selection.skipped) : '';

  // Ready.
  let readyCond: { status: ConditionStatus; reason: ConditionReason; message: string };
  if (input.blocker) {
    readyCond = { status: 'False', ...input.blocker };
  } else if (input.completed) {
    readyCond = { status: 'False', reason: 'LimitReached', message: input.completed.message };
  } else if (classified.length === 0) {
    readyCond = nothingSelected(input);
  } else if (ready.length === classified.length) {
    const extra = skippedText ? `; left out: ${skippedText}` : '';
    readyCond = { status: 'True', reason: 'Attached', message: `capturing ${plural(selected, 'pod')} on ${plural(classified.length, 'node')}${extra}` };
  } else {
    const head = `${ready.length}/${classified.length} nodes ready`;
    const first = troubled[0] ?? stopped[0];
    if (first?.reason) {
      const same = (troubled.length > 0 ? troubled : stopped).filter((c) => c.reason === first.reason);
      readyCond = { status: 'False', reason: first.reason, message: `${head}; ${listNodes(same)}` };
    } else {
      readyCond = { status: 'False', reason: 'Attaching', message: `${head}; attaching on ${listNodes(attaching)}` };
    }
  }

  // Progressing, Degraded, Completed.
  const halted = input.blocker ?? (input.completed ? { reason: 'LimitReached' as const, message: input.completed.message } : undefined);
  const progressing = halted
    ? { status: 'False' as const, reason: halted.reason, message: halted.message }
    : attaching.length > 0
      ? { status: 'True' as const, reason: 'Attaching' as const, message: `attaching on ${plural(attaching.length, 'node')}: ${listNodes(attaching)}` }
      : { status: 'False' as const, reason: 'AsExpected' as const, message: '' };
  const degraded =
    !input.blocker && troubled.length > 0
      ? { status: 'True' as const, reason: troubled[0]!.reason!, message: `${plural(troubled.length, 'node')} not capturing: ${listNodes(troubled)}` }
      : { status: 'False' as const, reason: 'AsExpected' as const, message: '' };
  const completed = input.completed
    ? { status: 'True' as const, reason: 'LimitReached' as const, message: input.completed.message }
    : { status: 'False' as const, reason: 'AsExpected' as const, message: '' };

  let conditions: Condition[] | undefined = input.previous?.conditions;
  for (const [type, c] of [
    [ConditionType.Ready, readyCond],
    [ConditionType.Progressing, progressing],
    [ConditionType.Degraded, degraded],
    [ConditionType.Completed, completed],
  ] as const) {
    conditions = setCondition(conditions, { type, ...c, observedGeneration: input.generation }, input.now);
  }

  const status: SniffPolicyStatus = {
    observedGeneration: input.generation,
    conditions,
    selectedPods: selected,
    nodesReady: ready.length,
    nodesTotal: classified.length,
    nodeSummary: `${ready.length}/${classified.length}`,
    attachedInterfaces: interfaces,
    packets,
    bytes,
    fragments,
    lost,
    dropped,
    nodes,
  };
  if (input.collector) status.collector = input.collector;
  if (input.startTime) status.startTime = input.startTime;
  if (input.completed) status.completionTime = input.completed.completionTime;
  return nextCheckMs === undefined ? { status } : { status, nextCheckMs };
}

/** status.collector: "198.18.0.1:6081", or "podtap-system/podtap-collector → 10.96.0.7:6081" for a Service (or "… (no endpoint)"). */
export function collectorSummary(spec: { collector: { service?: { name: string; namespace?: string | undefined } | undefined } }, namespace: string, resolved: { address: string; port: number } | undefined): string {
  const target = resolved ? `${resolved.address.includes(':') ? `[${resolved.address}]` : resolved.address}:${resolved.port}` : undefined;
  const svc = spec.collector.service;
  if (!svc) return target ?? '';
  const name = `${svc.namespace ?? namespace}/${svc.name}`;
  return target ? `${name} → ${target}` : `${name} (no endpoint)`;
}

function nothingSelected(input: StatusInput): { status: ConditionStatus; reason: ConditionReason; message: string } {
  const sel = input.selection;
  const where = input.namespace ? ` of namespace ${input.namespace}` : '';
  if (!sel || sel.matched === 0) {
    return { status: 'False', reason: 'NoPodsSelected', message: `no pod${where} matches ${sel?.criteria ?? 'spec.podSelector'}` };
  }
  const skipped = sel.skipped;
  const onNodes = (skipped.nodeNotMatched?.count ?? 0) + (skipped.nodeNotFound?.count ?? 0);
  if (onNodes > 0 && onNodes === sel.matched) {
    return { status: 'False', reason: 'NoNodesMatched', message: `${plural(sel.matched, 'pod')} selected, none on a node matching spec.nodeSelector: ${describeSkipped(skipped)}` };
  }
  return { status: 'False', reason: 'NoPodsSelected', message: `${plural(sel.matched, 'pod')} match ${sel.criteria}, none can be captured: ${describeSkipped(skipped)}` };
}

/** The Ready condition of a status, if any. */
export function readyCondition(status: SniffPolicyStatus | undefined): Condition | undefined {
  return status?.conditions?.find((c) => c.type === ConditionType.Ready);
}

function normalized(s: SniffPolicyStatus | undefined): unknown {
  if (!s) return {};
  const byKey = <T>(list: T[] | undefined, key: (t: T) => string) => list && [...list].sort((a, b) => byCodePoint(key(a), key(b)));
  return { ...s, conditions: byKey(s.conditions, (c) => c.type), nodes: byKey(s.nodes, (n) => n.node) };
}

/** Equal statuses, whatever the order of conditions and nodes. */
export function statusEqual(a: SniffPolicyStatus | undefined, b: SniffPolicyStatus | undefined): boolean {
  return jsonEqual(normalized(a), normalized(b));
}

/** Warning for failures; Normal for progress, success and a completed capture. */
export function eventType(reason: string): 'Normal' | 'Warning' {
  return reason === ConditionReason.Attached || reason === ConditionReason.Attaching || reason === ConditionReason.LimitReached ? 'Normal' : 'Warning';
}
