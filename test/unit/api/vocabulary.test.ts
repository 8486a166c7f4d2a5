/** The capture vocabulary: one duration grammar for the schema and every flag, the tunnels' ports, the MTU bounds. */
import { describe, expect, it } from 'vitest';
import { DurationSchema, MtuSchema } from '../../../src/api/sniffpolicy.ts';
import { defaultCollectorPort, MTU_MAX, MTU_MIN, parseDuration, TunnelProtocols } from '../../../src/api/vocabulary.ts';

describe('durations', () => {
  it.each([
    { input: '30s', expected: 30_000 },
    { input: '10m', expected: 600_000 },
    { input: '1h30m', expected: 5_400_000 },
    { input: '1.5h', expected: 5_400_000 },
    { input: '250ms', expected: 250 },
    { input: '1d', expected: 86_400_000 },
    { input: '7d', expected: 7 * 86_400_000 },
    { input: '10', expected: undefined },
    { input: 'a week', expected: undefined },
    { input: ' 10m', expected: undefined },
    { input: '-5m', expected: undefined },
    { input: '', expected: undefined },
  ])('$input is $expected ms, and the policy schema agrees', ({ input, expected }) => {
    expect(parseDuration(input)).toBe(expected);
    // what a flag accepts, spec.limits.duration accepts: `--duration 1d` is not refused later by the API
    expect(DurationSchema.safeParse(input).success).toBe(expected !== undefined);
  });
});

describe('tunnels', () => {
  it.each([
    { input: 'Geneve' as const, expected: 6081 },
    { input: 'VXLAN' as const, expected: 4789 },
  ])('$input listens on $expected by default', ({ input, expected }) => {
    expect(defaultCollectorPort(input)).toBe(expected);
  });
  it('names exactly the tunnels the wire knows', () => {
    expect(TunnelProtocols).toEqual(['Geneve', 'VXLAN']);
  });
});

describe('MTU', () => {
  it.each([
    { input: 0, expected: true },
    { input: MTU_MIN, expected: true },
    { input: MTU_MAX, expected: true },
    { input: MTU_MIN - 1, expected: false },
    { input: MTU_MAX + 1, expected: false },
  ])('the schema takes $input: $expected', ({ input, expected }) => {
    expect(MtuSchema.safeParse(input).success).toBe(expected);
  });
});
