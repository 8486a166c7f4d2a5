import { describe, expect, it } from 'vitest';
import { SEQ_WINDOW, SeqStream, SeqVerdict } from '../../../src/collector/streams.ts';

/** [seq, tstamp] arrivals; tstamp defaults to seq * 10 (frames of one CPU get later with their number). */
type Arrival = number | [number, number];

function run(arrivals: Arrival[]): { lost: number; late: number; restarts: number; verdicts: number[] } {
  const s = new SeqStream();
  const verdicts = arrivals.map((a) => {
    const [seq, ts] = typeof a === 'number' ? [a, (a >>> 0) * 10] : a;
    return s.observe(seq >>> 0, Math.floor(ts / 2 ** 32), ts % 2 ** 32);
  });
  s.flush();
  return { lost: s.lost, late: s.late, restarts: s.restarts, verdicts };
}

const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);
const { fresh, seen, late, restart } = SeqVerdict;

describe('sequence tracking', () => {
  it.each([
    { description: 'no gap', input: range(0, 200), expected: { lost: 0, late: 0, restarts: 0 } },
    { description: 'two gaps', input: [0, 1, 2, 5, 6, 10], expected: { lost: 5, late: 0, restarts: 0 } },
    { description: 'gap at the end (counted at flush)', input: [0, 1, 2, 4], expected: { lost: 1, late: 0, restarts: 0 } },
    { description: 'gap larger than the window', input: [0, 5000, 5001], expected: { lost: 4999, late: 0, restarts: 0 } },
    { description: 'reordered within the window', input: [0, 2, 1, 5, 4, 3, 6], expected: { lost: 0, late: 0, restarts: 0 } },
    { description: 'reordered by the window minus one', input: [...range(0, 10), ...range(11, 10 + SEQ_WINDOW), 10, 10 + SEQ_WINDOW], expected: { lost: 0, late: 0, restarts: 0 } },
    { description: 'too late: counted lost and late', input: [...range(0, 10), ...range(11, 16 + SEQ_WINDOW), 10], expected: { lost: 1, late: 1, restarts: 0 } },
    { description: 'starting mid-stream, earlier numbers arriving late', input: [50, 51, 48, 49, 52], expected: { lost: 0, late: 0, restarts: 0 } },
    { description: 'wrapping at 2^32', input: [0xfffffffd, 0xfffffffe, 0xffffffff, 0, 1, 3], expected: { lost: 1, late: 0, restarts: 0 } },
    {
      description: 'restart: numbers start again with newer timestamps',
      input: [...range(5000, 5010), [0, 100_000], [1, 100_010], [2, 100_020]] as Arrival[],
      expected: { lost: 0, late: 0, restarts: 1 },
    },
    {
      description: 'restart within the window: a known number with another timestamp',
      input: [...range(0, 20), [3, 100_000], [4, 100_010], [6, 100_030]] as Arrival[],
      expected: { lost: 1, late: 0, restarts: 1 },
    },
    {
      description: 'restart after a gap: the old gap still counts',
      input: [0, 1, 3, [0, 100_000], [1, 100_010]] as Arrival[],
      expected: { lost: 1, late: 0, restarts: 1 },
    },
  ])('$description', ({ input, expected }) => {
    expect(run(input)).toMatchObject(expected);
  });

  it('pieces of one frame (same number and timestamp) are seen, not new', () => {
    expect(run([5, 5, 5, 6, 6, 5]).verdicts).toEqual([fresh, seen, seen, fresh, seen, seen]);
  });

  it('verdicts for late frames and restarts', () => {
    expect(run([...range(0, SEQ_WINDOW + 100), 3, [3, 10 * SEQ_WINDOW + 5000]]).verdicts.slice(-2)).toEqual([late, restart]);
  });

  it('window covers the emit stage reordering (a power of two)', () => {
    expect(SEQ_WINDOW).toBeGreaterThanOrEqual(1024);
    expect(SEQ_WINDOW & (SEQ_WINDOW - 1)).toBe(0);
  });
});
