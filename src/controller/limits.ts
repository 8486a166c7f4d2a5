/**
 * spec.limits: when a capture must stop, and how much each node may still
 * mirror before the controller has seen its next report.
 *
 * The overall limits are the controller's: it sums the agents' counters and
 * stops every node (assignments get `stopped: true`) once one is reached.
 * Between two reports a node could overshoot, so each assignment carries a
 * local cap the agent enforces: `limits.maxPackets` is a bound on that
 * assignment's own `status.counters.mirrored` (and maxBytes on
 * `counters.bytes`), set to the node's last count plus what is left overall.
 *
 * The cap is not rewritten on every report (that would be one write per node
 * per report): a stale cap is always looser than a fresh one, never tighter,
 * so it is only tightened when the node's remaining allowance exceeds twice
 * what is left overall — at most a logarithmic number of writes per capture.
 */
import { parseDuration, rfc3339, type Limits } from '../api/index.ts';

export interface LimitEvaluation {
  /** RFC 3339, from status.startTime + spec.limits.duration. */
  deadline?: string;
  deadlineMs?: number;
  /** Why the capture is complete, when it is. */
  reached?: string;
  /** Packets/bytes still allowed overall; undefined = no such limit. */
  leftPackets?: number;
  leftBytes?: number;
}

export function evaluateLimits(limits: Limits | undefined, startTime: string | undefined, now: Date, totals: { packets: number; bytes: number }): LimitEvaluation {
  const out: LimitEvaluation = {};
  if (!limits) return out;
  const reasons: string[] = [];
  if (limits.duration && startTime) {
    const start = Date.parse(startTime);
    if (!Number.isNaN(start)) {
      // Whole seconds (metav1.Time), rounded up so the capture never stops early.
      const ms = Math.ceil((start + (parseDuration(limits.duration) ?? 0)) / 1000) * 1000;
      out.deadlineMs = ms;
      out.deadline = rfc3339(new Date(ms));
      if (now.getTime() >= ms) reasons.push(`spec.limits.duration ${limits.duration} elapsed`);
    }
  }
  if (limits.maxPackets > 0) {
    out.leftPackets = Math.max(0, limits.maxPackets - totals.packets);
    if (out.leftPackets === 0) reasons.push(`${totals.packets} packets mirrored (spec.limits.maxPackets ${limits.maxPackets})`);
  }
  if (limits.maxBytes > 0) {
    out.leftBytes = Math.max(0, limits.maxBytes - totals.bytes);
    if (out.leftBytes === 0) reasons.push(`${totals.bytes} bytes mirrored (spec.limits.maxBytes ${limits.maxBytes})`);
  }
  if (reasons.length > 0) out.reached = reasons.join('; ');
  return out;
}

/**
 * The cap for one assignment's counter: 0 (no limit) when there is no
 * overall limit; otherwise its count plus what is left overall, keeping the
 * existing cap unless it is more than twice as loose or the limit was raised.
 */
export function nodeCap(left: number | undefined, nodeCount: number, existingCap: number | undefined): number {
  if (left === undefined) return 0;
  const fresh = nodeCount + Math.max(left, 1);
  if (!existingCap) return fresh;
  if (fresh > existingCap) return fresh;
  if (existingCap - nodeCount > 2 * Math.max(left, 1)) return fresh;
  return existingCap;
}
