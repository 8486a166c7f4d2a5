/**
 * Status conditions (Kubernetes metav1.Condition) of the SniffPolicy: the
 * condition types, the reasons a user can act on, and setCondition, which
 * follows apimachinery's meta.SetStatusCondition.
 */
import { z } from 'zod';
import { GenerationSchema, TimestampSchema } from './common.ts';

export const ConditionType = {
  /** The capture runs on every node that has selected pods. */
  Ready: 'Ready',
  /** The controller or an agent is still converging on the current spec. */
  Progressing: 'Progressing',
  /** Capturing, but not everywhere or not everything (see reason). */
  Degraded: 'Degraded',
  /** A limit (duration, packets, bytes) was reached; the capture stopped. */
  Completed: 'Completed',
} as const;
export type ConditionType = (typeof ConditionType)[keyof typeof ConditionType];

export const ConditionStatuses = ['True', 'False', 'Unknown'] as const;
export type ConditionStatus = (typeof ConditionStatuses)[number];

/** Reasons, each with what a user can do about it (printed by the CLI, listed in docs/api.md). */
export const ReasonHints = {
  Attached: 'Capturing on every selected pod interface. Nothing to do.',
  Attaching: 'Agents are compiling and attaching the program; wait a few seconds.',
  PartiallyAttached: 'Some nodes or interfaces are not captured; see status.nodes[].message.',
  NoPodsSelected: "No running pod of the policy's namespace matches spec.podSelector; check the labels.",
  NoNodesMatched: 'The selected pods run on no node matching spec.nodeSelector; check the node labels.',
  CollectorUnreachable: 'Nodes have no route to the collector address, or it does not answer; check the address and network policy.',
  CollectorNotFound: 'The collector Service does not exist or has no ready endpoints; check spec.collector.service.',
  DestinationNotAllowed: "spec.collector names a destination the cluster admin has not allowed (the message lists the allowed ones); use the install's collector or ask the admin.",
  KernelUnsupported: "The node's kernel lacks a BPF feature the capture needs (the message names the kernel and the feature); run the pods on nodes with a newer kernel, or see docs/install.md for what each kernel supports.",
  VerifierRejected: 'The kernel refused the eBPF program; see the message and the agent log, and report it with the kernel version.',
  CompileFailed: 'The agent could not compile the program (clang); see the message and the agent log.',
  NodeSessionLimit:
    "The node already runs as many capture sessions as its agent's --max-sessions (chart agent.maxSessions) allows; the policy is attached there when one ends, older policies first. Delete a policy that is no longer needed, or ask the admin to raise the limit.",
  ForeignProgramFirst:
    "Another program (a CNI's tc or tcx program) runs before podtap's on a tapped pod interface; if it redirects or drops packets, podtap never sees them. The message names the program, the interface and the hook; see docs/troubleshooting.md.",
  InterfaceNotFound: "A selected pod's host-side interface was not found; the pod may be terminating or its CNI unsupported.",
  LimitReached: 'spec.limits (duration, maxPackets or maxBytes) was reached; delete the policy or raise the limit to capture again.',
  InvalidSpec: 'The spec cannot be applied as written; see the message, fix the policy.',
  AgentNotReporting: 'An agent has not reported recently; check the podtap agent DaemonSet pod on that node.',
  Reconciling: 'The controller is applying a new generation of the spec.',
  AsExpected: 'Nothing to report.',
} as const;
export type ConditionReason = keyof typeof ReasonHints;
/** The reason names as constants: `ConditionReason.NoPodsSelected`. */
export const ConditionReason = Object.fromEntries(Object.keys(ReasonHints).map((k) => [k, k])) as {
  readonly [K in ConditionReason]: K;
};

export const ConditionSchema = z
  .object({
    type: z
      .string()
      .min(1)
      .max(316)
      .regex(/^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$/, 'a condition type such as Ready')
      .meta({ description: 'Ready, Progressing, Degraded or Completed.' }),
    status: z.enum(ConditionStatuses),
    reason: z
      .string()
      .min(1)
      .max(1024)
      .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/, 'a CamelCase reason')
      .meta({ description: 'CamelCase reason; see docs/api.md for what to do about each.' }),
    message: z.string().max(32768).meta({ description: 'Human-readable details.' }),
    lastTransitionTime: TimestampSchema.meta({ description: 'When status last changed.' }),
    observedGeneration: GenerationSchema.optional().meta({ description: 'The metadata.generation the condition was set for.' }),
  })
  .meta({ description: 'A Kubernetes status condition (metav1.Condition).' });
export type Condition = z.infer<typeof ConditionSchema>;

/** What a caller sets; lastTransitionTime is filled in by setCondition. */
export type ConditionUpdate = Omit<Condition, 'lastTransitionTime'> & { lastTransitionTime?: string };

export function findCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

export function isConditionTrue(conditions: readonly Condition[] | undefined, type: string): boolean {
  return findCondition(conditions, type)?.status === 'True';
}

/**
 * Return `conditions` with `cond` set (the input is not modified). As
 * meta.SetStatusCondition: a new condition or a status change takes
 * `cond.lastTransitionTime` or `now`; otherwise the existing
 * lastTransitionTime is kept and only reason, message and
 * observedGeneration are updated. Order is kept; a new type is appended.
 */
export function setCondition(conditions: readonly Condition[] | undefined, cond: ConditionUpdate, now: Date | string): Condition[] {
  const stamp = cond.lastTransitionTime ?? (typeof now === 'string' ? now : rfc3339(now));
  const list = [...(conditions ?? [])];
  const i = list.findIndex((c) => c.type === cond.type);
  const existing = i >= 0 ? list[i] : undefined;
  if (!existing) {
    list.push({ ...cond, lastTransitionTime: stamp });
    return list;
  }
  const next: Condition = {
    ...existing,
    status: cond.status,
    reason: cond.reason,
    message: cond.message,
    lastTransitionTime: existing.status === cond.status ? existing.lastTransitionTime : stamp,
  };
  if (cond.observedGeneration !== undefined) next.observedGeneration = cond.observedGeneration;
  list[i] = next;
  return list;
}

/** Remove a condition type; returns a new list. */
export function removeCondition(conditions: readonly Condition[] | undefined, type: string): Condition[] {
  return (conditions ?? []).filter((c) => c.type !== type);
}

/** metav1.Time has second precision: 2025-01-02T03:04:05Z. */
export function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
