/** The data plane's counters by reason (enum pt_reason in bpf/include/maps.h). */
export const REASONS = [
  'seen', 'skipOwn', 'filtered', 'matched', 'sampledOut', 'rateLimited', 'cloneError',
  'tunnelIn', 'mirrored', 'fragmented', 'pieces', 'truncated', 'oversize', 'noRoute',
  'redirectError', 'busy', 'foreign', 'shapeError', 'mtu', 'csumUnsupported',
  'slotBusy', 'carrierLost', 'limitReached', 'xmitDrop', 'segmented', 'carrierStale', 'noSlot',
  'nodeRate',
] as const;
export type Reason = (typeof REASONS)[number];

export interface Count {
  packets: number;
  bytes: number;
}
export type Counters = Record<Reason, Count>;

/** Matched packets that did not reach the collector whole (each also a sequence gap,
 *  except those lost before the tunnel assigned a sequence number). */
export const LOSS_REASONS: Reason[] = [
  'rateLimited', 'cloneError', 'noRoute', 'redirectError', 'busy', 'shapeError', 'mtu',
  'carrierLost', 'xmitDrop', 'noSlot', 'nodeRate',
];

export function emptyCounters(): Counters {
  return Object.fromEntries(REASONS.map((r) => [r, { packets: 0, bytes: 0 }])) as Counters;
}

export function lost(c: Counters): number {
  return LOSS_REASONS.reduce((n, r) => n + c[r].packets, 0);
}

export function addCounters(a: Counters, b: Counters): Counters {
  const out = emptyCounters();
  for (const r of REASONS) out[r] = { packets: a[r].packets + b[r].packets, bytes: a[r].bytes + b[r].bytes };
  return out;
}

/** Counters accumulated since @base (an adopted object keeps its maps). */
export function subCounters(a: Counters, base: Counters): Counters {
  const out = emptyCounters();
  for (const r of REASONS) out[r] = { packets: a[r].packets - base[r].packets, bytes: a[r].bytes - base[r].bytes };
  return out;
}

/** One-line summary for progress output. */
export function formatCounters(c: Counters): string {
  const parts = [
    `matched ${c.matched.packets}`,
    `mirrored ${c.mirrored.packets}`,
    `segmented ${c.segmented.packets}`,
    `fragmented ${c.fragmented.packets}`,
    `pieces ${c.pieces.packets}`,
    `lost ${lost(c)}`,
  ];
  if (c.truncated.packets) parts.push(`truncated ${c.truncated.packets}`);
  if (c.sampledOut.packets) parts.push(`sampled-out ${c.sampledOut.packets}`);
  if (c.rateLimited.packets) parts.push(`rate-limited ${c.rateLimited.packets}`);
  if (c.nodeRate.packets) parts.push(`node-rate ${c.nodeRate.packets}`);
  if (c.oversize.packets) parts.push(`oversize ${c.oversize.packets}`);
  return parts.join('  ');
}
