/**
 * `kubectl podtap capture --direction`: tcpdump's words for `-Q`, from the
 * pod's side — in: what the pod receives (policyTypes Ingress), out: what it
 * sends (Egress), both. podtap 0.1 took Ingress/Egress here with the tc hook's
 * meaning (Ingress = sent by the pod); those words are refused with their
 * conversion rather than silently taken with the opposite meaning.
 */
import { REMOVED_DIRECTIONS, REMOVED_IN, type PolicyType } from '../api/index.ts';
import { ExitCode, UserError } from '../util/errors.ts';

export const CAPTURE_DIRECTIONS = {
  in: { policyTypes: ['Ingress'], help: 'what the pod receives (policyTypes Ingress)' },
  out: { policyTypes: ['Egress'], help: 'what the pod sends (Egress)' },
  both: { policyTypes: ['Ingress', 'Egress'], help: 'both (the default)' },
} as const satisfies Record<string, { policyTypes: readonly PolicyType[]; help: string }>;
export type CaptureDirection = keyof typeof CAPTURE_DIRECTIONS;
export const CAPTURE_DIRECTION_WORDS = Object.keys(CAPTURE_DIRECTIONS) as CaptureDirection[];
export const DEFAULT_CAPTURE_DIRECTION: CaptureDirection = 'both';

/** 0.1's words and what to write now (Both meant both then too, so it still does). */
const OLD_WORDS: Partial<Record<keyof typeof REMOVED_DIRECTIONS, CaptureDirection>> = { Ingress: 'out', Egress: 'in' };

/** --direction's value as policy types; a usage error names the words, or the conversion of an old one. */
export function parseCaptureDirection(value: string): PolicyType[] {
  const word = value.toLowerCase();
  if (Object.hasOwn(CAPTURE_DIRECTIONS, word)) return [...CAPTURE_DIRECTIONS[word as CaptureDirection].policyTypes];
  const old = Object.entries(OLD_WORDS).find(([k]) => k.toLowerCase() === word);
  if (old) {
    const [name, now] = old as [keyof typeof REMOVED_DIRECTIONS, CaptureDirection];
    throw new UserError(`--direction ${value} was removed in ${REMOVED_IN}: it meant ${REMOVED_DIRECTIONS[name].meant}; write --direction ${now}`, {
      exitCode: ExitCode.usage,
      hint: 'see kubectl podtap --help',
    });
  }
  throw new UserError(`--direction: ${CAPTURE_DIRECTION_WORDS.join(', ')} (from the pod's side), not "${value}"`, { exitCode: ExitCode.usage, hint: 'see kubectl podtap --help' });
}
