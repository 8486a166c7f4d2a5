import { describe, expect, it } from 'vitest';
import { jsonEqual, replacingMergePatch } from '../../../src/util/json.ts';

describe('jsonEqual', () => {
  it.each([
    { description: 'key order does not matter', input: [{ a: 1, b: [1, { c: 2 }] }, { b: [1, { c: 2 }], a: 1 }], expected: true },
    { description: 'an undefined key is an absent key', input: [{ a: 1, b: undefined }, { a: 1 }], expected: true },
    { description: 'array order matters', input: [[1, 2], [2, 1]], expected: false },
    { description: 'a missing key differs', input: [{ a: 1 }, { a: 1, b: 2 }], expected: false },
    { description: 'null is not an empty object', input: [null, {}], expected: false },
    { description: 'an array is not an object', input: [[], {}], expected: false },
    { description: 'numbers and strings differ', input: [{ a: 1 }, { a: '1' }], expected: false },
  ])('$description', ({ input, expected }) => {
    expect(jsonEqual(input[0], input[1])).toBe(expected);
    expect(jsonEqual(input[1], input[0])).toBe(expected);
  });
});

describe('replacingMergePatch', () => {
  it('sets the new value and nulls what went away, at any depth', () => {
    expect(replacingMergePatch({ a: 1, m: { x: 1, y: 2 }, gone: true }, { a: 2, m: { x: 1 } })).toEqual({ a: 2, m: { x: 1, y: null }, gone: null });
  });
});
