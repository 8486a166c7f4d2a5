import { describe, expect, it } from 'vitest';
import { formatSize, parseDuration, parseSize } from '../../../src/collector/units.ts';

describe('sizes and durations on the command line', () => {
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
    { input: '30s', expected: 30_000 },
    { input: '10m', expected: 600_000 },
    { input: '1h30m', expected: 5_400_000 },
    { input: '7d', expected: 7 * 86_400_000 },
    { input: '250ms', expected: 250 },
    { input: '1.5h', expected: 5_400_000 },
    { input: '10', expected: undefined },
    { input: 'a week', expected: undefined },
    { input: '', expected: undefined },
  ])('duration $input', ({ input, expected }) => {
    expect(parseDuration(input)).toBe(expected);
  });

  it.each([
    { input: 0, expected: '0 B' },
    { input: 1536, expected: '1.5 KiB' },
    { input: 300 * 2 ** 20, expected: '300 MiB' },
  ])('format $input', ({ input, expected }) => {
    expect(formatSize(input)).toBe(expected);
  });
});
