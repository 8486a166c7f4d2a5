/**
 * Building blocks shared by the SniffPolicy and the SniffAssignment: counters,
 * timestamps, the per-node state and the reasons a matched packet is dropped.
 */
import { z } from 'zod';

/** A counter: a non-negative int64 in the CRD (JS numbers stay exact to 2^53). */
export const CountSchema = z.number().int().min(0).meta({ format: 'int64' });

/** RFC 3339 time, as metav1.Time serializes (`2025-01-02T03:04:05Z`). */
export const TimestampSchema = z.iso.datetime({ offset: true }).meta({ description: 'RFC 3339 time.' });

/** Kubernetes object generation (metadata.generation). */
export const GenerationSchema = z.number().int().min(0).meta({ format: 'int64' });

/** Why a matched packet was not delivered whole (keys of the `dropped` maps). */
export const DropReasons = [
  'rateLimited',
  'nodeRate',
  'sampledOut',
  'cloneError',
  'noRoute',
  'redirectError',
  'xmitDrop',
  'busy',
  'shapeError',
  'mtu',
  'oversize',
  'truncated',
] as const;
export type DropReason = (typeof DropReasons)[number];

/**
 * Packets by reason. The keys are DropReasons, but any key is accepted (as
 * the CRD's map does), so the data plane can add a reason without an API change.
 */
export const DroppedSchema = z.record(z.string(), CountSchema).meta({
  description: `Packets by reason: ${DropReasons.join(', ')} (others may be added).`,
});
export type Dropped = z.infer<typeof DroppedSchema>;

/** Where a node stands with one policy (assignment state and the policy's per-node entry). */
export const NodeStates = ['Pending', 'Attaching', 'Attached', 'Degraded', 'Failed', 'Completed', 'Detached'] as const;
export type NodeState = (typeof NodeStates)[number];
export const NodeStateSchema = z.enum(NodeStates).meta({
  description:
    'Pending: not yet picked up by the agent. Attaching: compiling/attaching. Attached: capturing on every selected interface. ' +
    'Degraded: capturing on some. Failed: capturing on none. Completed: a limit was reached. Detached: the agent removed its programs.',
});

// Kubernetes' own names (k8s/names.ts), named here with the API's other building blocks.
export { DnsLabelSchema, ObjectNameSchema } from '../k8s/names.ts';
