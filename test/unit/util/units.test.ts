import { describe, expect, it } from 'vitest';
import { formatSize, parseSize } from '../../../src/util/units.ts';

describe('sizes on the command line', () => {
  it.each([
    { input: '4096', expected: 4096 },
    { input: '512MiB', expected: 512 * 2 ** 20 },
    { input: '512Mi', expected: 512 * 2 ** 20 },
    { input: '1.5GB', expected: 1.5e9 },
    { input: '18GiB', expected: 18 * 2 ** 30 },
    { input: '100k', expected: 100_000 },
    { input: ' 2 TiB ', expected: 2 * 2 ** 40 },
    { input: '0', expected: 0 },
    { input: 'big', expected: undefined },
    { input: '10 XB', expected: undefined },
    { input: '-5MB', expected: undefined },
  ])('size $input', ({ input, expected }) => {
    expect(parseSize(input)).toBe(expected);
  });

  it.each([
    { input: 0, expected: '0 B' },
    { input: 1536, expected: '1.5 KiB' },
    { input: 300 * 2 ** 20, expected: '300 MiB' },
  ])('format $input', ({ input, expected }) => {
    expect(formatSize(input)).toBe(expected);
  });
});
