import { describe, expect, it } from 'vitest';
import { evaluateLimits, nodeCap } from '../../../src/controller/limits.ts';

const now = new Date('2025-01-01T00:10:00Z');

describe('evaluateLimits', () => {
  it.each([
    { description: 'no limits', limits: undefined, start: undefined, totals: { packets: 5, bytes: 5 }, expected: {} },
    {
      description: 'a duration gives a deadline from startTime',
      limits: { duration: '15m', maxPackets: 0, maxBytes: 0 },
      start: '2025-01-01T00:00:00Z',
      totals: { packets: 0, bytes: 0 },
      expected: { deadline: '2025-01-01T00:15:00Z', deadlineMs: Date.parse('2025-01-01T00:15:00Z') },
    },
    {
      description: 'a fractional duration rounds the deadline up to a whole second',
      limits: { duration: '1500ms', maxPackets: 0, maxBytes: 0 },
      start: '2025-01-01T00:09:50Z',
      totals: { packets: 0, bytes: 0 },
      expected: { deadline: '2025-01-01T00:09:52Z', deadlineMs: Date.parse('2025-01-01T00:09:52Z'), reached: 'spec.limits.duration 1500ms elapsed' },
    },
    {
      description: 'no startTime yet: no deadline',
      limits: { duration: '1m', maxPackets: 0, maxBytes: 0 },
      start: undefined,
      totals: { packets: 0, bytes: 0 },
      expected: {},
    },
    {
      description: 'the duration elapsed',
      limits: { duration: '10m', maxPackets: 0, maxBytes: 0 },
      start: '2025-01-01T00:00:00Z',
      totals: { packets: 0, bytes: 0 },
      expected: { deadline: '2025-01-01T00:10:00Z', deadlineMs: Date.parse('2025-01-01T00:10:00Z'), reached: 'spec.limits.duration 10m elapsed' },
    },
    {
      description: 'packets left',
      limits: { maxPackets: 100, maxBytes: 0 },
      start: '2025-01-01T00:00:00Z',
      totals: { packets: 40, bytes: 9999 },
      expected: { leftPackets: 60 },
    },
    {
      description: 'maxPackets reached (and overshot)',
      limits: { maxPackets: 100, maxBytes: 0 },
      start: undefined,
      totals: { packets: 130, bytes: 0 },
      expected: { leftPackets: 0, reached: '130 packets mirrored (spec.limits.maxPackets 100)' },
    },
    {
      description: 'maxBytes reached',
      limits: { maxPackets: 0, maxBytes: 1000 },
      start: undefined,
      totals: { packets: 1, bytes: 1000 },
      expected: { leftBytes: 0, reached: '1000 bytes mirrored (spec.limits.maxBytes 1000)' },
    },
  ])('$description', ({ limits, start, totals, expected }) => {
    expect(evaluateLimits(limits, start, now, totals)).toEqual(expected);
  });
});

describe('nodeCap', () => {
  it.each([
    { description: 'no overall limit: 0 (no limit)', input: [undefined, 10, 500], expected: 0 },
    { description: 'first time: the node count plus what is left', input: [100, 10, undefined], expected: 110 },
    { description: 'a stale cap within twice what is left is kept (no write)', input: [40, 50, 120], expected: 120 },
    { description: 'a cap looser than twice what is left is tightened', input: [10, 90, 200], expected: 100 },
    { description: 'a raised limit loosens the cap', input: [500, 10, 110], expected: 510 },
    { description: 'nothing left still caps (0 would mean unlimited)', input: [0, 7, undefined], expected: 8 },
  ])('$description', ({ input, expected }) => {
    expect(nodeCap(input[0], input[1]!, input[2])).toBe(expected);
  });
});
