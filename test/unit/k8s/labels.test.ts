import { describe, expect, it } from 'vitest';
import { matchesSelector, selectorString, type LabelSelector } from '../../../src/k8s/index.ts';

const labels = { app: 'web', tier: 'front' };

describe('matchesSelector', () => {
  it.each([
    { description: 'no selector selects everything', input: undefined, expected: true },
    { description: 'an empty selector selects everything', input: {}, expected: true },
    { description: 'matchLabels equal', input: { matchLabels: { app: 'web' } }, expected: true },
    { description: 'matchLabels differ', input: { matchLabels: { app: 'db' } }, expected: false },
    { description: 'In', input: { matchExpressions: [{ key: 'tier', operator: 'In', values: ['front', 'back'] }] }, expected: true },
    { description: 'In without the key', input: { matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }] }, expected: false },
    { description: 'NotIn without the key matches', input: { matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['a'] }] }, expected: true },
    { description: 'NotIn with the value', input: { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['front'] }] }, expected: false },
    { description: 'Exists', input: { matchExpressions: [{ key: 'app', operator: 'Exists' }] }, expected: true },
    { description: 'DoesNotExist', input: { matchExpressions: [{ key: 'app', operator: 'DoesNotExist' }] }, expected: false },
    { description: 'an unknown operator matches nothing', input: { matchExpressions: [{ key: 'app', operator: 'Like' }] }, expected: false },
    { description: 'matchLabels and expressions are ANDed', input: { matchLabels: { app: 'web' }, matchExpressions: [{ key: 'tier', operator: 'In', values: ['back'] }] }, expected: false },
  ] as { description: string; input: LabelSelector | undefined; expected: boolean }[])('$description', ({ input, expected }) => {
    expect(matchesSelector(input, labels)).toBe(expected);
  });

  it('selectorString writes the list-call syntax', () => {
    expect(
      selectorString({
        matchLabels: { app: 'web' },
        matchExpressions: [
          { key: 'tier', operator: 'In', values: ['a', 'b'] },
          { key: 'x', operator: 'NotIn', values: ['c'] },
          { key: 'y', operator: 'Exists' },
          { key: 'z', operator: 'DoesNotExist' },
        ],
      }),
    ).toBe('app=web,tier in (a,b),x notin (c),y,!z');
  });
});
