import { describe, expect, it } from 'vitest';
import { LATE_RESYNC, SEQ_WINDOW, SeqStream, SeqVerdict } from '../../../src/collector/streams.ts';

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

  // a forged (or corrupted) number far ahead must not make the real frames late forever (issue 9)
  const FAR = 1_000_000;
  it.each([
    {
      description: 'one forged frame far ahead: the real frames after it are all taken, nothing counted lost or late',
      input: [...range(0, 100), [FAR, 10 * FAR], ...range(100, 3000)] as Arrival[],
      expected: { lost: 0, late: 0, restarts: 0, taken: 3000 },
    },
    {
      description: 'two forged frames far ahead: the real ones are late at most LATE_RESYNC - 1 times, then taken again',
      input: [...range(0, 100), [FAR, 10 * FAR], [FAR + 1, 10 * FAR + 10], ...range(100, 3000)] as Arrival[],
      expected: { late: LATE_RESYNC - 1, restarts: 1, taken: 3000 - (LATE_RESYNC - 1) },
    },
    {
      description: 'a forged restart (a number behind the window with a newer timestamp): the real frames continue as a confirmed jump',
      input: [...range(0, 100), [0xfffff000, 10 * FAR], ...range(100, 3000)] as Arrival[],
      expected: { late: 0, restarts: 1, taken: 3000 },
    },
    {
      description: 'a real gap beyond the window: confirmed by the next frame, counted lost',
      input: [...range(0, 10), ...range(5000, 5010)] as Arrival[],
      expected: { lost: 4990, late: 0, restarts: 0, taken: 20 },
    },
    {
      description: 'a real gap beyond the window just before the end: counted at flush',
      input: [...range(0, 10), 5000] as Arrival[],
      expected: { lost: 4990, late: 0, restarts: 0, taken: 11 },
    },
    {
      description: 'a single straggler behind the window between real frames: late once, no resync',
      input: [...range(0, 2000), 5, ...range(2000, 2100)] as Arrival[],
      expected: { lost: 0, late: 1, restarts: 0, taken: 2100 },
    },
  ])('$description', ({ input, expected }) => {
    const r = run(input);
    const taken = r.verdicts.filter((v) => v === fresh || v === restart).length - (input.length - r.verdicts.length);
    // (the forged frames themselves are delivered: they came on an accepted stream)
    const forged = input.filter((a) => typeof a !== 'number').length;
    expect({ ...r, taken: taken - forged }).toMatchObject(expected);
  });

  it.each([
    { description: 'a run of five lost numbers is one report, once the window passes it', input: [...range(0, 10), ...range(15, 15 + SEQ_WINDOW + 5)], expected: [{ count: 5, first: 10, last: 14 }] },
    { description: 'two runs apart are two reports', input: [0, 2, ...range(3, 3 + SEQ_WINDOW), 5 + SEQ_WINDOW, ...range(6 + SEQ_WINDOW, 10 + 2 * SEQ_WINDOW)], expected: [{ count: 1, first: 1, last: 1 }, { count: 2, first: 3 + SEQ_WINDOW, last: 4 + SEQ_WINDOW }] },
    { description: 'a gap still in the window is reported when the stream ends', input: [0, 1, 3], expected: [{ count: 1, first: 2, last: 2 }] },
    { description: 'a jump beyond the window: one report for all it skipped', input: [0, 5000, 5001], expected: [{ count: 4999, first: 1, last: 4999 }] },
  ])('gap reports: $description', ({ input, expected }) => {
    const s = new SeqStream();
    const reports: unknown[] = [];
    for (const seq of input) {
      s.observe(seq, 0, seq * 10);
      const g = s.takeGap();
      if (g) reports.push(g);
    }
    s.flush();
    const g = s.takeGap();
    if (g) reports.push(g);
    expect(reports).toEqual(expected);
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
