import { describe, expect, it } from 'vitest';
import { matchesSelector, parseLabelSelector, selectorString, type LabelSelector } from '../../../src/k8s/index.ts';

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

describe('parseLabelSelector: the selector string syntax (kubectl -l)', () => {
  it.each([
    { description: 'equality', input: 'app=web', expected: { matchLabels: { app: 'web' } } },
    { description: 'double equals and a prefixed key', input: 'app.kubernetes.io/name==web', expected: { matchLabels: { 'app.kubernetes.io/name': 'web' } } },
    { description: 'inequality', input: 'tier!=db', expected: { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['db'] }] } },
    {
      description: 'set-based, with spaces',
      input: 'env in (prod, staging),track notin (canary)',
      expected: { matchExpressions: [{ key: 'env', operator: 'In', values: ['prod', 'staging'] }, { key: 'track', operator: 'NotIn', values: ['canary'] }] },
    },
    { description: 'exists and does not exist', input: 'gpu,!spot', expected: { matchExpressions: [{ key: 'gpu', operator: 'Exists' }, { key: 'spot', operator: 'DoesNotExist' }] } },
    {
      description: 'everything at once',
      input: 'app=web,tier!=db,env in (a,b),!x',
      expected: {
        matchLabels: { app: 'web' },
        matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['db'] }, { key: 'env', operator: 'In', values: ['a', 'b'] }, { key: 'x', operator: 'DoesNotExist' }],
      },
    },
  ])('$description', ({ input, expected }) => {
    expect(parseLabelSelector(input)).toEqual(expected);
    // and back: what selectorString writes reads as the same selector
    expect(parseLabelSelector(selectorString(expected as LabelSelector))).toEqual(expected);
  });

  it.each([
    { description: 'empty', input: '', expected: /empty/ },
    { description: 'unbalanced', input: 'env in (a,b', expected: /unbalanced/ },
    { description: 'bad key', input: '-app=web', expected: /not a label key/ },
    { description: 'bad value', input: 'app=we b', expected: /not a requirement|not a label value/ },
    { description: 'two values for one key', input: 'app=a,app=b', expected: /two values/ },
    { description: 'empty set', input: 'env in ()', expected: /no values|not a label value/ },
  ])('refuses $description', ({ input, expected }) => {
    expect(() => parseLabelSelector(input)).toThrow(expected);
  });
});
