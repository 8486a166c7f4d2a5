import { describe, expect, it } from 'vitest';
import { directionsOf, hooksFor } from '../../../src/capture/directions.ts';

describe('a policy direction', () => {
  it.each([
    { input: 'Both' as const, expected: { hooks: ['ingress', 'egress'], announced: ['Ingress', 'Egress'] } },
    { input: 'Ingress' as const, expected: { hooks: ['ingress'], announced: ['Ingress'] } },
    { input: 'Egress' as const, expected: { hooks: ['egress'], announced: ['Egress'] } },
  ])('$input attaches $expected.hooks', ({ input, expected }) => {
    expect(hooksFor(input)).toEqual(expected.hooks);
    expect(directionsOf(input)).toEqual(expected.announced);
  });
});
