/**
 * The capture configuration names tc hooks (the controller mapped the
 * policy's types onto them: api/vocabulary.ts, TC_HOOK_OF); the announcement
 * and the assignment's status name what is captured from the pod's side, as
 * the policy does. The same table, read backwards.
 */
import { policyTypesOf, type CaptureConfig, type PolicyType } from '../api/index.ts';
import type { Hook } from '../datapath/index.ts';

export function hooksFor(config: Pick<CaptureConfig, 'hooks'>): Hook[] {
  return [...config.hooks];
}

export function policyTypesCaptured(config: Pick<CaptureConfig, 'hooks'>): PolicyType[] {
  return policyTypesOf(config.hooks);
}
