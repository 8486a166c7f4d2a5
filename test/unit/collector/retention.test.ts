import { describe, expect, it } from 'vitest';
import { retentionVictims, type RetentionOptions } from '../../../src/collector/retention.ts';
import type { CaptureEntry } from '../../../src/collector/store.ts';

const NOW = Date.UTC(2025, 10, 25, 12);
const MIN = 60_000;

/** A file of `size` bytes last written `age` minutes ago. */
function file(name: string, size: number, age: number, open = false): CaptureEntry {
  return { path: name, capture: 'shop_web', namespace: 'shop', policy: 'web', start: NOW - age * MIN, seq: 0, size, modified: NOW - age * MIN, open };
}

const cases: { description: string; input: { files: CaptureEntry[]; opts: RetentionOptions }; expected: Record<string, string> }[] = [
  { description: 'no limits: nothing goes', input: { files: [file('a', 100, 60), file('b', 100, 1)], opts: {} }, expected: {} },
  {
    description: 'by age: only closed files older than the limit',
    input: { files: [file('old', 10, 61), file('young', 10, 59), file('old-open', 10, 120, true)], opts: { maxAgeMs: 60 * MIN } },
    expected: { old: 'age' },
  },
  {
    description: 'by size: the oldest closed files until the total fits; open files count but stay',
    input: { files: [file('a', 100, 30), file('b', 100, 20), file('c', 100, 10), file('open', 100, 0, true)], opts: { maxBytes: 250 } },
    expected: { a: 'size', b: 'size' },
  },
  {
    description: 'both: aged files are not counted again for size',
    input: { files: [file('a', 100, 90), file('b', 100, 20), file('c', 100, 10)], opts: { maxAgeMs: 60 * MIN, maxBytes: 150 } },
    expected: { a: 'age', b: 'size' },
  },
  {
    description: 'open files alone over the size limit: nothing can go',
    input: { files: [file('open', 1000, 0, true)], opts: { maxBytes: 10 } },
    expected: {},
  },
];

describe('retentionVictims', () => {
  it.each(cases)('$description', ({ input, expected }) => {
    const got = retentionVictims(input.files, NOW, input.opts);
    expect(Object.fromEntries([...got].map(([e, why]) => [e.path, why]))).toEqual(expected);
  });
});
