import { describe, expect, it } from 'vitest';
import { captureConfig, SniffPolicySpecSchema, TC_HOOK_OF } from '../../../src/api/index.ts';
import { hooksFor, policyTypesCaptured } from '../../../src/capture/directions.ts';

describe('a policy\'s types, from the policy to the tc hooks and back', () => {
  it.each([
    { description: 'default: both', input: undefined, expected: { hooks: ['ingress', 'egress'], announced: ['Ingress', 'Egress'] } },
    // the host-side veth's peer is the pod: what the pod receives leaves the host side (tc egress)
    { description: 'Ingress (to the pod)', input: ['Ingress'] as const, expected: { hooks: ['egress'], announced: ['Ingress'] } },
    { description: 'Egress (from the pod)', input: ['Egress'] as const, expected: { hooks: ['ingress'], announced: ['Egress'] } },
  ])('$description attaches $expected.hooks', ({ input, expected }) => {
    const spec = SniffPolicySpecSchema.parse({ collector: { address: '198.18.9.2' }, ...(input ? { policyTypes: input } : {}) });
    const config = captureConfig(spec, { address: '198.18.9.2', port: 6081 });
    expect(hooksFor(config)).toEqual(expected.hooks);
    expect(policyTypesCaptured(config)).toEqual(expected.announced);
  });

  it('the two namings cross: no policy type maps onto the hook of its own name', () => {
    for (const [type, hook] of Object.entries(TC_HOOK_OF)) expect(hook).not.toBe(type.toLowerCase());
  });
});
